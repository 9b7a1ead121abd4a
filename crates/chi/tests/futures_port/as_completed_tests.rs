//! `test_as_completed.py`: AsCompletedTests.

use super::*;

#[test]
fn no_timeout() {
    let f = Futures::new();
    let executor = executor();
    let future1 = executor.submit(|| mul(2, 21)).unwrap();
    let future2 = executor.submit(|| mul(7, 6)).unwrap();
    let completed: Vec<String> = chi::as_completed(vec![
        f.cancelled_and_notified,
        f.exception,
        f.successful,
        future1,
        future2,
    ])
    .map(|t| describe(&t.result()))
    .collect();
    assert_eq!(
        sorted(completed),
        ["ok 42", "ok 42", "ok 42", "panic OSError", "task cancelled"]
    );
}

/// Timing out before the final future completes, for a zero and a short timeout.
#[test]
fn future_times_out() {
    for timeout in [Duration::ZERO, Duration::from_millis(100)] {
        let f = Futures::new();
        let executor = executor();
        let event = Gate::new();
        let future = executor.submit(event.hold_then(|| 0)).unwrap();
        let mut completed_futures = Vec::new();
        let mut timed_out = false;
        for r in chi::as_completed_timeout(
            vec![f.cancelled_and_notified, f.exception, f.successful, future],
            timeout,
        ) {
            match r {
                Ok(t) => completed_futures.push(describe(&t.result())),
                Err(_) => timed_out = true,
            }
        }
        assert!(timed_out, "{timeout:?}");
        // Check that `future` wasn't completed.
        assert_eq!(
            sorted(completed_futures),
            ["ok 42", "panic OSError", "task cancelled"],
            "{timeout:?}"
        );
        event.open();
    }
}

// test_duplicate_futures cannot be written: a Task is not Clone.

/// The iterator keeps no reference to a task it yielded: dropping the yielded task frees
/// its result while the iterator is still alive (CPython checks with weak references).
#[test]
fn free_reference_yielded_future() {
    let values = DropCounter::new();
    let pool = ThreadPool::new(8).unwrap();
    let gates: Vec<Gate> = (0..8).map(|_| Gate::new()).collect();
    let mut futures_list: Vec<Task<common::Counted<i32>>> = gates
        .iter()
        .map(|g| {
            let v = values.clone();
            pool.submit(g.hold_then(move || v.track(0))).unwrap()
        })
        .collect();
    futures_list.push(common::cancelled());
    let v = values.clone();
    futures_list.push(common::finished(move || v.track(42)));

    let mut it = chi::as_completed_timeout(futures_list, Duration::ZERO);
    let mut yielded = 0;
    for r in it.by_ref() {
        let Ok(future) = r else { break };
        drop(future);
        yielded += 1;
    }
    assert_eq!(yielded, 2);
    poll_until("the yielded finished task's value is freed", || {
        values.count() == 1
    });

    let mut it = chi::as_completed(it.remaining());
    for (i, g) in gates.iter().enumerate() {
        g.open();
        let future = it.next().expect("a task per release");
        drop(future);
        poll_until("each yielded task's value is freed", || {
            values.count() == i + 2
        });
    }
    assert!(it.next().is_none());
}

#[test]
fn correct_timeout_exception_msg() {
    let f = Futures::new();
    let futures_list = vec![f.cancelled_and_notified, f.pending, f.running, f.successful];
    let err = chi::as_completed_timeout(futures_list, Duration::ZERO)
        .find_map(Result::err)
        .expect("a timeout");
    assert_eq!(err.pending, 2);
    assert_eq!(err.to_string(), "2 task(s) unfinished at the timeout");
}
