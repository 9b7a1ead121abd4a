//! The chi side of BENCHMARKS §4: a client against workers started by `chi cluster worker`
//! (their built-in tasks `upper` and `burn`, declared here with the same names and types).
//!
//! ```text
//! cargo run --release -p chi-cluster --example cluster_bench -- <redis-url> <scenario> [n]
//! scenarios: throughput (n tiny tasks, submit all → every result), rtt (n sequential round
//! trips: p50/p99), cpu (n × 5 ms CPU tasks: wall), wait (one 20 s task: time to its result,
//! for the SIGKILL and outage scenarios the script drives)
//! ```
//! Prints one JSON line.

use chi_cluster::{Cluster, TaskDef};
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(scenario)) = (args.get(1), args.get(2)) else {
        return Err("usage: cluster_bench <redis-url> throughput|rtt|cpu|wait [n]".into());
    };
    let n: u64 = args.get(3).map_or(Ok(10_000), |s| s.parse())?;
    let client = Cluster::connect(url)?;
    // Warm up: connections, worker processes.
    client.submit(&UPPER, "warm".into())?.result()?;
    let start = Instant::now();
    match scenario.as_str() {
        "throughput" => {
            let ok = client
                .map(&UPPER, (0..n).map(|i| format!("t{i}")), 2048)
                .filter(Result::is_ok)
                .count();
            let s = start.elapsed().as_secs_f64();
            println!(
                r#"{{"system":"chi","scenario":"throughput","n":{n},"ok":{ok},"secs":{s:.3},"per_sec":{:.0}}}"#,
                ok as f64 / s
            );
        }
        "rtt" => {
            let mut us: Vec<f64> = (0..n)
                .map(|_| {
                    let t = Instant::now();
                    let _ = client.submit(&UPPER, "x".into()).map(|t| t.result());
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            us.sort_by(f64::total_cmp);
            let q = |p: f64| us[((us.len() as f64 - 1.0) * p) as usize];
            println!(
                r#"{{"system":"chi","scenario":"rtt","n":{n},"p50_us":{:.0},"p99_us":{:.0}}}"#,
                q(0.5),
                q(0.99)
            );
        }
        "cpu" => {
            let tasks: Vec<_> = (0..n)
                .map(|_| client.submit(&BURN, 5))
                .collect::<Result<_, _>>()?;
            let ok = tasks
                .into_iter()
                .filter(|t| t.wait_timeout(Duration::from_secs(600)))
                .count();
            let s = start.elapsed().as_secs_f64();
            let ideal = n as f64 * 0.005 / 2.0;
            println!(
                r#"{{"system":"chi","scenario":"cpu","n":{n},"ok":{ok},"secs":{s:.3},"vs_ideal":{:.3}}}"#,
                s / ideal
            );
        }
        "wait" => {
            let r = client.submit(&SLEEP, n)?.result();
            println!(
                r#"{{"system":"chi","scenario":"wait","ok":{},"secs":{:.3}}}"#,
                r.is_ok(),
                start.elapsed().as_secs_f64()
            );
        }
        other => return Err(format!("unknown scenario {other}").into()),
    }
    client.shutdown();
    Ok(())
}
