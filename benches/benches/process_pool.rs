//! Process-pool scenarios, side by side in one run: chi's `ProcessPool`, the `procspawn`
//! crate's pool, Python's `ProcessPoolExecutor` and `multiprocessing.Pool` (run from
//! `benches/scripts/python_process_pool.py` when `python3` is there), and the physical limit,
//! a pipe ping-pong between two processes, measured in the same run. Prints a markdown table
//! with chi's ratio to each peer and to the targets of issue 4, and writes every number to
//! `target/bench-results/process_pool.json`.
//!
//! ```text
//! cargo bench -p chi-bench --bench process_pool                 # full run, about a minute
//! cargo bench -p chi-bench --bench process_pool -- --quick      # smoke test, seconds
//! cargo bench -p chi-bench --bench process_pool -- --no-python  # Rust peers only
//! cargo bench -p chi-bench --bench process_pool -- --cpu-profile 5  # 50 µs scenarios only,
//!                                      # with CPU and context switches per task, per role
//! ```
//!
//! Scenarios (2 workers everywhere):
//! - `startup_ms`: build a pool, submit one task, get its result (median of 5 fresh pools);
//! - `round_trip_us`: on a warm pool, submit one tiny task and wait for it, repeated (p50, p99);
//! - `tiny_submit_per_s`: submit N tiny tasks keeping every handle, then take each result in
//!   order;
//! - `tiny_map_per_s`: the same work through `map` with chunksize 1000;
//! - `cpu_submit_x_ideal`, `cpu_map_x_ideal`: 20,000 tasks of 50 µs CPU each (a spin loop),
//!   wall time over the ideal (N × 50 µs / 2), per-task submit and chunked map;
//! - `idle_worker_rss_kib`: resident memory of an idle worker process;
//! - `pipe_pingpong_us`: one byte back and forth between two processes over pipes, p50, on
//!   one CPU and placed by the scheduler;
//! - `floor.spin_x_ideal`: the 50 µs scenarios' floor, the same 20,000 spins on two bare
//!   threads with no pool (median of 3): what the machine itself adds to "ideal" (clock
//!   reads, timer interrupts, the hypervisor, other load).

use chi::ProcessPool;
use serde_json::{Map, Value, json};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKERS: usize = 2;
const PIPE_CHILD: &str = "CHI_BENCH_PIPE_ECHO";

// ===== tasks =====

fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Spins for `us` microseconds of CPU.
fn spin(us: u64) -> u64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_micros(us) {
        n = n.wrapping_add(1);
        std::hint::black_box(n);
    }
    us
}

// ===== sizes =====

struct Sizes {
    round_trips: usize,
    tiny_n: u64,
    map_n: u64,
    cpu_n: u64,
    pipe_trips: usize,
    startups: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        let d = if quick { 10 } else { 1 };
        Sizes {
            round_trips: 5_000 / d,
            tiny_n: 100_000 / d as u64,
            map_n: 4_000_000 / d as u64,
            cpu_n: 20_000 / d as u64,
            pipe_trips: 20_000 / d,
            startups: if quick { 2 } else { 5 },
        }
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    percentile(&mut v, 0.5)
}

fn rss_kib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ===== where the CPU goes =====

/// CPU time (ns, from `schedstat`) and context switches (voluntary, involuntary) of one
/// thread or process, read from its `/proc` directory.
#[derive(Clone, Copy, Default, Debug)]
struct Usage {
    cpu_ns: f64,
    vcs: f64,
    ivcs: f64,
}

impl Usage {
    fn read(dir: &str) -> Option<Usage> {
        let sched = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
        let cpu_ns = sched.split_whitespace().next()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let field = |name: &str| -> Option<f64> {
            let l = status.lines().find(|l| l.starts_with(name))?;
            l.split_whitespace().nth(1)?.parse().ok()
        };
        Some(Usage {
            cpu_ns,
            vcs: field("voluntary_ctxt_switches:")?,
            ivcs: field("nonvoluntary_ctxt_switches:")?,
        })
    }

    fn add(&mut self, o: Usage) {
        self.cpu_ns += o.cpu_ns;
        self.vcs += o.vcs;
        self.ivcs += o.ivcs;
    }

    fn minus(self, o: Usage) -> Usage {
        Usage {
            cpu_ns: self.cpu_ns - o.cpu_ns,
            vcs: self.vcs - o.vcs,
            ivcs: self.ivcs - o.ivcs,
        }
    }
}

/// This process's threads grouped by role (the pool's supervisors, the caller, others), and
/// the pool's worker processes (their threads summed: `/proc/<pid>` counts only the main
/// thread's switches, so each task directory is read).
fn usage_by_role(workers: &[u32]) -> std::collections::BTreeMap<&'static str, Usage> {
    let mut m = std::collections::BTreeMap::new();
    let me = std::process::id();
    let mut read_tasks = |pid: u32, role_of: &dyn Fn(&str, bool) -> &'static str| {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for e in dir.flatten() {
            let d = e.path().display().to_string();
            let comm = std::fs::read_to_string(format!("{d}/comm")).unwrap_or_default();
            let main = e.file_name().to_str() == Some(&pid.to_string());
            if let Some(u) = Usage::read(&d) {
                m.entry(role_of(comm.trim(), main))
                    .or_insert_with(Usage::default)
                    .add(u);
            }
        }
    };
    read_tasks(me, &|comm, main| {
        if main {
            "caller"
        } else if comm.starts_with("chi-proc") {
            "supervisors"
        } else {
            "other parent threads"
        }
    });
    for &w in workers {
        read_tasks(w, &|_, _| "workers");
    }
    m
}

/// Runs `f` and returns, per role, its CPU µs and context switches per task over `tasks`.
fn measure(workers: &[u32], tasks: u64, f: impl FnOnce()) -> Map<String, Value> {
    let before = usage_by_role(workers);
    f();
    let after = usage_by_role(workers);
    let mut out = Map::new();
    for (role, a) in after {
        let d = a.minus(before.get(role).copied().unwrap_or_default());
        let n = tasks as f64;
        out.insert(
            role.into(),
            json!({
                "cpu_us_per_task": d.cpu_ns / 1e3 / n,
                "voluntary_switches_per_task": d.vcs / n,
                "involuntary_switches_per_task": d.ivcs / n,
            }),
        );
    }
    out
}

/// The same 20,000 × 50 µs spins on two plain threads, no pool: wall over ideal.
fn bare_spin_x_ideal(s: &Sizes) -> f64 {
    let ideal = s.cpu_n as f64 * 50e-6 / WORKERS as f64;
    let per_thread = s.cpu_n / WORKERS as u64;
    let t = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..WORKERS {
            sc.spawn(|| (0..per_thread).map(|_| spin(50)).sum::<u64>());
        }
    });
    t.elapsed().as_secs_f64() / ideal
}

/// 20,000 × 50 µs tasks by per-task submit, each result taken in order: wall over ideal.
fn cpu_submit_x_ideal(pool: &ProcessPool, s: &Sizes) -> f64 {
    let ideal = s.cpu_n as f64 * 50e-6 / WORKERS as f64;
    let t = Instant::now();
    let tasks: Vec<_> = (0..s.cpu_n)
        .map(|_| pool.submit(spin, 50).unwrap())
        .collect();
    for task in tasks {
        task.result().unwrap();
    }
    t.elapsed().as_secs_f64() / ideal
}

/// The same work through `map` with chunksize 250: wall over ideal.
fn cpu_map_x_ideal(pool: &ProcessPool, s: &Sizes) -> f64 {
    let ideal = s.cpu_n as f64 * 50e-6 / WORKERS as f64;
    let t = Instant::now();
    let n = pool
        .map(spin, std::iter::repeat_n(50, s.cpu_n as usize))
        .chunksize(250)
        .map(Result::unwrap)
        .count();
    assert_eq!(n as u64, s.cpu_n);
    t.elapsed().as_secs_f64() / ideal
}

/// `n` tiny tasks submitted, every handle kept, then each result taken in order: tasks/s.
fn tiny_submit_rate(pool: &ProcessPool, n: u64) -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..n).map(|i| pool.submit(inc, i).unwrap()).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.result(), Ok(i as u64 + 1));
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// `n` round trips of one tiny task on a warm pool, each in µs.
fn round_trips_us(pool: &ProcessPool, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            pool.submit(inc, i as u64).unwrap().result().unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// `--cpu-profile [reps]`: only chi, the two 50 µs scenarios, tiny tasks submit → result and
/// the idle round trip, each repeated, with where the CPU went (per role: caller, supervisor
/// threads, worker processes) and context switches per task. Prints one JSON object per
/// repetition, then the medians.
fn cpu_profile(s: &Sizes, reps: usize) {
    let pool = chi_pool();
    let workers = pool.worker_pids();
    let mut submit_x = Vec::new();
    let mut map_x = Vec::new();
    let mut floor_x = Vec::new();
    for _ in 0..reps {
        let mut x = 0.0;
        let submit = measure(&workers, s.cpu_n, || x = cpu_submit_x_ideal(&pool, s));
        submit_x.push(x);
        let map = measure(&workers, s.cpu_n, || x = cpu_map_x_ideal(&pool, s));
        map_x.push(x);
        let mut tiny_rate = 0.0;
        let tiny = measure(&workers, s.tiny_n, || {
            tiny_rate = tiny_submit_rate(&pool, s.tiny_n)
        });
        let mut rt = round_trips_us(&pool, s.round_trips);
        let floor = bare_spin_x_ideal(s);
        floor_x.push(floor);
        let run = json!({
            "floor_spin_x_ideal": floor,
            "tiny_submit_per_s": tiny_rate,
            "tiny": tiny,
            "round_trip_us": percentile(&mut rt, 0.5),
            "submit_x_ideal": submit_x.last(),
            "submit": submit,
            "map_x_ideal": map_x.last(),
            "map": map,
        });
        println!("{run}");
    }
    println!(
        "median × ideal: per-task submit {:.3}, chunked map {:.3}, bare threads (floor) {:.3} \
         ({reps} reps)",
        median(submit_x),
        median(map_x),
        median(floor_x)
    );
}

// ===== chi =====

fn chi_pool() -> ProcessPool {
    let pool = ProcessPool::new(WORKERS).expect("a chi process pool");
    assert_eq!(pool.wait_for_workers(Duration::from_secs(60)), WORKERS);
    // Warm up: every worker has run tasks.
    let warm: Vec<_> = (0..1000).map(|i| pool.submit(inc, i).unwrap()).collect();
    for t in warm {
        t.result().unwrap();
    }
    pool
}

fn bench_chi(s: &Sizes) -> Map<String, Value> {
    let mut out = Map::new();
    let startups: Vec<f64> = (0..s.startups)
        .map(|_| {
            let t = Instant::now();
            let pool = ProcessPool::new(WORKERS).unwrap();
            pool.submit(inc, 1).unwrap().result().unwrap();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            drop(pool);
            ms
        })
        .collect();
    out.insert("startup_ms".into(), json!(median(startups)));

    let pool = chi_pool();
    let rss: Vec<f64> = pool.worker_pids().into_iter().filter_map(rss_kib).collect();
    out.insert(
        "idle_worker_rss_kib".into(),
        json!(rss.iter().sum::<f64>() / rss.len().max(1) as f64),
    );

    let mut rt = round_trips_us(&pool, s.round_trips);
    out.insert("round_trip_us".into(), json!(percentile(&mut rt, 0.5)));
    out.insert("round_trip_p99_us".into(), json!(percentile(&mut rt, 0.99)));

    let rates: Vec<f64> = (0..3).map(|_| tiny_submit_rate(&pool, s.tiny_n)).collect();
    out.insert("tiny_submit_per_s".into(), json!(median(rates)));

    let rates: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let sum: u64 = pool
                .map(inc, 0..s.map_n)
                .chunksize(1000)
                .map(Result::unwrap)
                .sum();
            assert_eq!(sum, s.map_n * (s.map_n + 1) / 2);
            s.map_n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    out.insert("tiny_map_per_s".into(), json!(median(rates)));

    out.insert(
        "cpu_submit_x_ideal".into(),
        json!(cpu_submit_x_ideal(&pool, s)),
    );
    out.insert("cpu_map_x_ideal".into(), json!(cpu_map_x_ideal(&pool, s)));
    out
}

// ===== procspawn =====

fn bench_procspawn(s: &Sizes) -> Map<String, Value> {
    let mut out = Map::new();
    let t = Instant::now();
    let pool = procspawn::Pool::new(WORKERS).expect("a procspawn pool");
    pool.spawn(1u64, inc).join().unwrap();
    out.insert("startup_ms".into(), json!(t.elapsed().as_secs_f64() * 1e3));
    for i in 0..100 {
        pool.spawn(i, inc).join().unwrap();
    }
    let mut rt: Vec<f64> = (0..s.round_trips / 5)
        .map(|i| {
            let t = Instant::now();
            pool.spawn(i as u64, inc).join().unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    out.insert("round_trip_us".into(), json!(percentile(&mut rt, 0.5)));
    out.insert("round_trip_p99_us".into(), json!(percentile(&mut rt, 0.99)));
    let n = s.tiny_n / 20;
    let t = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| pool.spawn(i, inc)).collect();
    for h in handles {
        h.join().unwrap();
    }
    out.insert(
        "tiny_submit_per_s".into(),
        json!(n as f64 / t.elapsed().as_secs_f64()),
    );
    pool.shutdown();
    out
}

// ===== pipe ping-pong =====

/// The child side: echo each byte from stdin to stdout until EOF.
fn pipe_echo() -> ! {
    let mut inp = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut b = [0u8; 1];
    while inp.read_exact(&mut b).is_ok() {
        if out.write_all(&b).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

/// Pins the calling thread (and the children it starts) to CPU 0.
/// Pins this thread to CPU 0 and returns the affinity it had, for `unpin`.
fn pin_to_cpu0() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; getaffinity fills at most
    // `size_of::<cpu_set_t>()` bytes of `old`; CPU_SET writes inside `set`; setaffinity reads
    // that many bytes of it.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
            return None;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        (libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0)
            .then_some(old)
    }
}

/// Restores the affinity `pin_to_cpu0` saved. (Recomputing it from `available_parallelism`
/// would be wrong: while pinned, that reports one CPU, and every later child would inherit
/// a one-CPU mask.)
fn unpin(old: libc::cpu_set_t) {
    // SAFETY: `old` is a valid set filled by sched_getaffinity; the call reads its bytes.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old) };
    assert_eq!(rc, 0, "could not restore the CPU affinity");
}

fn pipe_pingpong(trips: usize) -> f64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(PIPE_CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo child");
    let mut to = child.stdin.take().unwrap();
    let mut from = child.stdout.take().unwrap();
    let mut b = [7u8; 1];
    for _ in 0..1000 {
        to.write_all(&b).unwrap();
        from.read_exact(&mut b).unwrap();
    }
    let mut v: Vec<f64> = (0..trips)
        .map(|_| {
            let t = Instant::now();
            to.write_all(&b).unwrap();
            from.read_exact(&mut b).unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    drop(to);
    let _ = child.wait();
    percentile(&mut v, 0.5)
}

// ===== Python =====

fn python(quick: bool) -> Option<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/python_process_pool.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script).stderr(Stdio::inherit());
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("python_process_pool.py failed; Python peers skipped");
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

// ===== report =====

fn get(v: &Value, peer: &str, key: &str) -> Option<f64> {
    v.get(peer)?.get(key)?.as_f64()
}

fn report(all: &Value) -> String {
    let peers = ["chi", "procspawn", "python_ppe", "python_mp_pool"];
    let rows = [
        ("startup_ms", "pool start-up to first result, ms", false),
        ("round_trip_us", "idle round trip p50, µs", false),
        ("round_trip_p99_us", "idle round trip p99, µs", false),
        (
            "tiny_submit_per_s",
            "tiny tasks, submit → result, tasks/s",
            true,
        ),
        (
            "tiny_map_per_s",
            "tiny tasks, map chunksize 1000, tasks/s",
            true,
        ),
        (
            "cpu_submit_x_ideal",
            "20k × 50 µs CPU, per-task submit, × ideal",
            false,
        ),
        (
            "cpu_map_x_ideal",
            "20k × 50 µs CPU, chunked map, × ideal",
            false,
        ),
        ("idle_worker_rss_kib", "RSS per idle worker, KiB", false),
    ];
    let mut s = String::new();
    s.push_str(
        "| scenario | chi | procspawn | Python PPE | mp.Pool | chi advantage over best Python |\n",
    );
    s.push_str("|---|---:|---:|---:|---:|---:|\n");
    for (key, label, higher_better) in rows {
        s.push_str(&format!("| {label} |"));
        for p in peers {
            match get(all, p, key) {
                Some(x) if x >= 100.0 => s.push_str(&format!(" {x:.0} |")),
                Some(x) => s.push_str(&format!(" {x:.2} |")),
                None => s.push_str(" — |"),
            }
        }
        let chi = get(all, "chi", key);
        let py = [get(all, "python_ppe", key), get(all, "python_mp_pool", key)];
        let best = if higher_better {
            py.iter().flatten().cloned().reduce(f64::max)
        } else {
            py.iter().flatten().cloned().reduce(f64::min)
        };
        match (chi, best) {
            (Some(c), Some(b)) if c > 0.0 && b > 0.0 => {
                let r = if higher_better { c / b } else { b / c };
                s.push_str(&format!(" {r:.2}x |\n"));
            }
            _ => s.push_str(" — |\n"),
        }
    }
    let pipe = get(all, "pipe", "pingpong_us");
    let pipe1 = get(all, "pipe", "pingpong_one_cpu_us");
    s.push_str(&format!(
        "\nPhysical limit, pipe ping-pong p50: {} µs placed by the scheduler, {} µs on one CPU.\n",
        pipe.map_or("—".into(), |x| format!("{x:.1}")),
        pipe1.map_or("—".into(), |x| format!("{x:.1}"))
    ));
    let floor = get(all, "floor", "spin_x_ideal");
    s.push_str(&format!(
        "Floor of the 50 µs scenarios, the same spins on two bare threads (no pool): {} × ideal.\n",
        floor.map_or("—".into(), |x| format!("{x:.3}"))
    ));
    s.push_str("\nTargets (issue 4):\n");
    let check = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    };
    let rt = get(all, "chi", "round_trip_us");
    s.push_str(&format!(
        "- idle round trip p50 ≤ 2 × pipe ping-pong: {:.1} µs vs {:.1} µs → {}\n",
        rt.unwrap_or(f64::NAN),
        pipe.unwrap_or(f64::NAN) * 2.0,
        check(rt.zip(pipe).map(|(a, b)| a <= 2.0 * b))
    ));
    let tiny = get(all, "chi", "tiny_submit_per_s");
    let ppe = get(all, "python_ppe", "tiny_submit_per_s");
    s.push_str(&format!(
        "- tiny submit ≥ 20 × Python PPE: {} → {}\n",
        tiny.zip(ppe)
            .map_or("—".into(), |(a, b)| format!("{:.1}x", a / b)),
        check(tiny.zip(ppe).map(|(a, b)| a >= 20.0 * b))
    ));
    let map = get(all, "chi", "tiny_map_per_s");
    let best_map = [
        get(all, "python_ppe", "tiny_map_per_s"),
        get(all, "python_mp_pool", "tiny_map_per_s"),
    ]
    .into_iter()
    .flatten()
    .reduce(f64::max);
    s.push_str(&format!(
        "- chunked map ≥ 2 × the better Python: {} → {}\n",
        map.zip(best_map)
            .map_or("—".into(), |(a, b)| format!("{:.2}x", a / b)),
        check(map.zip(best_map).map(|(a, b)| a >= 2.0 * b))
    ));
    let cs = get(all, "chi", "cpu_submit_x_ideal");
    let cm = get(all, "chi", "cpu_map_x_ideal");
    s.push_str(&format!(
        "- 50 µs CPU tasks ≤ 1.10 × ideal with submit: {:.3} → {}; ≤ 1.03 × chunked: {:.3} → {}\n",
        cs.unwrap_or(f64::NAN),
        check(cs.map(|x| x <= 1.10)),
        cm.unwrap_or(f64::NAN),
        check(cm.map(|x| x <= 1.03))
    ));
    if let Some(f) = floor {
        let over =
            |x: Option<f64>| x.map_or("—".into(), |x| format!("{:+.1} %", (x / f - 1.0) * 100.0));
        s.push_str(&format!(
            "  (over the floor of {f:.3}: per-task submit {}, chunked map {})\n",
            over(cs),
            over(cm)
        ));
    }
    s
}

fn main() {
    // Worker processes of chi's and procspawn's pools, and the echo child, stop here.
    chi::process_pool::init();
    procspawn::init();
    // SAFETY: every function this bench gives procspawn is defined in this binary, none in a
    // shared library (procspawn's own check needs its `findshlibs` feature, left off here).
    unsafe { procspawn::assert_spawn_is_safe() };
    if std::env::var_os(PIPE_CHILD).is_some() {
        pipe_echo();
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let no_python = args.iter().any(|a| a == "--no-python");
    let s = Sizes::new(quick);
    if let Some(i) = args.iter().position(|a| a == "--cpu-profile") {
        let reps = args.get(i + 1).and_then(|r| r.parse().ok()).unwrap_or(5);
        cpu_profile(&s, reps);
        return;
    }

    let mut all = Map::new();
    eprintln!("== pipe ping-pong");
    let mut pipe = Map::new();
    pipe.insert("pingpong_us".into(), json!(pipe_pingpong(s.pipe_trips)));
    if let Some(old) = pin_to_cpu0() {
        pipe.insert(
            "pingpong_one_cpu_us".into(),
            json!(pipe_pingpong(s.pipe_trips)),
        );
        unpin(old);
    }
    all.insert("pipe".into(), Value::Object(pipe));
    eprintln!("== floor: 50 µs spins on bare threads");
    let floor = median((0..3).map(|_| bare_spin_x_ideal(&s)).collect());
    all.insert("floor".into(), json!({ "spin_x_ideal": floor }));
    eprintln!("== chi");
    all.insert("chi".into(), Value::Object(bench_chi(&s)));
    eprintln!("== procspawn");
    all.insert("procspawn".into(), Value::Object(bench_procspawn(&s)));
    if !no_python {
        eprintln!("== Python (benches/scripts/python_process_pool.py)");
        if let Some(Value::Object(py)) = python(quick) {
            for (k, v) in py {
                all.insert(k, v);
            }
        }
    }
    let all = Value::Object(all);
    let table = report(&all);
    println!("{table}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("process_pool.json"),
            serde_json::to_string_pretty(&all).unwrap(),
        );
        let _ = std::fs::write(dir.join("process_pool.md"), &table);
        eprintln!("wrote {}", dir.join("process_pool.json").display());
    }
}
