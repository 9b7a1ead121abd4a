//! `test_init.py`: InitializerMixin, FailingInitializerMixin.

use super::*;
use std::cell::Cell;

thread_local! {
    /// CPython's `INITIALIZER_STATUS` is a module global; a thread pool's initializer runs
    /// on each worker, so here it is per thread.
    static INITIALIZER_STATUS: Cell<&'static str> = const { Cell::new("uninitialized") };
}

const WORKER_COUNT: usize = 2;

#[test]
fn initializer() {
    let executor = ThreadPool::builder()
        .max_workers(WORKER_COUNT)
        .initializer(|| INITIALIZER_STATUS.set("initialized"))
        .build()
        .unwrap();
    let futures: Vec<_> = (0..WORKER_COUNT)
        .map(|_| executor.submit(|| INITIALIZER_STATUS.get()).unwrap())
        .collect();
    for f in futures {
        assert_eq!(f.result(), Ok("initialized"));
    }
}

/// The initializer fails after some tasks were queued (CPython sleeps 0.1 s for that; here
/// it waits at a gate the test opens once the tasks are in). Every task fails with the
/// message, and from then on every submission does too, at once.
#[test]
fn failing_initializer() {
    let started = Gate::new();
    let h = started.handle();
    let executor = ThreadPool::builder()
        .max_workers(WORKER_COUNT)
        .initializer(move || {
            h.wait();
            panic!("error in initializer")
        })
        .build()
        .unwrap();
    let future = executor.submit(|| INITIALIZER_STATUS.get()).unwrap();
    let more: Vec<_> = (0..5)
        .map(|_| executor.submit(|| INITIALIZER_STATUS.get()).unwrap())
        .collect();
    started.open();
    for f in std::iter::once(future).chain(more) {
        match f.result_timeout(common::NEVER) {
            Err(ResultTimeoutError::Failed(TaskError::PoolFailed(msg))) => {
                assert!(msg.to_string().contains("error in initializer"), "{msg}")
            }
            other => panic!("expected PoolFailed, got {other:?}"),
        }
    }
    // ... and from this point submit() is guaranteed to fail.
    let later = executor.submit(|| INITIALIZER_STATUS.get()).unwrap();
    assert!(later.done());
    assert!(matches!(later.result(), Err(TaskError::PoolFailed(_))));
}
