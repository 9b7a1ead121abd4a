//! User values whose `Drop` panics, on every path where the thread pool drops them itself:
//! the closure of a task that is cancelled (by its handle, by `shutdown_now`, by a failed
//! pool, inside a scope), a result nobody holds a handle to, a look-ahead value of `map`, a
//! done-callback. Each handle still completes (`Cancelled`, `PoolFailed` or its value), no
//! panic escapes into `cancel`, `shutdown_now` or a worker thread, and nothing else queued
//! runs after `shutdown_now`.
//!
//! The one place the panic is *not* caught: dropping your own finished `Task<T>` drops its
//! value on your thread, like any value you drop.
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

mod common;

use chi::{TaskError, ThreadPool};
use common::{DropCounter, DropPanics, Gate, bounded, poll_until};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

/// A closure that captures a `DropPanics` and never gets to run in these tests.
fn closure_with(drops: &DropCounter) -> impl FnOnce() -> u32 + Send + 'static {
    let captured = DropPanics::new(drops);
    move || {
        let _keep = &captured;
        1
    }
}

/// A pool of one whose worker is held at `gate`.
fn held_pool(gate: &Gate) -> (ThreadPool, chi::Task<()>) {
    let pool = ThreadPool::new(1).unwrap();
    let held = pool.submit(gate.hold()).unwrap();
    gate.wait_started(1);
    (pool, held)
}

#[test]
fn cancel_of_queued_task_whose_closure_panics_in_drop_completes_it() {
    let gate = Gate::new();
    let (pool, held) = held_pool(&gate);
    let drops = DropCounter::new();
    let t = pool.submit(closure_with(&drops)).unwrap();
    let cancelled = catch_unwind(AssertUnwindSafe(|| t.cancel()));
    assert_eq!(cancelled.ok(), Some(true), "cancel returns true, no panic");
    assert_eq!(drops.count(), 1, "the closure was dropped once");
    assert!(t.cancelled() && t.done());
    assert!(t.wait_timeout(common::NEVER));
    assert!(t.cancel(), "a second cancel still says cancelled");
    gate.open();
    held.result().unwrap();
    assert_eq!(t.result(), Err(TaskError::Cancelled));
    assert_eq!(
        pool.submit(|| 5).unwrap().result(),
        Ok(5),
        "the pool works on"
    );
}

#[test]
fn shutdown_now_with_closures_that_panic_in_drop_cancels_all_and_runs_none() {
    let gate = Gate::new();
    let (pool, held) = held_pool(&gate);
    let drops = DropCounter::new();
    let ran = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(pool.submit(closure_with(&drops)).unwrap());
        if i == 2 {
            let ran = ran.clone();
            tasks.push(
                pool.submit(move || {
                    ran.store(true, Ordering::SeqCst);
                    2
                })
                .unwrap(),
            );
        }
    }
    thread::scope(|s| {
        let stopper = s.spawn(|| catch_unwind(AssertUnwindSafe(|| pool.shutdown_now())));
        poll_until("shutdown_now cancels every queued task", || {
            tasks.iter().all(|t| t.cancelled() && t.done())
        });
        gate.open();
        let n = stopper.join().unwrap();
        assert_eq!(n.ok(), Some(7), "shutdown_now returns the count, no panic");
    });
    held.result().unwrap();
    assert_eq!(drops.count(), 6);
    assert!(
        !ran.load(Ordering::SeqCst),
        "no queued task ran after shutdown_now"
    );
    for t in tasks {
        assert!(t.wait_timeout(common::NEVER));
        assert_eq!(t.result(), Err(TaskError::Cancelled));
    }
}

#[test]
fn failed_pool_cancels_closures_that_panic_in_drop() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let pool = ThreadPool::builder()
        .max_workers(1)
        .initializer(move || {
            let _ = go_rx.lock().unwrap().recv();
            panic!("init exploded");
        })
        .build()
        .unwrap();
    let drops = DropCounter::new();
    let t = pool.submit(closure_with(&drops)).unwrap();
    go_tx.send(()).unwrap();
    let outcome = bounded("a task of a pool that fails", move || {
        let outcome = t.result();
        drop(pool);
        outcome
    });
    match outcome {
        Err(TaskError::PoolFailed(cause)) => {
            assert!(cause.to_string().contains("init exploded"), "{cause}")
        }
        other => panic!("expected PoolFailed, got {other:?}"),
    }
    assert_eq!(drops.count(), 1);
}

#[test]
fn scope_with_cancelled_closure_that_panics_in_drop_still_returns() {
    bounded("a scope whose cancelled job panics in Drop", || {
        let gate = Gate::new();
        let pool = ThreadPool::new(1).unwrap();
        let held = pool.submit(gate.hold()).unwrap();
        gate.wait_started(1);
        let drops = DropCounter::new();
        let captured = DropPanics::new(&drops);
        let done = pool.scope(|s| {
            let t = s.spawn(move || {
                let _keep = &captured;
            });
            thread::scope(|ts| {
                let stopper = ts.spawn(|| pool.shutdown_now());
                poll_until("shutdown_now cancels the scoped job", || t.done());
                gate.open();
                assert_eq!(stopper.join().unwrap(), 1);
            });
            t.result()
        });
        assert_eq!(done, Err(TaskError::Cancelled));
        assert_eq!(drops.count(), 1);
        held.result().unwrap();
    });
}

#[test]
fn result_that_panics_in_drop_with_no_handle_leaves_the_worker_alive() {
    let gate = Gate::new();
    let (pool, held) = held_pool(&gate);
    let drops = DropCounter::new();
    let d = drops.clone();
    let t = pool.submit(move || DropPanics::new(&d)).unwrap();
    drop(t); // queued behind the held task: the pool is left holding the result
    gate.open();
    held.result().unwrap();
    poll_until("the worker drops the orphaned result", || {
        drops.count() == 1
    });
    let again = bounded("the same worker after the panicking drop", move || {
        let v = pool.submit(|| 9).unwrap().result();
        (v, pool.metrics().workers)
    });
    assert_eq!(again, (Ok(9), 1));
}

#[test]
fn dropping_own_finished_task_raises_the_values_panic_on_the_caller() {
    let drops = DropCounter::new();
    let d = drops.clone();
    let t = common::finished(move || DropPanics::new(&d));
    assert!(t.done());
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(t)));
    assert!(dropped.is_err(), "the user's drop of their value panics");
    assert_eq!(drops.count(), 1);
}

#[test]
fn callbacks_that_panic_in_drop_after_running_leave_the_task_done() {
    let gate = Gate::new();
    let (pool, held) = held_pool(&gate);
    let drops = DropCounter::new();
    let t = pool.submit(|| 3u32).unwrap();
    let (tx, rx) = mpsc::channel();
    for _ in 0..3 {
        let captured = DropPanics::new(&drops);
        let tx = tx.clone();
        t.add_done_callback(move |r| {
            let _keep = &captured;
            tx.send(r.clone()).unwrap();
        });
    }
    gate.open();
    held.result().unwrap();
    for _ in 0..3 {
        assert_eq!(common::recv(&rx, "each callback"), Ok(3));
    }
    assert!(t.wait_timeout(common::NEVER));
    assert_eq!(t.result(), Ok(3));
    assert_eq!(drops.count(), 3);
    assert_eq!(pool.submit(|| 4).unwrap().result(), Ok(4));
}

#[test]
fn dropping_map_with_finished_lookahead_values_that_panic_in_drop() {
    let pool = ThreadPool::new(2).unwrap();
    let drops = DropCounter::new();
    let d = drops.clone();
    let mut it = pool.map(move |_: u32| DropPanics::new(&d), 0..4u32);
    let first = it.next().expect("one item").expect("a value");
    std::mem::forget(first); // the caller's own value: not what this test is about
    poll_until("the look-ahead tasks finish", || {
        pool.metrics().completed == 4
    });
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(it)));
    assert!(dropped.is_ok(), "dropping the iterator does not panic");
    assert_eq!(drops.count(), 3, "each look-ahead value dropped once");
}
