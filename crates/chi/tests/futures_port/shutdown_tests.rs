//! `test_shutdown.py`: ExecutorShutdownTest, ThreadPoolShutdownTest.

use super::*;

#[test]
fn run_after_shutdown() {
    let executor = executor();
    executor.shutdown();
    assert!(executor.submit(|| 2i32.pow(5)).is_err());
}

#[test]
fn hang_issue12364() {
    let executor = executor();
    let fs: Vec<_> = (0..50)
        .map(|i| executor.submit(move || i).unwrap())
        .collect();
    bounded("shutdown with 50 tasks queued", {
        let executor = Arc::new(executor);
        move || executor.shutdown()
    });
    for (i, f) in fs.into_iter().enumerate() {
        assert_eq!(f.result(), Ok(i));
    }
}

/// `shutdown(cancel_futures=True)` is `shutdown_now`. With every worker held, exactly the
/// queued tasks are cancelled (CPython can only say "more than 20").
#[test]
fn cancel_futures() {
    let executor = executor();
    let gate = Gate::new();
    // The first five start one at a time (see `common::hold_workers`), the rest queue.
    let mut fs = common::hold_workers(&executor, &gate, util::WORKER_COUNT);
    fs.extend((util::WORKER_COUNT..50).map(|_| executor.submit(gate.hold()).unwrap()));
    let n = thread::scope(|s| {
        let stopper = s.spawn(|| executor.shutdown_now());
        poll_until("the queued tasks are cancelled", || {
            fs.iter().filter(|f| f.cancelled()).count() == 45
        });
        gate.open();
        stopper.join().unwrap()
    });
    assert_eq!(n, 45);
    let cancelled = fs.iter().filter(|f| f.cancelled()).count();
    assert!(cancelled > 20);
    // Ensure the other futures were able to finish.
    let others: Vec<_> = fs.iter().filter(|f| !f.cancelled()).collect();
    assert!(!others.is_empty());
    for fut in others {
        assert!(fut.done());
        assert_eq!(fut.error(), None);
    }
}

/// A task submitted and at once cancelled right before shutdown does not hang it
/// (CPython gh-94440).
#[test]
fn hang_gh94440() {
    let executor = ThreadPool::new(1).unwrap();
    executor.submit(|| 0).unwrap().result().unwrap();
    executor.submit(|| 0).unwrap().cancel();
    bounded("shutdown after a cancelled submit", move || {
        executor.shutdown()
    });
}

#[test]
fn threads_terminate() {
    let executor = executor();
    let sem = Gate::new();
    let tasks = common::hold_workers(&executor, &sem, 3);
    assert_eq!(executor.metrics().workers, 3);
    sem.open();
    executor.shutdown();
    assert_eq!(executor.metrics().workers, 0);
    assert!(tasks.iter().all(Task::done));
}

/// The `with` block is a Rust block: the pool is shut down when it goes out of scope.
/// Its threads have a name of their own so the check ignores other tests' pools.
#[test]
fn context_manager_shutdown() {
    {
        let e = ThreadPool::builder()
            .max_workers(5)
            .thread_name("cf-ctx")
            .build()
            .unwrap();
        let got: Vec<i32> = e.map(i32::abs, -5..5).map(Result::unwrap).collect();
        assert_eq!(got, [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]);
    }
    poll_until("the pool's threads are joined", || {
        common::threads_named("cf-ctx").is_empty()
    });
}

#[test]
fn del_shutdown() {
    let executor = ThreadPool::builder()
        .max_workers(5)
        .thread_name("cf-del")
        .build()
        .unwrap();
    let res: Vec<_> = (-5..5)
        .map(|v: i32| executor.submit(move || v.abs()).unwrap())
        .collect();
    drop(executor);
    poll_until("the pool's threads are joined", || {
        common::threads_named("cf-del").is_empty()
    });
    // Make sure the results were all computed before the executor got shut down.
    for (r, v) in res.into_iter().zip(-5..5) {
        assert!(r.done());
        assert_eq!(r.result(), Ok(i32::abs(v)));
    }
}

#[test]
fn thread_names_assigned() {
    let executor = ThreadPool::builder()
        .max_workers(5)
        .thread_name("SpecialPool")
        .build()
        .unwrap();
    let gate = Gate::new();
    let names: Vec<_> = (0..5)
        .map(|_| {
            let t = executor
                .submit(gate.hold_then(|| thread::current().name().map(str::to_owned)))
                .unwrap();
            gate.wait_started(1);
            t
        })
        .collect();
    gate.open();
    let mut names: Vec<String> = names
        .into_iter()
        .map(|t| t.result().unwrap().unwrap())
        .collect();
    drop(executor);
    for name in &names {
        let n = name
            .strip_prefix("SpecialPool-")
            .unwrap_or_else(|| panic!("{name:?}"));
        assert!(n.parse::<usize>().is_ok(), "{name:?}");
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 5, "worker names are unique");
}

#[test]
fn thread_names_default() {
    let executor = executor();
    let name = executor
        .submit(|| thread::current().name().map(str::to_owned))
        .unwrap()
        .result()
        .unwrap()
        .unwrap();
    let n = name
        .strip_prefix("chi-worker-")
        .unwrap_or_else(|| panic!("{name:?}"));
    assert!(n.parse::<usize>().is_ok(), "{name:?}");
}
