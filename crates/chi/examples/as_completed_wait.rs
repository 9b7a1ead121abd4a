//! Collecting many tasks: `as_completed` yields them in finishing order, `as_completed_timeout`
//! stops waiting at a deadline, and `wait` returns as soon as a `ReturnWhen` condition holds.
//! Tasks are held back by channels, not by timing, so the output is the same on every run.
use chi::{ReturnWhen, ThreadPool};
use std::sync::mpsc;
use std::time::Duration;

fn main() {
    let pool = ThreadPool::new(4).expect("4 workers is a valid pool");

    // as_completed: the task released last was submitted first, yet it comes out last.
    let (release_slow, slow_gate) = mpsc::channel::<()>();
    let slow = pool
        .submit(move || {
            slow_gate.recv().expect("main releases the slow task");
            "slow"
        })
        .expect("the pool is running");
    let fast = pool.submit(|| "fast").expect("the pool is running");
    let mut order = Vec::new();
    let mut pending = chi::as_completed([slow, fast]);
    let first = pending.next().expect("two tasks were given");
    order.push(first.result().expect("no task panics"));
    release_slow.send(()).expect("the slow task waits");
    order.extend(pending.map(|t| t.result().expect("no task panics")));
    println!("as_completed order: {order:?}");
    assert_eq!(order, ["fast", "slow"]);

    // as_completed_timeout: one task never finishes in time; it is handed back unfinished.
    let (release_stuck, stuck_gate) = mpsc::channel::<()>();
    let stuck = pool
        .submit(move || stuck_gate.recv().is_ok())
        .expect("the pool is running");
    let quick = pool.submit(|| true).expect("the pool is running");
    quick.wait(); // finished tasks come first, so the first item below is `quick`
    let mut timed = chi::as_completed_timeout([stuck, quick], Duration::from_millis(50));
    let first = timed
        .next()
        .expect("two tasks were given")
        .expect("`quick` has finished");
    assert!(first.result().expect("no task panics"));
    let timeout = timed
        .next()
        .expect("the deadline is reported")
        .expect_err("the other task is still blocked");
    println!("as_completed_timeout: {timeout}");
    assert_eq!(timeout.pending, 1);
    let left = timed.remaining();
    assert_eq!(left.len(), 1);
    release_stuck.send(()).expect("the stuck task waits");
    for task in left {
        assert!(task.result().expect("no task panics"));
    }

    // wait(FirstException): returns as soon as one task fails, the others still running.
    println!("wait(FirstException) on a blocked task and one that panics:");
    let (release_rest, rest_gate) = mpsc::channel::<()>();
    let blocked = pool
        .submit(move || {
            rest_gate.recv().expect("main releases the blocked task");
            1
        })
        .expect("the pool is running");
    let failing = pool
        .submit(|| -> i32 { panic!("invalid record") })
        .expect("the pool is running");
    let (done, not_done) = chi::wait([blocked, failing], ReturnWhen::FirstException, None);
    println!(
        "wait(FirstException): {} done, {} not done",
        done.len(),
        not_done.len()
    );
    assert_eq!((done.len(), not_done.len()), (1, 1));
    let err = done[0]
        .error()
        .expect("the finished task is the failed one");
    assert_eq!(err.panic_message(), Some("invalid record"));

    // wait(AllCompleted) with a timeout: everything finishes once released.
    release_rest.send(()).expect("the blocked task waits");
    let (done, not_done) = chi::wait(
        not_done,
        ReturnWhen::AllCompleted,
        Some(Duration::from_secs(10)),
    );
    assert!(not_done.is_empty());
    let values: Vec<i32> = done
        .into_iter()
        .map(|t| t.result().expect("no task panics"))
        .collect();
    println!("wait(AllCompleted): {values:?}");
    assert_eq!(values, [1]);

    pool.shutdown();
}
