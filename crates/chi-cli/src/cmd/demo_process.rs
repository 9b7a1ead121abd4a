//! The process-pool part of `chi demo`: the walkthrough on worker processes (ten tasks
//! that print the worker pid they run in, results by done-callback), then one task that
//! crashes its worker and one that runs past the task timeout, both handled while the pool
//! carries on.
//!
//! Needs `chi::process_pool::init()` as the first line of `main` (workers are this binary
//! started again).

use anyhow::{Context, bail};
use chi::{ProcessPool, TaskError};
use std::time::Duration;

/// Runs in a worker process: prints where it runs, returns a line for the callback.
fn task((n, m): (u32, u32)) -> String {
    println!(
        "  task({n}, {m}) running in worker pid {}",
        std::process::id()
    );
    format!("task({n}, {m}) = {}", n * m)
}

/// Crashes its worker.
fn crash(_: ()) -> u32 {
    std::process::abort()
}

/// Never finishes on its own.
fn stuck(_: ()) -> u32 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn ok(x: u32) -> u32 {
    x + 1
}

/// Runs the process-pool walkthrough.
pub(crate) fn run_process_demo() -> anyhow::Result<()> {
    println!(
        "process pool: 5 worker processes (parent pid {})",
        std::process::id()
    );
    let pool = ProcessPool::builder()
        .max_workers(5)
        .task_timeout(Duration::from_millis(300))
        .build()
        .context("starting the process pool")?;
    // Not needed (tasks wait for workers), but it spreads the first tasks over all of them.
    pool.wait_for_workers(Duration::from_secs(30));

    let mut tasks = Vec::new();
    for i in 0..10 {
        let t = pool.submit(task, (i, 3)).context("submitting")?;
        t.add_done_callback(|outcome| match outcome {
            Ok(s) => println!("  callback: {s}"),
            Err(e) => println!("  callback: task failed: {e}"),
        });
        tasks.push(t);
    }
    for t in tasks {
        t.result().context("a task of the walkthrough")?;
    }

    match pool.submit(crash, ()).context("submitting")?.result() {
        Err(TaskError::WorkerDied(why)) => {
            println!("  a task crashed its worker ({why}); the worker was replaced")
        }
        other => bail!("expected the crashing task to fail with WorkerDied, got {other:?}"),
    }
    match pool.submit(stuck, ()).context("submitting")?.result() {
        Err(TaskError::TimedOut(after)) => {
            println!("  a task ran past {after:?}; it was stopped and its worker replaced")
        }
        other => bail!("expected the stuck task to time out, got {other:?}"),
    }
    let next = pool.submit(ok, 41).context("submitting")?.result();
    if next != Ok(42) {
        bail!("the pool did not carry on: {next:?}");
    }
    pool.wait_for_workers(Duration::from_secs(30)); // the replacements
    let m = pool.metrics();
    println!(
        "  the pool carries on: {} workers up, {} processes started in all, next task gave 42",
        m.workers, m.spawned
    );
    pool.shutdown();
    Ok(())
}
