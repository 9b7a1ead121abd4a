//! Drops: each closure and result exactly once.

use super::*;
use common::Counted;

/// A task whose closure and result are both counted.
fn counted_task(
    closures: &DropCounter,
    results: &DropCounter,
) -> impl FnOnce() -> Counted<u32> + Send + 'static {
    let captured = closures.track(());
    let results = results.clone();
    move || {
        let _keep = &captured;
        results.track(7)
    }
}

/// Pool of one with its worker held; returns the held task too.
fn held_pool() -> (ThreadPool, Gate, Task<()>) {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let held = pool.submit(gate.hold()).unwrap();
    gate.wait_started(1);
    (pool, gate, held)
}

#[test]
fn drop_once_on_run() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let pool = ThreadPool::new(1).unwrap();
    let v = pool
        .submit(counted_task(&closures, &results))
        .unwrap()
        .result()
        .unwrap();
    assert_eq!(*v.get(), 7);
    assert_eq!((closures.count(), results.count()), (1, 0));
    drop(v);
    pool.shutdown();
    assert_eq!((closures.count(), results.count()), (1, 1));
}

#[test]
fn drop_once_on_cancel() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let (pool, gate, held) = held_pool();
    let t = pool.submit(counted_task(&closures, &results)).unwrap();
    assert!(t.cancel());
    assert_eq!(closures.count(), 1, "cancel drops the closure at once");
    gate.open();
    held.result().unwrap();
    assert_eq!(t.result().unwrap_err(), TaskError::Cancelled);
    pool.shutdown();
    assert_eq!((closures.count(), results.count()), (1, 0));
}

#[test]
fn drop_once_on_shutdown_now() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let (pool, gate, held) = held_pool();
    let tasks: Vec<_> = (0..10)
        .map(|_| pool.submit(counted_task(&closures, &results)).unwrap())
        .collect();
    thread::scope(|s| {
        let stopper = s.spawn(|| pool.shutdown_now());
        poll_until("shutdown_now cancels the queue", || {
            tasks.iter().all(Task::cancelled)
        });
        gate.open();
        assert_eq!(stopper.join().unwrap(), 10);
    });
    assert_eq!((closures.count(), results.count()), (10, 0));
    held.result().unwrap();
    drop(tasks);
    assert_eq!((closures.count(), results.count()), (10, 0));
}

#[test]
fn drop_once_on_panic() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let pool = ThreadPool::new(1).unwrap();
    let captured = closures.track(());
    let r = results.clone();
    let t = pool
        .submit(move || -> Counted<u32> {
            let _keep = &captured;
            let _r = &r;
            panic!("with captures")
        })
        .unwrap();
    assert!(t.result().unwrap_err().is_panic());
    pool.shutdown();
    assert_eq!((closures.count(), results.count()), (1, 0));
}

#[test]
fn drop_once_handle_dropped_before_run() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let (pool, gate, held) = held_pool();
    drop(pool.submit(counted_task(&closures, &results)).unwrap());
    assert_eq!(
        (closures.count(), results.count()),
        (0, 0),
        "dropping the handle does not cancel"
    );
    gate.open();
    held.result().unwrap();
    pool.shutdown();
    assert_eq!((closures.count(), results.count()), (1, 1));
}

#[test]
fn drop_once_handle_dropped_while_running() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let t = pool
        .submit(gate.hold_then(counted_task(&closures, &results)))
        .unwrap();
    gate.wait_started(1);
    drop(t);
    gate.open();
    pool.shutdown();
    assert_eq!((closures.count(), results.count()), (1, 1));
}

#[test]
fn drop_once_handle_dropped_after_run() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let pool = ThreadPool::new(1).unwrap();
    let t = pool.submit(counted_task(&closures, &results)).unwrap();
    t.wait();
    drop(t);
    pool.shutdown();
    assert_eq!((closures.count(), results.count()), (1, 1));
}

#[test]
fn drop_once_submit_refused() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let pool = ThreadPool::new(1).unwrap();
    pool.shutdown();
    let err = pool.submit(counted_task(&closures, &results)).unwrap_err();
    assert_eq!(
        closures.count(),
        0,
        "the refused closure is handed back, not dropped"
    );
    drop(err);
    assert_eq!((closures.count(), results.count()), (1, 0));
}

#[test]
fn drop_once_failed_pool() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let pool = ThreadPool::builder()
        .max_workers(1)
        .initializer(|| panic!("no"))
        .build()
        .unwrap();
    let first = pool.submit(counted_task(&closures, &results)).unwrap();
    assert!(matches!(first.result(), Err(TaskError::PoolFailed(_))));
    let later = pool.submit(counted_task(&closures, &results)).unwrap();
    assert!(matches!(later.result(), Err(TaskError::PoolFailed(_))));
    pool.shutdown();
    assert_eq!((closures.count(), results.count()), (2, 0));
}

#[test]
fn drop_once_callbacks() {
    let callbacks = DropCounter::new();
    let (pool, gate, held) = held_pool();
    let ran = pool.submit(|| 1).unwrap();
    let cancelled = pool.submit(|| 2).unwrap();
    let abandoned = pool.submit(|| 3).unwrap();
    for t in [&ran, &cancelled, &abandoned] {
        let c = callbacks.track(());
        t.add_done_callback(move |_| drop(c));
    }
    assert!(cancelled.cancel());
    drop(abandoned);
    gate.open();
    held.result().unwrap();
    ran.result().unwrap();
    pool.shutdown();
    drop(cancelled);
    assert_eq!(callbacks.count(), 3);
}

/// Many tasks over every path at once; the totals must be exact.
#[test]
fn drop_once_mixed_paths() {
    let (closures, results) = (DropCounter::new(), DropCounter::new());
    let pool = ThreadPool::new(2).unwrap();
    let n = common::scaled(300);
    let mut cancelled = 0;
    let mut kept = Vec::new();
    for i in 0..n {
        let t = pool.submit(counted_task(&closures, &results)).unwrap();
        match i % 3 {
            0 => kept.push(t),
            1 => {
                // Refused when a worker already took it; then it runs like the others.
                if t.cancel() {
                    cancelled += 1;
                }
                kept.push(t);
            }
            _ => drop(t),
        }
    }
    for t in kept {
        drop(t.result());
    }
    pool.shutdown();
    assert_eq!(closures.count(), n);
    assert_eq!(results.count(), n - cancelled);
}
