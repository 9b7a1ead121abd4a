//! The chi side of BENCHMARKS §4: a client against workers started by `chi cluster worker`
//! (their built-in tasks `upper`, `sleep` and `burn`, declared here with the same names and
//! types). `crates/chi-cluster/bench/compare.sh` drives it; the Celery and RQ sides are
//! `bench/peers.py`, which speaks the same protocol.
//!
//! ```text
//! cluster_bench <redis-url> <scenario> [n] [wait s]
//!   ready N          wait until N workers heartbeat
//!   throughput N     N tiny tasks, submitted all (pipelined) → every result: tasks/s
//!   rtt N            N sequential round trips: p50/p99 µs
//!   cpu N            N × 5 ms CPU tasks: wall ÷ ideal on 2 worker processes
//!   kill MS WAIT     one MS ms task; prints its holder's pid, reads a line (the driver killed
//!                    that worker), then the time until the result (or none within WAIT s)
//!   outage N WAIT    N × 10 ms tasks; prints when a quarter is done, reads a line (Redis was
//!                    stopped and restarted), then counts results, clear errors, and tasks
//!                    with neither within WAIT s
//! ```
//! Prints JSON lines; the last one is the measurement.

use chi::ResultTimeoutError;
use chi_cluster::{Cluster, TaskDef};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

fn upper(s: String) -> String {
    s.to_uppercase()
}
fn burn(_: u64) -> String {
    unreachable!("runs in the worker")
}
fn sleep(_: u64) -> String {
    unreachable!("runs in the worker")
}

static UPPER: TaskDef<String, String> = TaskDef::new("upper", upper);
static BURN: TaskDef<u64, String> = TaskDef::new("burn", burn);
static SLEEP: TaskDef<u64, String> = TaskDef::new("sleep", sleep);

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(scenario)) = (args.get(1), args.get(2)) else {
        return Err("usage: cluster_bench <redis-url> <scenario> [n]".into());
    };
    let n: u64 = args.get(3).map_or(Ok(10_000), |s| s.parse())?;
    let wait = Duration::from_secs(args.get(4).map_or(Ok(60), |s| s.parse())?);
    if scenario == "ready" {
        return ready(url, n);
    }
    let client = Cluster::connect(url)?;
    // Warm up: connections, worker processes.
    client.submit(&UPPER, "warm".into())?.result()?;
    match scenario.as_str() {
        "throughput" => throughput(&client, n),
        "rtt" => rtt(&client, n),
        "cpu" => cpu(&client, n)?,
        "kill" => kill(&client, url, n, wait)?,
        "outage" => outage(&client, n, wait)?,
        other => return Err(format!("unknown scenario {other}").into()),
    }
    client.shutdown();
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Blocks until the driver writes a line.
fn await_driver() -> Result<(), Error> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

fn ready(url: &str, n: u64) -> Result<(), Error> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let workers = chi_cluster::status(url, "default").map_or(0, |s| s.workers.len());
        if workers as u64 >= n {
            say(&format!(r#"{{"ready":{workers}}}"#));
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("only {workers} of {n} workers after 60 s").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn throughput(client: &Cluster, n: u64) {
    let start = Instant::now();
    let ok = client
        .map(&UPPER, (0..n).map(|i| format!("t{i}")), 2048)
        .filter(Result::is_ok)
        .count();
    let s = start.elapsed().as_secs_f64();
    say(&format!(
        r#"{{"n":{n},"ok":{ok},"secs":{s:.3},"per_sec":{:.0}}}"#,
        ok as f64 / s
    ));
}

fn rtt(client: &Cluster, n: u64) {
    let mut us: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let _ = client.submit(&UPPER, "x".into()).map(chi::Task::result);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() as f64 - 1.0) * p) as usize];
    say(&format!(
        r#"{{"n":{n},"p50_us":{:.0},"p99_us":{:.0}}}"#,
        q(0.5),
        q(0.99)
    ));
}

fn cpu(client: &Cluster, n: u64) -> Result<(), Error> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| client.submit(&BURN, 5))
        .collect::<Result<_, _>>()?;
    let ok = tasks
        .into_iter()
        .filter(|t| t.wait_timeout(Duration::from_secs(600)) && t.error().is_none())
        .count();
    let s = start.elapsed().as_secs_f64();
    let ideal = n as f64 * 0.005 / 2.0;
    say(&format!(
        r#"{{"n":{n},"ok":{ok},"secs":{s:.3},"vs_ideal":{:.3}}}"#,
        s / ideal
    ));
    Ok(())
}

/// The pid of the worker holding a task (its id ends with the pid).
fn holder(url: &str) -> Result<u32, Error> {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let st = chi_cluster::status(url, "default")?;
        let held = st.workers.iter().find(|w| w.holding > 0);
        if let Some(pid) = held.and_then(|w| w.id.rsplit('-').next()?.parse().ok()) {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("no worker took the task within 30 s".into())
}

fn kill(client: &Cluster, url: &str, ms: u64, wait: Duration) -> Result<(), Error> {
    let task = client.submit(&SLEEP, ms)?;
    say(&format!(r#"{{"holder":{}}}"#, holder(url)?));
    await_driver()?;
    let killed = Instant::now();
    let r = task.result_timeout(wait);
    let secs = killed.elapsed().as_secs_f64();
    match r {
        Ok(_) => say(&format!(
            r#"{{"delivered":true,"secs":{secs:.3},"retried":{}}}"#,
            client.metrics().retried
        )),
        Err(ResultTimeoutError::Timeout(_)) => say(r#"{"delivered":false,"secs":null}"#),
        Err(ResultTimeoutError::Failed(e)) => say(
            &serde_json::json!({"delivered": false, "secs": secs, "error": e.to_string()})
                .to_string(),
        ),
    }
    Ok(())
}

fn outage(client: &Cluster, n: u64, wait: Duration) -> Result<(), Error> {
    let tasks: Vec<_> = (0..n)
        .map(|_| client.submit(&SLEEP, 10))
        .collect::<Result<_, _>>()?;
    say(&format!(r#"{{"submitted":{n}}}"#));
    let _ = tasks[tasks.len() / 4].wait_timeout(Duration::from_secs(60));
    say(r#"{"progress":true}"#);
    await_driver()?;
    let deadline = Instant::now() + wait;
    let (mut ok, mut errors, mut missing) = (0, 0, 0);
    let mut first_error = String::new();
    for t in tasks {
        match t.result_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(_) => ok += 1,
            Err(ResultTimeoutError::Timeout(_)) => missing += 1,
            Err(ResultTimeoutError::Failed(e)) => {
                if errors == 0 {
                    first_error = e.to_string();
                }
                errors += 1;
            }
        }
    }
    let report = serde_json::json!({
        "n": n, "ok": ok, "errors": errors, "missing": missing, "submit_failed": 0,
        "first_error": first_error,
    });
    say(&report.to_string());
    Ok(())
}
