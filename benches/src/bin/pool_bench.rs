//! `pool_bench`: every thread-pool scenario, for chi and every peer, repeated and interleaved;
//! prints the medians and the chi/peer ratios as a markdown table and writes them as CSV and
//! JSON. This is the run quoted in BENCHMARKS.md (criterion alone is too slow on 2 cores).
//!
//! ```text
//! cargo run --release -p chi-bench --bin pool_bench                 # full run, ~2-3 min
//! cargo run --release -p chi-bench --bin pool_bench -- --quick      # smoke test, seconds
//! cargo run --release -p chi-bench --bin pool_bench -- --help
//! ```
//!
//! Each repetition builds a fresh pool per peer, warms it up (every worker started, a batch of
//! tiny tasks run) and then times the scenario; peers take turns within each repetition, in
//! an order rotated from one repetition to the next. The idle-CPU scenario skips the warm-up:
//! it builds the pool, runs one task, and measures the next seconds.

use chi_bench::{BARE_CHANNEL, ChannelPool, Peer, Pool, PoolVisitor, Spin, WarmUp, scenario};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    about = "Side-by-side thread-pool benchmark: chi vs rayon, tokio, threadpool, a channel pool (and Python)"
)]
struct Args {
    /// Shrink every scenario (N/10, 0.2 s idle window, 2 repetitions): a smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Repetitions of each scenario per peer (medians are reported) [default: 5, 2 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Worker threads of every pool.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Scenarios to run (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<ScenarioId>,
    /// Peers to run besides chi (comma-separated ids: rayon, tokio_blocking, tokio_spawn,
    /// threadpool, channel_pool, bare_channel) [default: all].
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// JSON written by `benches/scripts/python_thread_pool.py`, merged in as the `python` peer.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Where to write thread_pool.csv and thread_pool.json (relative to the current directory).
    #[arg(long, default_value = "target/bench-results")]
    out_dir: PathBuf,
}

/// The five scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
#[value(rename_all = "snake_case")]
enum ScenarioId {
    /// 1: one submitter, N tiny tasks, submit all then join in order.
    TinyTasks,
    /// 2: submit one, wait, repeat.
    RoundTrip,
    /// 3: N tasks of 50 µs CPU each.
    CpuTasks,
    /// 4: 4 submitter threads of tiny tasks, handles joined at the end.
    MultiSubmit,
    /// 5: process CPU over an idle window after one task.
    IdleCpu,
    /// 6: submit one, wait, then let the workers fall asleep (1 ms idle), repeat.
    RoundTripIdle,
}

impl ScenarioId {
    const ALL: [ScenarioId; 6] = [
        ScenarioId::TinyTasks,
        ScenarioId::RoundTrip,
        ScenarioId::CpuTasks,
        ScenarioId::MultiSubmit,
        ScenarioId::IdleCpu,
        ScenarioId::RoundTripIdle,
    ];

    fn key(self) -> &'static str {
        match self {
            ScenarioId::TinyTasks => "tiny_tasks",
            ScenarioId::RoundTrip => "round_trip",
            ScenarioId::CpuTasks => "cpu_tasks",
            ScenarioId::MultiSubmit => "multi_submit",
            ScenarioId::IdleCpu => "idle_cpu",
            ScenarioId::RoundTripIdle => "round_trip_idle",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ScenarioId::TinyTasks => "1 tiny tasks",
            ScenarioId::RoundTrip => "2 round trip",
            ScenarioId::CpuTasks => "3 50 µs CPU tasks",
            ScenarioId::MultiSubmit => "4 4 submitters",
            ScenarioId::IdleCpu => "5 idle CPU",
            ScenarioId::RoundTripIdle => "6 round trip after 1 ms idle",
        }
    }

    fn from_key(key: &str) -> Option<ScenarioId> {
        ScenarioId::ALL.into_iter().find(|s| s.key() == key)
    }
}

/// One reported metric of a scenario.
struct MetricDef {
    scenario: ScenarioId,
    key: &'static str,
    label: &'static str,
    higher_is_better: bool,
}

const METRICS: &[MetricDef] = &[
    MetricDef {
        scenario: ScenarioId::TinyTasks,
        key: "tasks_per_s",
        label: "tasks/s",
        higher_is_better: true,
    },
    MetricDef {
        scenario: ScenarioId::RoundTrip,
        key: "p50_us",
        label: "p50 µs",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::RoundTrip,
        key: "p99_us",
        label: "p99 µs",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::RoundTrip,
        key: "cpu_us",
        label: "process CPU µs per round trip",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::CpuTasks,
        key: "x_ideal",
        label: "wall / ideal",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::CpuTasks,
        key: "wall_ms",
        label: "wall ms",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::MultiSubmit,
        key: "tasks_per_s",
        label: "tasks/s",
        higher_is_better: true,
    },
    MetricDef {
        scenario: ScenarioId::IdleCpu,
        key: "ticks",
        label: "CPU ticks",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::IdleCpu,
        key: "cpu_us",
        label: "thread CPU µs",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::IdleCpu,
        key: "wakeups",
        label: "ctx switches",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::RoundTripIdle,
        key: "p50_us",
        label: "p50 µs",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::RoundTripIdle,
        key: "p99_us",
        label: "p99 µs",
        higher_is_better: false,
    },
    MetricDef {
        scenario: ScenarioId::RoundTripIdle,
        key: "cpu_us",
        label: "process CPU µs per round trip",
        higher_is_better: false,
    },
];

/// Problem sizes; the Python script uses the same names and values.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    tiny_n: u64,
    round_trips: usize,
    cpu_tasks: usize,
    cpu_task: Duration,
    submitters: usize,
    per_submitter: u64,
    idle_window: Duration,
    idle_round_trips: usize,
    idle_gap: Duration,
    workers: usize,
}

impl Sizes {
    fn new(quick: bool, workers: usize) -> Sizes {
        let div = if quick { 10 } else { 1 };
        Sizes {
            tiny_n: 200_000 / div,
            round_trips: 20_000 / div as usize,
            cpu_tasks: 20_000 / div as usize,
            cpu_task: Duration::from_micros(50),
            submitters: 4,
            per_submitter: 250_000 / div,
            idle_window: Duration::from_millis(2_000 / div),
            idle_round_trips: 2_000 / div as usize,
            idle_gap: Duration::from_millis(1),
            workers,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "tiny_n": self.tiny_n,
            "round_trips": self.round_trips,
            "cpu_tasks": self.cpu_tasks,
            "cpu_task_us": self.cpu_task.as_micros() as u64,
            "submitters": self.submitters,
            "per_submitter": self.per_submitter,
            "idle_window_ms": self.idle_window.as_millis() as u64,
            "idle_round_trips": self.idle_round_trips,
            "idle_gap_us": self.idle_gap.as_micros() as u64,
            "workers": self.workers,
        })
    }
}

// ===== running =====

/// Something that takes part in a scenario: a pool peer, or the handle-less channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Pool(Peer),
    Bare,
}

impl Contender {
    fn id(self) -> &'static str {
        match self {
            Contender::Pool(p) => p.id(),
            Contender::Bare => BARE_CHANNEL,
        }
    }
}

/// One timed run of one scenario on one peer's fresh pool.
struct RunOne {
    scenario: ScenarioId,
    sizes: Sizes,
    spin: Spin,
}

/// What one run measured, and what warm-up found (none for the idle scenario).
struct Measured {
    metrics: Vec<(&'static str, f64)>,
    warm: Option<WarmUp>,
}

impl PoolVisitor for RunOne {
    type Output = Measured;

    fn visit<P: Pool>(self, _peer: Peer, pool: &P) -> Measured {
        let s = self.sizes;
        let warm =
            (self.scenario != ScenarioId::IdleCpu).then(|| scenario::warm_up(pool, s.workers));
        let metrics = match self.scenario {
            ScenarioId::TinyTasks => {
                let t = scenario::tiny_tasks(pool, s.tiny_n);
                vec![("tasks_per_s", s.tiny_n as f64 / t.as_secs_f64())]
            }
            ScenarioId::RoundTrip => {
                let cpu0 = scenario::process_cpu();
                let rt = scenario::round_trips(pool, s.round_trips);
                latency_metrics(rt, scenario::process_cpu().saturating_sub(cpu0))
            }
            ScenarioId::RoundTripIdle => {
                let (rt, cpu) =
                    scenario::round_trips_after_idle(pool, s.idle_round_trips, s.idle_gap);
                latency_metrics(rt, cpu)
            }
            ScenarioId::CpuTasks => {
                let wall = scenario::cpu_tasks(pool, s.cpu_tasks, self.spin);
                let ideal =
                    self.spin.per_task.as_secs_f64() * s.cpu_tasks as f64 / s.workers as f64;
                vec![
                    ("x_ideal", wall.as_secs_f64() / ideal),
                    ("wall_ms", wall.as_secs_f64() * 1e3),
                ]
            }
            ScenarioId::MultiSubmit => {
                let t = scenario::multi_submit(pool, s.submitters, s.per_submitter);
                vec![(
                    "tasks_per_s",
                    (s.submitters as u64 * s.per_submitter) as f64 / t.as_secs_f64(),
                )]
            }
            ScenarioId::IdleCpu => {
                let idle = scenario::idle_cpu(pool, s.idle_window);
                vec![
                    ("ticks", idle.ticks as f64),
                    ("cpu_us", idle.cpu_ns as f64 / 1e3),
                    ("wakeups", idle.wakeups as f64),
                ]
            }
        };
        Measured { metrics, warm }
    }
}

/// p50 and p99 of `rt`, and `cpu` per round trip, all in µs.
fn latency_metrics(mut rt: Vec<Duration>, cpu: Duration) -> Vec<(&'static str, f64)> {
    rt.sort_unstable();
    let n = rt.len().max(1) as f64;
    let us = |p| scenario::percentile(&rt, p).as_secs_f64() * 1e6;
    vec![
        ("p50_us", us(0.50)),
        ("p99_us", us(0.99)),
        ("cpu_us", cpu.as_secs_f64() * 1e6 / n),
    ]
}

fn run_bare(sizes: Sizes) -> Measured {
    let pool = ChannelPool::with_workers(sizes.workers);
    let warm = Some(scenario::warm_up(&pool, sizes.workers));
    let t = scenario::multi_submit_bare(&pool, sizes.submitters, sizes.per_submitter);
    let rate = (sizes.submitters as u64 * sizes.per_submitter) as f64 / t.as_secs_f64();
    Measured {
        metrics: vec![("tasks_per_s", rate)],
        warm,
    }
}

/// Samples by (scenario key, metric key) then peer id.
type Samples = BTreeMap<(String, String), BTreeMap<String, Vec<f64>>>;

fn run_all(
    scenarios: &[ScenarioId],
    contenders: &[Contender],
    sizes: Sizes,
    spin: Spin,
    reps: usize,
) -> (Samples, Vec<String>) {
    let mut samples = Samples::new();
    let mut warnings = Vec::new();
    for &sc in scenarios {
        let mut field: Vec<Contender> = contenders.to_vec();
        if sc != ScenarioId::MultiSubmit {
            field.retain(|c| *c != Contender::Bare);
        }
        for rep in 0..reps {
            let n = field.len();
            for i in 0..n {
                let who = field[(i + rep) % n];
                if sc == ScenarioId::IdleCpu {
                    // Let the threads of the previous pool (rayon and threadpool do not join
                    // theirs on drop) finish exiting outside the window.
                    std::thread::sleep(Duration::from_millis(100));
                }
                let m = match who {
                    Contender::Pool(peer) => peer.with_pool(
                        sizes.workers,
                        RunOne {
                            scenario: sc,
                            sizes,
                            spin,
                        },
                    ),
                    Contender::Bare => run_bare(sizes),
                };
                if let Some(w) = m.warm.filter(|w| !w.ok()) {
                    let mut why = Vec::new();
                    if !w.all_workers_met {
                        why.push(format!(
                            "could not run {} tasks at the same time within 5 s",
                            sizes.workers
                        ));
                    }
                    if !w.ran_off_caller {
                        why.push("ran a task on the submitting thread".to_owned());
                    }
                    warnings.push(format!(
                        "{} / {}: warm-up: {}",
                        sc.key(),
                        who.id(),
                        why.join("; ")
                    ));
                }
                let shown: Vec<String> = m
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.3}"))
                    .collect();
                eprintln!(
                    "[{}] rep {}/{} {:<15} {}",
                    sc.key(),
                    rep + 1,
                    reps,
                    who.id(),
                    shown.join(" ")
                );
                for (k, v) in m.metrics {
                    let by_peer = samples
                        .entry((sc.key().to_owned(), k.to_owned()))
                        .or_default();
                    by_peer.entry(who.id().to_owned()).or_default().push(v);
                }
            }
        }
    }
    (samples, warnings)
}

// ===== Python results =====

fn merge_python(path: &PathBuf, samples: &mut Samples, sizes: Sizes, warnings: &mut Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            warnings.push(format!(
                "could not read Python results {}: {e}",
                path.display()
            ));
            return;
        }
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!(
                "Python results {} are not JSON: {e}",
                path.display()
            ));
            return;
        }
    };
    if doc.get("params") != Some(&sizes.to_json()) {
        warnings.push(format!(
            "Python ran with different sizes: {} (ours: {})",
            doc.get("params").unwrap_or(&Value::Null),
            sizes.to_json()
        ));
    }
    for r in doc
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(sc), Some(metric), Some(peer), Some(xs)) = (
            r.get("scenario").and_then(Value::as_str),
            r.get("metric").and_then(Value::as_str),
            r.get("peer").and_then(Value::as_str),
            r.get("samples").and_then(Value::as_array),
        ) else {
            continue;
        };
        let xs: Vec<f64> = xs.iter().filter_map(Value::as_f64).collect();
        if ScenarioId::from_key(sc).is_some() && !xs.is_empty() {
            samples
                .entry((sc.to_owned(), metric.to_owned()))
                .or_default()
                .insert(peer.to_owned(), xs);
        }
    }
}

// ===== reporting =====

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Peers in table order: chi, the Rust peers in their usual order, the bare channel, the rest.
fn peer_rank(id: &str) -> usize {
    if let Some(p) = Peer::from_id(id) {
        return Peer::ALL.iter().position(|q| *q == p).unwrap_or(0);
    }
    if id == BARE_CHANNEL {
        Peer::ALL.len()
    } else {
        Peer::ALL.len() + 1
    }
}

/// One row of the final table.
struct Row {
    scenario: ScenarioId,
    metric: &'static MetricDef,
    peer: String,
    samples: Vec<f64>,
    median: f64,
    /// chi's median / this peer's median.
    chi_over_peer: Option<f64>,
    /// How many times worse than the best median of this metric (the winner is 1.00).
    vs_best: Option<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    if b == 0.0 {
        if a == 0.0 { Some(1.0) } else { None }
    } else {
        Some(a / b)
    }
}

fn build_rows(samples: &Samples) -> Vec<Row> {
    let mut rows = Vec::new();
    for def in METRICS {
        let Some(by_peer) = samples.get(&(def.scenario.key().to_owned(), def.key.to_owned()))
        else {
            continue;
        };
        let mut peers: Vec<(&String, &Vec<f64>)> = by_peer.iter().collect();
        peers.sort_by_key(|(id, _)| (peer_rank(id), (*id).clone()));
        let medians: Vec<f64> = peers.iter().map(|(_, xs)| median(xs)).collect();
        let chi = peers
            .iter()
            .position(|(id, _)| id.as_str() == "chi")
            .map(|i| medians[i]);
        let best = medians.iter().copied().reduce(if def.higher_is_better {
            f64::max
        } else {
            f64::min
        });
        for ((id, xs), m) in peers.into_iter().zip(medians) {
            let vs_best = best.and_then(|b| {
                if def.higher_is_better {
                    ratio(b, m)
                } else {
                    ratio(m, b)
                }
            });
            rows.push(Row {
                scenario: def.scenario,
                metric: def,
                peer: id.clone(),
                samples: xs.clone(),
                median: m,
                chi_over_peer: chi.and_then(|c| ratio(c, m)),
                vs_best,
            });
        }
    }
    rows
}

fn fmt_value(key: &str, v: f64) -> String {
    match key {
        "tasks_per_s" if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        "tasks_per_s" => format!("{:.1} k/s", v / 1e3),
        "x_ideal" => format!("{v:.3}×"),
        "ticks" | "wakeups" => format!("{v}"),
        _ if v < 10.0 => format!("{v:.2}"),
        _ if v < 100.0 => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "∞".to_owned(), |r| format!("{r:.2}×"))
}

fn markdown(rows: &[Row], reps: usize, sizes: Sizes, spin: Spin) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} workers per pool, medians of {reps} interleaved runs. 50 µs task = {} spin rounds, {:.1} µs measured on one thread.\n",
        sizes.workers,
        spin.iters,
        spin.per_task.as_secs_f64() * 1e6
    );
    let _ = writeln!(
        out,
        "↑ higher is better: chi/peer ≥ 1 means chi wins. ↓ lower is better: chi/peer ≤ 1 means chi wins. \
         \"vs best\": the best median of the metric is 1.00×, the others are that many times worse.\n"
    );
    let _ = writeln!(
        out,
        "| scenario | metric | peer | median | chi/peer | vs best |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
    for r in rows {
        let arrow = if r.metric.higher_is_better {
            "↑"
        } else {
            "↓"
        };
        let chi_col = if r.peer == "chi" {
            "—".to_owned()
        } else {
            fmt_ratio(r.chi_over_peer)
        };
        let _ = writeln!(
            out,
            "| {} | {} {arrow} | {} | {} | {chi_col} | {} |",
            r.scenario.title(),
            r.metric.label,
            r.peer,
            fmt_value(r.metric.key, r.median),
            fmt_ratio(r.vs_best)
        );
    }
    out
}

/// The targets set for chi, checked against this run's medians.
fn targets(rows: &[Row]) -> Vec<(String, Option<bool>)> {
    let get = |sc: ScenarioId, key: &str, peer: &str| {
        rows.iter()
            .find(|r| r.scenario == sc && r.metric.key == key && r.peer == peer)
            .map(|r| r.median)
    };
    let best_other = |sc: ScenarioId, key: &str, higher: bool, rust_only: bool| {
        rows.iter()
            .filter(|r| r.scenario == sc && r.metric.key == key && r.peer != "chi")
            .filter(|r| !rust_only || Peer::from_id(&r.peer).is_some())
            .map(|r| (r.median, r.peer.clone()))
            .reduce(|a, b| if (b.0 > a.0) == higher { b } else { a })
    };
    let mut out = Vec::new();
    let chi = get(ScenarioId::TinyTasks, "tasks_per_s", "chi");
    let best = best_other(ScenarioId::TinyTasks, "tasks_per_s", true, true);
    out.push(check2(
        "1 tiny tasks: chi ≥ 1.00× best Rust peer",
        chi,
        best,
        |c, b| c / b >= 1.0,
    ));
    let py = get(ScenarioId::TinyTasks, "tasks_per_s", "python").map(|m| (m, "python".to_owned()));
    out.push(check2(
        "1 tiny tasks: chi ≥ 35× Python",
        chi,
        py,
        |c, p| c / p >= 35.0,
    ));
    let chi = get(ScenarioId::RoundTrip, "p50_us", "chi");
    let best = best_other(ScenarioId::RoundTrip, "p50_us", false, false);
    out.push(check2(
        "2 round trip: chi p50 ≤ best peer's p50",
        chi,
        best,
        |c, b| c <= b,
    ));
    let chi = get(ScenarioId::RoundTrip, "p99_us", "chi");
    let rayon = get(ScenarioId::RoundTrip, "p99_us", "rayon").map(|m| (m, "rayon".to_owned()));
    out.push(check2(
        "2 round trip: chi p99 ≤ rayon's p99",
        chi,
        rayon,
        |c, r| c <= r,
    ));
    for (key, what) in [("p50_us", "p50"), ("p99_us", "p99")] {
        let chi = get(ScenarioId::RoundTripIdle, key, "chi");
        let best = best_other(ScenarioId::RoundTripIdle, key, false, false);
        out.push(check2(
            &format!("6 round trip after idle: chi {what} ≤ best peer's {what}"),
            chi,
            best,
            |c, b| c <= b,
        ));
    }
    let chi = get(ScenarioId::CpuTasks, "x_ideal", "chi");
    out.push((
        "3 50 µs tasks: chi ≤ 1.05× ideal".to_owned() + &shown(chi),
        chi.map(|c| c <= 1.05),
    ));
    let chi = get(ScenarioId::MultiSubmit, "tasks_per_s", "chi");
    let bare = get(ScenarioId::MultiSubmit, "tasks_per_s", BARE_CHANNEL)
        .map(|m| (m, BARE_CHANNEL.to_owned()));
    out.push(check2(
        "4 4 submitters: chi ≥ 1.00× bare channel",
        chi,
        bare,
        |c, b| c / b >= 1.0,
    ));
    let chi = get(ScenarioId::IdleCpu, "ticks", "chi");
    out.push((
        "5 idle CPU: chi 0 ticks".to_owned() + &shown(chi),
        chi.map(|c| c == 0.0),
    ));
    out
}

fn shown(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!(" (chi {v:.3})"))
}

fn check2(
    what: &str,
    chi: Option<f64>,
    other: Option<(f64, String)>,
    ok: impl Fn(f64, f64) -> bool,
) -> (String, Option<bool>) {
    match (chi, other) {
        (Some(c), Some((o, who))) => (
            format!("{what} (chi {c:.3}, {who} {o:.3}, chi/{who} {:.2})", c / o),
            Some(ok(c, o)),
        ),
        _ => (format!("{what} (not measured)"), None),
    }
}

fn targets_markdown(targets: &[(String, Option<bool>)], warnings: &[String]) -> String {
    let mut out = String::from("\nTargets (valid only on a quiet machine):\n\n");
    for (what, ok) in targets {
        let mark = match ok {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        let _ = writeln!(out, "- {mark}: {what}");
    }
    if !warnings.is_empty() {
        out.push_str("\nWarnings:\n\n");
        for w in warnings {
            let _ = writeln!(out, "- {w}");
        }
    }
    out
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "scenario,metric,higher_is_better,peer,median,chi_over_peer,vs_best,samples\n",
    );
    let num = |r: Option<f64>| r.map_or_else(String::new, |r| format!("{r}"));
    for r in rows {
        let samples: Vec<String> = r.samples.iter().map(|x| x.to_string()).collect();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            r.scenario.key(),
            r.metric.key,
            r.metric.higher_is_better,
            r.peer,
            r.median,
            num(r.chi_over_peer),
            num(r.vs_best),
            samples.join(" ")
        );
    }
    out
}

fn json_doc(
    rows: &[Row],
    sizes: Sizes,
    spin: Spin,
    reps: usize,
    targets: &[(String, Option<bool>)],
    warnings: &[String],
) -> Value {
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "scenario": r.scenario.key(),
                "metric": r.metric.key,
                "label": r.metric.label,
                "higher_is_better": r.metric.higher_is_better,
                "peer": r.peer,
                "samples": r.samples,
                "median": r.median,
                "chi_over_peer": r.chi_over_peer,
                "vs_best": r.vs_best,
            })
        })
        .collect();
    let targets: Vec<Value> = targets
        .iter()
        .map(|(what, ok)| json!({ "target": what, "pass": ok }))
        .collect();
    json!({
        "tool": "pool_bench",
        "params": sizes.to_json(),
        "reps": reps,
        "spin": { "iters": spin.iters, "per_task_ns": spin.per_task.as_nanos() as u64 },
        "results": results,
        "targets": targets,
        "warnings": warnings,
    })
}

// ===== main =====

fn contenders(args: &Args) -> Result<Vec<Contender>, String> {
    let mut out = vec![Contender::Pool(Peer::Chi)];
    if args.peers.is_empty() {
        out.extend(Peer::ALL.into_iter().skip(1).map(Contender::Pool));
        out.push(Contender::Bare);
        return Ok(out);
    }
    for id in &args.peers {
        let c = match (Peer::from_id(id), id.as_str()) {
            (Some(Peer::Chi), _) => continue,
            (Some(p), _) => Contender::Pool(p),
            (None, BARE_CHANNEL) => Contender::Bare,
            _ => return Err(format!("unknown peer {id:?}")),
        };
        out.push(c);
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let reps = args.reps.unwrap_or(if args.quick { 2 } else { 5 }).max(1);
    let sizes = Sizes::new(args.quick, args.workers);
    let scenarios = if args.scenarios.is_empty() {
        ScenarioId::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let contenders = contenders(&args)?;

    eprintln!("calibrating the {} µs task...", sizes.cpu_task.as_micros());
    let spin = Spin::calibrate(sizes.cpu_task);
    eprintln!(
        "  {} rounds, {:.2} µs per task",
        spin.iters,
        spin.per_task.as_secs_f64() * 1e6
    );

    let (mut samples, mut warnings) = run_all(&scenarios, &contenders, sizes, spin, reps);
    if let Some(path) = &args.python {
        merge_python(path, &mut samples, sizes, &mut warnings);
    }
    let rows = build_rows(&samples);
    let targets = targets(&rows);
    print!("{}", markdown(&rows, reps, sizes, spin));
    print!("{}", targets_markdown(&targets, &warnings));

    std::fs::create_dir_all(&args.out_dir)?;
    let csv_path = args.out_dir.join("thread_pool.csv");
    let json_path = args.out_dir.join("thread_pool.json");
    std::fs::write(&csv_path, csv(&rows))?;
    let doc = json_doc(&rows, sizes, spin, reps, &targets, &warnings);
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    eprintln!("wrote {} and {}", csv_path.display(), json_path.display());
    Ok(())
}
