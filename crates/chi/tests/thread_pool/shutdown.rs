//! Shutdown and drop.

use super::*;

#[test]
fn shutdown_runs_queued_then_joins() {
    let pool = ThreadPool::new(2).unwrap();
    let gate = Gate::new();
    let held = common::hold_workers(&pool, &gate, 2);
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..40)
        .map(|i| {
            let ran = ran.clone();
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                i
            })
            .unwrap()
        })
        .collect();
    thread::scope(|s| {
        let stopper = s.spawn(|| pool.shutdown());
        poll_until("shutdown begins", || pool.is_shut_down());
        gate.open();
        stopper.join().unwrap();
    });
    // shutdown returned: everything queued has run, and every worker is gone.
    assert_eq!(ran.load(Ordering::SeqCst), 40);
    assert!(queued.iter().all(Task::done) && held.iter().all(Task::done));
    assert_eq!(pool.metrics().workers, 0);
    for (i, t) in queued.into_iter().enumerate() {
        assert_eq!(t.result(), Ok(i));
    }
}

#[test]
fn shutdown_now_cancels_queued_waits_running() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let running = pool.submit(gate.hold_then(|| "running")).unwrap();
    gate.wait_started(1);
    let ran = Arc::new(AtomicBool::new(false));
    let queued: Vec<_> = (0..10)
        .map(|_| {
            let ran = ran.clone();
            pool.submit(move || ran.store(true, Ordering::SeqCst))
                .unwrap()
        })
        .collect();
    thread::scope(|s| {
        let stopper = s.spawn(|| pool.shutdown_now());
        poll_until("queued tasks are cancelled", || {
            queued.iter().all(Task::cancelled)
        });
        assert!(!running.done(), "shutdown_now does not stop a running task");
        gate.open();
        assert_eq!(stopper.join().unwrap(), 10);
    });
    // shutdown_now returned only after the running task finished.
    assert!(running.done());
    assert_eq!(running.result(), Ok("running"));
    for t in queued {
        assert_eq!(t.result(), Err(TaskError::Cancelled));
    }
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(pool.metrics().workers, 0);
}

#[test]
fn submit_after_shutdown_refused() {
    let pool = ThreadPool::new(1).unwrap();
    pool.submit(|| ()).unwrap().result().unwrap();
    pool.shutdown();
    assert!(pool.is_shut_down());
    let err = pool.submit(|| 1).unwrap_err();
    assert_eq!(err.to_string(), "the pool is shut down");
    assert_eq!(err.into_inner()(), 1);
    match pool.try_submit(|| 2) {
        Err(e @ TrySubmitError::ShutDown(_)) => assert_eq!(e.into_inner()(), 2),
        other => panic!("expected ShutDown, got {:?}", other.map(|_| ())),
    }
    match pool.submit_timeout(|| 3, common::NEVER) {
        Err(e @ SubmitTimeoutError::ShutDown(_)) => assert_eq!(e.into_inner()(), 3),
        other => panic!("expected ShutDown, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn shutdown_twice_is_harmless() {
    let pool = ThreadPool::new(2).unwrap();
    let t = pool.submit(|| 1).unwrap();
    pool.shutdown();
    pool.shutdown();
    assert_eq!(pool.shutdown_now(), 0);
    assert_eq!(t.result(), Ok(1));
}

#[test]
fn shutdown_never_started_pool() {
    let pool = ThreadPool::new(2).unwrap();
    bounded("shutting down a pool that never ran", move || {
        pool.shutdown();
        assert_eq!(pool.shutdown_now(), 0);
    });
}

/// A task may shut down its own pool; it does not wait for itself.
#[test]
fn shutdown_from_own_task_returns() {
    let pool = Arc::new(ThreadPool::new(2).unwrap());
    let p = pool.clone();
    let t = pool.submit(move || p.shutdown()).unwrap();
    bounded("a task shutting down its own pool", move || t.result()).unwrap();
    assert!(pool.is_shut_down());
    assert!(pool.submit(|| ()).is_err());
}

/// The last handle to the pool is dropped on one of its own workers.
#[test]
fn drop_last_handle_on_worker() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let gate = Gate::new();
    let p = pool.clone();
    let t = pool.submit(gate.hold_then(move || drop(p))).unwrap();
    drop(pool);
    gate.open();
    bounded("a pool dropped on its own worker", move || t.result()).unwrap();
}

#[test]
fn drop_runs_queued_work() {
    let pool = ThreadPool::new(2).unwrap();
    let tasks: Vec<_> = (0..50u64)
        .map(|i| pool.submit(move || i * i).unwrap())
        .collect();
    drop(pool);
    assert!(
        tasks.iter().all(Task::done),
        "drop returned before the queue ran"
    );
    for (i, t) in (0u64..).zip(tasks) {
        assert_eq!(t.result(), Ok(i * i));
    }
}

/// Drop is shutdown: every worker thread is joined. Runs alone so that other tests'
/// pools are not in the thread list.
#[test]
fn drop_leaves_no_worker_thread() {
    if run_alone("shutdown::drop_leaves_no_worker_thread") {
        return;
    }
    let pool = ThreadPool::new(4).unwrap();
    let gate = Gate::new();
    let tasks = common::hold_workers(&pool, &gate, 4);
    assert_eq!(common::threads_named("chi-worker").len(), 4);
    gate.open();
    drop(pool);
    for t in tasks {
        assert!(t.done());
    }
    // The kernel removes an exited thread from /proc just after it is joined.
    poll_until("no chi-worker thread left", || {
        common::threads_named("bg-shutdown").is_empty()
    });
}
