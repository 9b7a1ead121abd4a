//! The process pool in one program: ten tasks that print the worker they run in, results by
//! done-callback, a chunked `map`, then a task that crashes its worker and one that runs past
//! the task timeout, both handled while the pool carries on.
//!
//! ```text
//! cargo run --release -p chi --example process_pool
//! ```

use chi::{ProcessPool, TaskError};
use std::time::Duration;

/// Runs in a worker process.
fn task((n, m): (u32, u32)) -> String {
    println!(
        "  task({n}, {m}) running in worker pid {}",
        std::process::id()
    );
    format!("task({n}, {m}) = {}", n * m)
}

fn square(x: u64) -> u64 {
    x * x
}

/// Crashes its worker the hard way.
fn crash(_: ()) -> u32 {
    std::process::abort()
}

/// Never finishes on its own.
fn stuck(_: ()) -> u32 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn main() {
    // The one line: in a worker process this runs tasks and never returns.
    chi::process_pool::init();

    println!("parent pid {}", std::process::id());
    let pool = ProcessPool::builder()
        .max_workers(4)
        .task_timeout(Duration::from_millis(500))
        .build()
        .expect("a process pool");
    // Not needed (tasks wait for workers), but it spreads the first tasks over all of them.
    pool.wait_for_workers(Duration::from_secs(30));

    let mut tasks = Vec::new();
    for i in 0..10 {
        let t = pool.submit(task, (i, 3)).expect("the pool is open");
        t.add_done_callback(|outcome| match outcome {
            Ok(s) => println!("  callback: {s}"),
            Err(e) => println!("  callback: failed: {e}"),
        });
        tasks.push(t);
    }
    for t in tasks {
        t.result().expect("a result");
    }

    let total: u64 = pool
        .map(square, 1..=10_000u64)
        .chunksize(1000)
        .map(Result::unwrap)
        .sum();
    println!("sum of squares 1..=10000 through map(chunksize=1000): {total}");
    assert_eq!(total, 333_383_335_000);

    match pool.submit(crash, ()).expect("open").result() {
        Err(TaskError::WorkerDied(why)) => println!("crashed task handled: worker died ({why})"),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    match pool.submit(stuck, ()).expect("open").result() {
        Err(TaskError::TimedOut(after)) => {
            println!("stuck task handled: timed out after {after:?}")
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert_eq!(pool.submit(square, 12).expect("open").result(), Ok(144));
    pool.wait_for_workers(Duration::from_secs(30)); // the replacements
    let m = pool.metrics();
    println!(
        "the pool carries on: {} workers up, {} started in all, {} died",
        m.workers, m.spawned, m.died
    );
    pool.shutdown();
}
