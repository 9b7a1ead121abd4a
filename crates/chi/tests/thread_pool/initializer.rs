//! The worker initializer.

use super::*;
use std::cell::Cell;

thread_local! {
    static INITIALIZED: Cell<bool> = const { Cell::new(false) };
}

#[test]
fn initializer_runs_once_per_worker_thread() {
    let inits = Arc::new(Mutex::new(Vec::new()));
    let log = inits.clone();
    let pool = ThreadPool::builder()
        .max_workers(3)
        .initializer(move || {
            assert!(!INITIALIZED.get(), "initializer ran twice on one thread");
            INITIALIZED.set(true);
            log.lock().unwrap().push(thread::current().id());
        })
        .build()
        .unwrap();
    // Force all three workers to start, then run more tasks across them.
    let gate = Gate::new();
    let mut tasks: Vec<_> = (0..3)
        .map(|_| {
            let t = pool
                .submit(gate.hold_then(|| (INITIALIZED.get(), thread::current().id())))
                .unwrap();
            gate.wait_started(1);
            t
        })
        .collect();
    gate.open();
    tasks.extend((0..30).map(|_| {
        pool.submit(|| (INITIALIZED.get(), thread::current().id()))
            .unwrap()
    }));
    let ran_on: Vec<_> = tasks.into_iter().map(|t| t.result().unwrap()).collect();
    pool.shutdown();

    let inits = inits.lock().unwrap().clone();
    let unique: std::collections::HashSet<_> = inits.iter().copied().collect();
    assert_eq!(
        unique.len(),
        inits.len(),
        "an initializer ran twice on one thread: {inits:?}"
    );
    assert!(inits.len() >= 3, "{inits:?}");
    for (initialized, id) in ran_on {
        assert!(initialized, "a task ran before its thread's initializer");
        assert!(
            inits.contains(&id),
            "a task ran on a thread with no initializer run"
        );
    }
}

#[test]
fn initializer_panic_fails_tasks_with_message() {
    let pool = ThreadPool::builder()
        .max_workers(2)
        .initializer(|| panic!("init exploded"))
        .build()
        .unwrap();
    let pool = Arc::new(pool);
    let p = pool.clone();
    bounded("tasks of a pool whose initializer panics", move || {
        let first = p.submit(|| 1).unwrap().result();
        match first {
            Err(TaskError::PoolFailed(cause)) => {
                assert!(cause.to_string().contains("init exploded"), "{cause}")
            }
            other => panic!("expected PoolFailed, got {other:?}"),
        }
        // Later submissions fail the same way, at once.
        for _ in 0..10 {
            match p.submit(|| 2).unwrap().result() {
                Err(TaskError::PoolFailed(cause)) => {
                    assert!(cause.to_string().contains("init exploded"), "{cause}")
                }
                other => panic!("expected PoolFailed, got {other:?}"),
            }
        }
    });
    bounded("dropping a failed pool", move || drop(pool));
}

/// Many submissions race the failing initializer: every one of them must end (with
/// `PoolFailed`), none may be stranded in a queue no worker will ever read.
#[test]
fn initializer_panic_racing_submits_never_hang() {
    bounded("submissions racing a failing initializer", || {
        for _ in 0..common::scaled(200) {
            let pool = ThreadPool::builder()
                .max_workers(2)
                .initializer(|| panic!("init failed"))
                .build()
                .unwrap();
            let tasks: Vec<_> = (0..20).map(|i| pool.submit(move || i).unwrap()).collect();
            for t in tasks {
                match t.result_timeout(Duration::from_secs(10)) {
                    Err(ResultTimeoutError::Failed(TaskError::PoolFailed(_))) => {}
                    Err(ResultTimeoutError::Timeout(_)) => {
                        panic!("a task of a failed pool never finished")
                    }
                    other => panic!("expected PoolFailed, got {other:?}"),
                }
            }
        }
    });
}
