//! `chi cluster`: a worker with built-in tasks, a one-machine demo of crash recovery, and the
//! state of a queue. Everything goes through `chi-cluster` on Redis Streams.

use crate::units;
use anyhow::{Context, bail};
use chi_cluster::{Cluster, TaskDef, Worker};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Exit statuses of every `chi cluster` command.
const EXIT_CODES: [u8; 3] = [
    crate::exit::SUCCESS,
    crate::exit::FAILURE,
    crate::exit::USAGE,
];

fn after_help() -> String {
    crate::exit::section(&EXIT_CODES)
}

/// Flags of `chi cluster`.
#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ClusterCommand {
    /// Serve a queue with the built-in tasks (upper, sleep, burn, crash) until SIGTERM/SIGINT,
    /// then finish what it holds and leave.
    Worker(WorkerArgs),
    /// One machine, one Redis: starts two workers, submits tasks, prints results as they
    /// arrive, kills a worker holding a task and shows the task finishing on the other.
    Demo(DemoArgs),
    /// Queues, depth, tasks held per worker, heartbeats, dead letters, recent throughput.
    Status(StatusArgs),
}

/// Where Redis is.
#[derive(clap::Args, Debug, Clone)]
struct RedisArg {
    /// Redis URL; several comma-separated URLs are the startup nodes of a Redis Cluster.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
}

#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
struct WorkerArgs {
    #[command(flatten)]
    redis: RedisArg,
    /// The queue to serve.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Local worker processes (crash isolation, timeouts, cancel of running tasks).
    #[arg(long, value_name = "N", default_value = "2", value_parser = units::workers)]
    processes: usize,
    /// Run tasks on this many threads instead of processes.
    #[arg(long, value_name = "N", value_parser = units::workers)]
    threads: Option<usize>,
    /// Tasks taken beyond the free processes (fewer round trips for tiny tasks). Waiting ones
    /// go back to the queue as soon as another worker shows idle processes.
    #[arg(long, value_name = "N", default_value_t = 0)]
    prefetch: usize,
    /// How often the worker tells Redis it is alive.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = units::positive_duration)]
    heartbeat: Duration,
    /// How long a silent worker keeps its tasks before live workers reclaim them (more than
    /// twice the heartbeat). The reclaiming worker's lease decides: give every worker of a
    /// queue the same heartbeat and lease.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = units::positive_duration)]
    lease: Duration,
    /// On SIGTERM/SIGINT: how long running tasks may take to finish before they are stopped
    /// and handed back to the queue (tasks not started are handed back at once).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = units::duration)]
    stop_grace: Duration,
}

#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
struct DemoArgs {
    #[command(flatten)]
    redis: RedisArg,
}

#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
struct StatusArgs {
    #[command(flatten)]
    redis: RedisArg,
    /// Only this queue (repeatable); default: every queue found.
    #[arg(long)]
    queue: Vec<String>,
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
}

// ===== built-in tasks =====

/// The pid of the cluster worker running a task (the parent of a process-pool process).
fn worker_pid() -> u32 {
    if chi::process_pool::is_worker() {
        std::os::unix::process::parent_id()
    } else {
        std::process::id()
    }
}

fn upper(s: String) -> String {
    s.to_uppercase()
}

fn sleep(ms: u64) -> String {
    std::thread::sleep(Duration::from_millis(ms));
    format!("slept {ms} ms on worker pid {}", worker_pid())
}

fn burn(ms: u64) -> String {
    let end = Instant::now() + Duration::from_millis(ms);
    let mut x = 0u64;
    while Instant::now() < end {
        for i in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
    format!("burned {ms} ms on worker pid {}", worker_pid())
}

fn crash(_: u64) -> String {
    std::process::abort()
}

/// Upper-cases a string.
pub(crate) static UPPER: TaskDef<String, String> = TaskDef::new("upper", upper);
/// Sleeps N ms.
pub(crate) static SLEEP: TaskDef<u64, String> = TaskDef::new("sleep", sleep);
/// Keeps a CPU busy for N ms.
pub(crate) static BURN: TaskDef<u64, String> = TaskDef::new("burn", burn);
/// Aborts the process running it.
pub(crate) static CRASH: TaskDef<u64, String> = TaskDef::new("crash", crash);

/// Runs `chi cluster ...`.
pub(crate) fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Worker(a) => worker(&a),
        ClusterCommand::Demo(a) => demo(&a.redis.redis),
        ClusterCommand::Status(a) => status(&a),
    }
}

fn worker(a: &WorkerArgs) -> anyhow::Result<()> {
    let mut b = Worker::builder()
        .connect(&a.redis.redis)
        .queue(&a.queue)
        .task(&UPPER)
        .task(&SLEEP)
        .task(&BURN)
        .task(&CRASH)
        .prefetch(a.prefetch)
        .heartbeat(a.heartbeat)
        .lease(a.lease)
        .stop_grace(a.stop_grace);
    b = match a.threads {
        Some(n) => b.threads(n),
        None => b.processes(a.processes),
    };
    let worker = b.build().context("starting the worker")?;
    let stop = worker.stop_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing the signal handler")?;
    std::thread::Builder::new()
        .name("chi-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!("signal {sig}: finishing held tasks, then leaving");
                stop.stop();
            }
        })?;
    tracing::info!(worker = worker.id(), queue = %a.queue, "serving");
    worker.run().context("the worker stopped on an error")
}

fn status(a: &StatusArgs) -> anyhow::Result<()> {
    let url = &a.redis.redis;
    let names = if a.queue.is_empty() {
        chi_cluster::queues(url)?
    } else {
        a.queue.clone()
    };
    let all = names
        .iter()
        .map(|q| chi_cluster::status(url, q))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &all)?;
        writeln!(out)?;
        return Ok(());
    }
    if all.is_empty() {
        writeln!(out, "no queues on {url}")?;
    }
    for s in &all {
        writeln!(
            out,
            "queue {}: {} in stream ({} running), {:.1} tasks/s over 10 s, {} dead letters",
            s.queue, s.depth, s.running, s.throughput, s.dead_letters
        )?;
        for w in &s.workers {
            writeln!(
                out,
                "  worker {}: holds {}, {} idle processes, last heartbeat {} ms ago",
                w.id, w.holding, w.idle, w.heartbeat_age_ms
            )?;
        }
        for (id, name, attempts) in &s.recent_dead {
            writeln!(
                out,
                "  dead letter: {id} ({name}) after {attempts} attempts"
            )?;
        }
    }
    Ok(())
}

// ===== demo =====

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// Worker processes of the demo; killed and reaped on every path.
struct Workers(Vec<Child>);

impl Workers {
    /// SIGTERM (a graceful stop: finish what it holds), then reap; SIGKILL after 10 s.
    fn stop_all(&mut self) {
        for c in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let end = Instant::now() + Duration::from_secs(10);
        for mut c in self.0.drain(..) {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_worker(url: &str, queue: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding the chi binary")?;
    Command::new(exe)
        .args(["-q", "cluster", "worker", "--redis", url, "--queue", queue])
        .args(["--processes", "2", "--heartbeat", "200ms", "--lease", "2s"])
        .stdin(Stdio::null())
        .spawn()
        .context("starting a worker process")
}

/// Waits (bounded) until `cond` holds on the queue's status.
fn wait_status(
    url: &str,
    queue: &str,
    what: &str,
    cond: impl Fn(&chi_cluster::QueueStatus) -> bool,
) -> anyhow::Result<chi_cluster::QueueStatus> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let s = chi_cluster::status(url, queue)?;
        if cond(&s) {
            return Ok(s);
        }
        if Instant::now() > end {
            bail!("{what}: not within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn demo(url: &str) -> anyhow::Result<()> {
    // The URL and Redis first: a bad one is one line, before any worker starts.
    chi_cluster::queues(url)?;
    let queue = format!("demo-{}", std::process::id());
    say(format!(
        "== 1. Two workers on queue {queue} (each with 2 processes) =="
    ));
    let mut workers = Workers(vec![spawn_worker(url, &queue)?, spawn_worker(url, &queue)?]);
    wait_status(url, &queue, "two workers heartbeat", |s| {
        s.workers.len() == 2
    })?;
    let client = Cluster::builder(url).queue(&queue).connect()?;

    say("== 2. Eight tasks; results printed as they arrive ==");
    let words = [
        "pool", "池", "redis", "stream", "worker", "task", "chi", "cluster",
    ];
    let tasks: Vec<_> = words
        .iter()
        .map(|w| client.submit(&UPPER, (*w).to_owned()))
        .collect::<Result<_, _>>()?;
    for t in chi::as_completed(tasks) {
        say(format!("  {}", t.result()?));
    }
    let ran: Vec<_> = (0..4u64)
        .map(|i| client.submit(&SLEEP, 50 + i * 10))
        .collect::<Result<_, _>>()?;
    for t in chi::as_completed(ran) {
        say(format!("  {}", t.result()?));
    }

    say("== 3. A worker dies holding a task; another finishes it ==");
    let start = Instant::now();
    let task = client.submit(&SLEEP, 1500)?;
    let s = wait_status(url, &queue, "a worker holds the task", |s| s.running == 1)?;
    let holder = s
        .workers
        .iter()
        .find(|w| w.holding == 1)
        .and_then(|w| w.id.rsplit('-').next()?.parse::<u32>().ok())
        .context("finding the worker that holds the task")?;
    let victim = workers
        .0
        .iter()
        .position(|c| c.id() == holder)
        .context("the holder is not one of the demo's workers")?;
    let mut dead = workers.0.remove(victim);
    let killed = dead.kill();
    dead.wait()?;
    killed?;
    say(format!(
        "  killed worker pid {holder} (SIGKILL) while it ran the task"
    ));
    let result = task.result()?;
    say(format!(
        "  {result}; result {:.1} s after submit (sleep 1.5 s + lease 2 s + reclaim); deliveries retried: {}",
        start.elapsed().as_secs_f64(),
        client.metrics().retried
    ));

    say("== 4. Done: the client shuts down, the last worker stops gracefully (SIGTERM) ==");
    client.shutdown();
    workers.stop_all();
    Ok(())
}
