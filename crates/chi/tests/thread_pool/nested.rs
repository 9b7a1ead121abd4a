//! Nested submission (the classic deadlock).

use super::*;

/// A pool of one whose task submits to the same pool and waits for the result: Python's
/// executor deadlocks here; chi's waiting worker runs the inner task itself.
#[test]
fn submit_and_wait_on_pool_of_one() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let p = pool.clone();
    let outer = pool
        .submit(move || p.submit(|| 2).unwrap().result().unwrap() * 21)
        .unwrap();
    assert_eq!(
        bounded("outer task waiting on its inner task", move || outer
            .result()),
        Ok(42)
    );
}

#[test]
fn submit_and_wait_nested_three_deep() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let p1 = pool.clone();
    let outer = pool
        .submit(move || {
            let p2 = p1.clone();
            p1.submit(move || p2.submit(|| 1).unwrap().result().unwrap() + 1)
                .unwrap()
                .result()
                .unwrap()
                + 1
        })
        .unwrap();
    assert_eq!(
        bounded("three nested waits on a pool of one", move || outer
            .result()),
        Ok(3)
    );
}

/// A waiting worker helps its own pool whatever it waits for: here a pool of one waits on
/// a `Completer`'s task that only a job queued behind it completes. The wait runs that
/// job itself (without helping, the pool's one worker would block forever).
#[test]
fn worker_waiting_on_a_completer_task_runs_its_pools_work() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let p = pool.clone();
    let outer = pool
        .submit(move || {
            let (completer, task) = chi::Completer::new();
            drop(p.submit(move || completer.set_result(7)).unwrap());
            task.result()
        })
        .unwrap();
    assert_eq!(
        bounded("a worker waiting on a completer's task", move || outer
            .result()),
        Ok(Ok(7))
    );
}

/// A task's `result_timeout` on a task that cannot finish (it is queued behind a held
/// one) gives up after its timeout, even on a worker thread, where waiting first runs
/// other queued work of the pool. Here that other work is the held task, which is
/// released only once the timeout was reported.
#[test]
fn result_timeout_on_worker_honours_timeout() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let gate = Gate::new();
    let (p, hold) = (pool.clone(), gate.hold());
    let (tx, rx) = mpsc::channel();
    let outer = pool
        .submit(move || {
            let held = p.submit(hold).unwrap();
            let behind = p.submit(|| 1).unwrap();
            let timed_out = behind.result_timeout(SHORT).is_err();
            tx.send(timed_out).unwrap();
            held
        })
        .unwrap();
    let timed_out = recv(&rx, "result_timeout returning on the worker");
    gate.open();
    assert!(timed_out);
    bounded("the outer task", move || outer.result())
        .unwrap()
        .result()
        .unwrap();
}

/// Two tasks on two workers wait for each other's inner tasks.
#[test]
fn submit_and_wait_fan_out() {
    let pool = Arc::new(ThreadPool::new(2).unwrap());
    let outers: Vec<_> = (0..4)
        .map(|k| {
            let p = pool.clone();
            pool.submit(move || {
                let inner: Vec<_> = (0..10).map(|i| p.submit(move || i * k).unwrap()).collect();
                inner
                    .into_iter()
                    .map(|t| t.result().unwrap())
                    .sum::<usize>()
            })
            .unwrap()
        })
        .collect();
    let sums = bounded("fan-out of nested waits", move || {
        outers
            .into_iter()
            .map(|t| t.result().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(sums, [0, 45, 90, 135]);
}
