//! Back-pressure with a bounded queue: when the queue is full, `try_submit` refuses at once
//! and hands the work back, `submit_timeout` waits at most its timeout, and `submit` blocks
//! until there is room, so a fast producer cannot pile up unbounded work.
use chi::ThreadPool;
use std::sync::mpsc;
use std::time::Duration;

fn main() {
    let pool = ThreadPool::builder()
        .max_workers(1)
        .queue_bound(2)
        .build()
        .expect("valid settings");

    // Occupy the only worker until we say so, then fill the two queue places.
    let (started_tx, started) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    let busy = pool
        .submit(move || {
            started_tx.send(()).expect("main waits for the start");
            gate.recv().expect("main releases the worker");
            "busy"
        })
        .expect("the pool is running");
    started.recv().expect("the worker starts the first task");
    let queued: Vec<_> = (0..2)
        .map(|_| pool.try_submit(|| "queued").expect("the queue has room"))
        .collect();

    // The queue is full: try_submit refuses and gives the closure back, so nothing is lost;
    // here the caller runs it itself.
    let refused = pool
        .try_submit(|| "run by the caller")
        .expect_err("the queue is full");
    assert!(refused.is_full());
    let ran = refused.into_inner()();
    println!("try_submit: queue full, the caller ran the work itself: {ran:?}");
    assert_eq!(ran, "run by the caller");

    // submit_timeout waits for room, then gives up and hands the closure back too.
    let refused = pool
        .submit_timeout(|| "too late", Duration::from_millis(20))
        .expect_err("the queue stays full");
    assert!(refused.is_timeout());
    println!("submit_timeout: no room within 20 ms, the work came back");
    assert_eq!(refused.into_inner()(), "too late");

    // Free the worker; everything queued runs.
    release.send(()).expect("the worker waits");
    assert_eq!(busy.result().expect("no panic"), "busy");
    for task in queued {
        assert_eq!(task.result().expect("no panic"), "queued");
    }

    // A producer using plain submit: it blocks whenever two tasks are waiting, so at most
    // three are in the pool at once however fast it submits.
    let tasks: Vec<_> = (1..=20u64)
        .map(|i| pool.submit(move || i * i).expect("the pool is running"))
        .collect();
    let total: u64 = tasks
        .into_iter()
        .map(|t| t.result().expect("no panic"))
        .sum();
    println!("submit: 20 tasks through a queue of 2, sum of squares = {total}");
    assert_eq!(total, 2870);

    pool.shutdown();
}
