//! `test_wait.py`: WaitTests, ThreadPoolWaitTests.

use super::*;

// test_20369 (the same future passed twice) cannot be written: a Task is not Clone.

/// CPython also passes `CANCELLED_FUTURE` and expects it in `not_done` (a cancelled future
/// that was never "notified"). A chi cancellation completes at once, so that input would
/// make this case return at once; it is left out here (see
/// `first_completed_some_already_completed` for a cancelled task in `done`).
#[test]
fn first_completed() {
    let executor = executor();
    let event = Gate::new();
    let future2 = executor.submit(event.hold_then(|| 0)).unwrap();
    event.wait_started(1);
    let future1 = executor.submit(|| mul(21, 2)).unwrap();
    let (done, not_done) = chi::wait(vec![future1, future2], ReturnWhen::FirstCompleted, None);
    assert_eq!(outcomes(done), [Ok(42)]);
    event.open();
    assert_eq!(outcomes(not_done), [Ok(0)]);
}

#[test]
fn first_completed_some_already_completed() {
    let f = Futures::new();
    let executor = executor();
    let event = Gate::new();
    let future1 = executor.submit(event.hold_then(|| 0)).unwrap();
    let (finished, pending) = chi::wait(
        vec![f.cancelled_and_notified, f.successful, future1],
        ReturnWhen::FirstCompleted,
        None,
    );
    assert_eq!(outcomes(finished), [Err(TaskError::Cancelled), Ok(42)]);
    event.open();
    assert_eq!(outcomes(pending), [Ok(0)]);
}

#[test]
fn first_exception() {
    let executor = executor();
    let event2 = Gate::new();
    let (event1_tx, event1) = mpsc::channel::<()>();
    let future1 = executor.submit(|| mul(2, 21)).unwrap();
    let future2 = executor
        .submit(move || -> i32 {
            recv(&event1, "event1");
            panic!("this is an exception")
        })
        .unwrap();
    let future3 = executor.submit(event2.hold_then(|| 3)).unwrap();
    // Ensure that future1 is completed before future2 finishes.
    future1.add_done_callback(move |_| event1_tx.send(()).unwrap());

    let (finished, pending) = chi::wait(
        vec![future1, future2, future3],
        ReturnWhen::FirstException,
        None,
    );
    let finished = outcomes(finished);
    assert_eq!(finished.len(), 2);
    assert_eq!(finished[0], Ok(42));
    assert_eq!(
        finished[1].as_ref().unwrap_err().panic_message(),
        Some("this is an exception")
    );
    event2.open();
    assert_eq!(outcomes(pending), [Ok(3)]);
}

/// CPython expects `CANCELLED_FUTURE` in `pending`; chi's cancelled task is done.
#[test]
fn first_exception_some_already_complete() {
    let f = Futures::new();
    let executor = executor();
    let event = Gate::new();
    let future1 = executor.submit(|| divmod(21, 0).0).unwrap();
    let future2 = executor.submit(event.hold_then(|| 0)).unwrap();
    let (finished, pending) = chi::wait(
        vec![
            f.successful,
            f.cancelled,
            f.cancelled_and_notified,
            future1,
            future2,
        ],
        ReturnWhen::FirstException,
        None,
    );
    let finished = outcomes(finished);
    assert_eq!(
        finished[..3],
        [Ok(42), Err(TaskError::Cancelled), Err(TaskError::Cancelled)]
    );
    assert!(
        finished[3]
            .as_ref()
            .unwrap_err()
            .panic_message()
            .unwrap()
            .contains("divide by zero")
    );
    assert_eq!(finished.len(), 4);
    event.open();
    assert_eq!(outcomes(pending), [Ok(0)]);
}

#[test]
fn first_exception_one_already_failed() {
    let f = Futures::new();
    let executor = executor();
    let event = Gate::new();
    let future1 = executor.submit(event.hold_then(|| 0)).unwrap();
    let (finished, pending) =
        chi::wait(vec![f.exception, future1], ReturnWhen::FirstException, None);
    assert_eq!(finished.len(), 1);
    assert!(
        finished
            .into_iter()
            .next()
            .unwrap()
            .result()
            .unwrap_err()
            .is_panic()
    );
    event.open();
    assert_eq!(outcomes(pending), [Ok(0)]);
}

#[test]
fn all_completed() {
    let f = Futures::new();
    let executor = executor();
    let future1 = executor.submit(|| divmod(2, 0).0).unwrap();
    let future2 = executor.submit(|| mul(2, 21)).unwrap();
    let (finished, pending) = chi::wait(
        vec![
            f.successful,
            f.cancelled_and_notified,
            f.exception,
            future1,
            future2,
        ],
        ReturnWhen::AllCompleted,
        None,
    );
    assert!(pending.is_empty());
    let got: Vec<String> = outcomes(finished).iter().map(describe).collect();
    assert_eq!(got[..3], ["ok 42", "task cancelled", "panic OSError"]);
    assert!(got[3].contains("divide by zero"), "{got:?}");
    assert_eq!(got[4], "ok 42");
}

#[test]
fn timeout() {
    let short_timeout = Duration::from_millis(50);
    let f = Futures::new();
    let executor = executor();
    let event = Gate::new();
    let future = executor.submit(event.hold_then(|| 0)).unwrap();
    let (finished, pending) = chi::wait(
        vec![f.cancelled_and_notified, f.exception, f.successful, future],
        ReturnWhen::AllCompleted,
        Some(short_timeout),
    );
    let got: Vec<String> = outcomes(finished).iter().map(describe).collect();
    assert_eq!(got, ["task cancelled", "panic OSError", "ok 42"]);
    event.open();
    assert_eq!(outcomes(pending), [Ok(0)]);
}

/// ThreadPoolWaitTests: many futures released at once, then waited on together.
#[test]
fn pending_calls_race() {
    let executor = executor();
    let event = Gate::new();
    let fs: Vec<_> = (0..100)
        .map(|_| executor.submit(event.hold()).unwrap())
        .collect();
    event.open();
    let (done, not_done) = bounded("wait on 100 released tasks", move || {
        chi::wait(fs, ReturnWhen::AllCompleted, None)
    });
    assert_eq!((done.len(), not_done.len()), (100, 0));
}
