//! The tasks the test workers know, and definitions that workers do not know (or know with
//! other types) for the refusal cases.

use chi_cluster::{TaskDef, WorkerBuilder};
use std::path::Path;
use std::time::{Duration, Instant};

fn square(x: u64) -> u64 {
    x * x
}

/// The id of the cluster worker running the task: the parent of a process-pool process.
fn worker_pid(_: ()) -> u32 {
    std::os::unix::process::parent_id()
}

/// The id of this process (a thread-pool worker).
fn own_pid(_: ()) -> u32 {
    std::process::id()
}

/// Writes `<dir>/<name>.started` (appending the worker's pid), then waits until
/// `<dir>/<name>.open` exists; returns the worker's pid. A stand-in for a long task that the
/// test controls without timing.
fn gated((dir, name): (String, String)) -> u32 {
    let dir = Path::new(&dir);
    let ppid = std::os::unix::process::parent_id();
    let started = dir.join(format!("{name}.started"));
    let mut line = std::fs::read_to_string(&started).unwrap_or_default();
    line.push_str(&format!("{ppid}\n"));
    std::fs::write(&started, line).expect("write the started marker");
    let open = dir.join(format!("{name}.open"));
    let end = Instant::now() + Duration::from_secs(60);
    while !open.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    ppid
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn reverse(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

/// Kills whatever process runs it: the whole worker in a thread-pool worker.
fn abort(_: u64) -> u64 {
    std::process::abort()
}

fn panics(_: u64) -> u64 {
    panic!("a task that panics")
}

/// Appends a line to `<dir>/<name>.runs`; panics ("flaky run N") while this is run N ≤
/// `fail`, else returns N. Runs of one task are never concurrent, so the count is exact.
fn flaky((dir, name, fail): (String, String, u32)) -> u32 {
    let path = Path::new(&dir).join(format!("{name}.runs"));
    let mut runs = std::fs::read_to_string(&path).unwrap_or_default();
    runs.push_str("run\n");
    std::fs::write(&path, &runs).expect("write the runs file");
    let n = runs.lines().count() as u32;
    assert!(n > fail, "flaky run {n}");
    n
}

/// How many times `flaky` ran for `name`.
pub(crate) fn runs(dir: &str, name: &str) -> usize {
    std::fs::read_to_string(Path::new(dir).join(format!("{name}.runs")))
        .unwrap_or_default()
        .lines()
        .count()
}

pub(crate) static SQUARE: TaskDef<u64, u64> = TaskDef::new("square", square);
pub(crate) static WORKER_PID: TaskDef<(), u32> = TaskDef::new("worker_pid", worker_pid);
pub(crate) static OWN_PID: TaskDef<(), u32> = TaskDef::new("own_pid", own_pid);
pub(crate) static GATED: TaskDef<(String, String), u32> = TaskDef::new("gated", gated);
pub(crate) static SLEEP: TaskDef<u64, u64> = TaskDef::new("sleep", sleep_ms);
pub(crate) static SLEEP_CAPPED: TaskDef<u64, u64> =
    TaskDef::new("sleep_capped", sleep_ms).with_timeout(Duration::from_millis(100));
pub(crate) static REVERSE: TaskDef<Vec<u8>, Vec<u8>> = TaskDef::new("reverse", reverse);
pub(crate) static ABORT: TaskDef<u64, u64> = TaskDef::new("abort", abort);
pub(crate) static PANICS: TaskDef<u64, u64> = TaskDef::new("panics", panics);
pub(crate) static FLAKY: TaskDef<(String, String, u32), u32> = TaskDef::new("flaky", flaky);
pub(crate) static FLAKY_RETRIED: TaskDef<(String, String, u32), u32> =
    TaskDef::new("flaky_retried", flaky).retry_on_panic();

fn nope(x: u64) -> u64 {
    x
}
fn square_text(s: String) -> u64 {
    s.len() as u64
}

/// A name no worker knows.
pub(crate) static UNKNOWN: TaskDef<u64, u64> = TaskDef::new("nope", nope);
/// "square" with other types than the workers'.
pub(crate) static SQUARE_WRONG_TYPES: TaskDef<String, u64> = TaskDef::new("square", square_text);

/// Every task above that workers know.
pub(crate) fn register(b: WorkerBuilder) -> WorkerBuilder {
    b.task(&SQUARE)
        .task(&WORKER_PID)
        .task(&OWN_PID)
        .task(&GATED)
        .task(&SLEEP)
        .task(&SLEEP_CAPPED)
        .task(&REVERSE)
        .task(&ABORT)
        .task(&PANICS)
        .task(&FLAKY)
        .task(&FLAKY_RETRIED)
}
