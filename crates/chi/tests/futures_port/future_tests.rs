//! `test_future.py`: FutureTests.

use super::*;

type Seen = Arc<Mutex<Option<Result<i32, TaskError>>>>;

fn recorder() -> (Seen, impl FnOnce(&Result<i32, TaskError>) + Send + 'static) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    (seen, move |o: &Result<i32, TaskError>| {
        *s.lock().unwrap() = Some(o.clone())
    })
}

#[test]
fn done_callback_with_result() {
    let pool = executor();
    let gate = Gate::new();
    let f = pool.submit(gate.hold_then(|| 5)).unwrap();
    let (seen, cb) = recorder();
    f.add_done_callback(cb);
    gate.open();
    assert_eq!(f.result(), Ok(5));
    assert_eq!(seen.lock().unwrap().take(), Some(Ok(5)));
}

#[test]
fn done_callback_with_exception() {
    let pool = executor();
    let gate = Gate::new();
    let f = pool
        .submit(gate.hold_then(|| -> i32 { panic!("test") }))
        .unwrap();
    let (seen, cb) = recorder();
    f.add_done_callback(cb);
    gate.open();
    f.wait();
    let seen = seen.lock().unwrap().take().expect("the callback ran");
    assert_eq!(seen.unwrap_err().panic_message(), Some("test"));
}

#[test]
fn done_callback_with_cancel() {
    let futures = Futures::new();
    let (seen, cb) = recorder();
    futures.pending.add_done_callback(cb);
    assert!(futures.pending.cancel());
    assert_eq!(seen.lock().unwrap().take(), Some(Err(TaskError::Cancelled)));
}

#[test]
fn done_callback_raises() {
    let pool = executor();
    let gate = Gate::new();
    let f = pool.submit(gate.hold_then(|| 5)).unwrap();
    let raising_was_called = Arc::new(AtomicBool::new(false));
    let fn_was_called = Arc::new(AtomicBool::new(false));
    let r = raising_was_called.clone();
    f.add_done_callback(move |_| {
        r.store(true, Ordering::SeqCst);
        panic!("doh!");
    });
    let c = fn_was_called.clone();
    f.add_done_callback(move |_| c.store(true, Ordering::SeqCst));
    gate.open();
    assert_eq!(f.result(), Ok(5));
    assert!(raising_was_called.load(Ordering::SeqCst));
    assert!(fn_was_called.load(Ordering::SeqCst));
}

#[test]
fn done_callback_already_successful() {
    let f = common::finished(|| 5);
    let (seen, cb) = recorder();
    f.add_done_callback(cb);
    assert_eq!(seen.lock().unwrap().take(), Some(Ok(5)));
}

#[test]
fn done_callback_already_failed() {
    let f = common::finished(|| -> i32 { panic!("test") });
    let (seen, cb) = recorder();
    f.add_done_callback(cb);
    let seen = seen
        .lock()
        .unwrap()
        .take()
        .expect("the callback ran at once");
    assert_eq!(seen.unwrap_err().panic_message(), Some("test"));
}

#[test]
fn done_callback_already_cancelled() {
    let f = common::cancelled::<i32>();
    let (seen, cb) = recorder();
    f.add_done_callback(cb);
    assert_eq!(seen.lock().unwrap().take(), Some(Err(TaskError::Cancelled)));
}

/// A raising callback on a task that is already done runs at once and its panic stays
/// contained (CPython logs "exception calling callback for ...").
#[test]
fn done_callback_raises_already_succeeded() {
    let f = common::finished(|| 5);
    f.add_done_callback(|_| panic!("doh!"));
    assert_eq!(f.result(), Ok(5));
}

/// `repr` is `Debug` here; it names the state (not the result type, as CPython does).
#[test]
fn repr() {
    let f = Futures::new();
    assert_eq!(format!("{:?}", f.pending), r#"Task { state: "pending" }"#);
    assert_eq!(format!("{:?}", f.running), r#"Task { state: "running" }"#);
    assert_eq!(
        format!("{:?}", f.cancelled),
        r#"Task { state: "cancelled" }"#
    );
    assert_eq!(
        format!("{:?}", f.cancelled_and_notified),
        r#"Task { state: "cancelled" }"#
    );
    assert_eq!(
        format!("{:?}", f.exception),
        r#"Task { state: "finished" }"#
    );
    assert_eq!(
        format!("{:?}", f.successful),
        r#"Task { state: "finished" }"#
    );
}

#[test]
fn cancel() {
    let f = Futures::new();
    assert!(f.pending.cancel());
    assert!(f.pending.cancelled());
    assert!(!f.running.cancel());
    assert!(f.running.running());
    assert!(f.cancelled.cancel());
    assert!(f.cancelled.cancelled());
    assert!(f.cancelled_and_notified.cancel());
    assert!(f.cancelled_and_notified.cancelled());
    assert!(!f.exception.cancel());
    assert!(f.exception.done() && !f.exception.cancelled());
    assert!(!f.successful.cancel());
    assert!(f.successful.done() && !f.successful.cancelled());
}

#[test]
fn cancelled() {
    let f = Futures::new();
    assert!(!f.pending.cancelled());
    assert!(!f.running.cancelled());
    assert!(f.cancelled.cancelled());
    assert!(f.cancelled_and_notified.cancelled());
    assert!(!f.exception.cancelled());
    assert!(!f.successful.cancelled());
}

#[test]
fn done() {
    let f = Futures::new();
    assert!(!f.pending.done());
    assert!(!f.running.done());
    assert!(f.cancelled.done());
    assert!(f.cancelled_and_notified.done());
    assert!(f.exception.done());
    assert!(f.successful.done());
}

#[test]
fn running() {
    let f = Futures::new();
    assert!(!f.pending.running());
    assert!(f.running.running());
    assert!(!f.cancelled.running());
    assert!(!f.cancelled_and_notified.running());
    assert!(!f.exception.running());
    assert!(!f.successful.running());
}

#[test]
fn result_with_timeout() {
    let f = Futures::new();
    assert!(
        f.pending
            .result_timeout(Duration::ZERO)
            .unwrap_err()
            .is_timeout()
    );
    assert!(
        f.running
            .result_timeout(Duration::ZERO)
            .unwrap_err()
            .is_timeout()
    );
    assert!(matches!(
        f.cancelled.result_timeout(Duration::ZERO),
        Err(ResultTimeoutError::Failed(TaskError::Cancelled))
    ));
    assert!(matches!(
        f.cancelled_and_notified.result_timeout(Duration::ZERO),
        Err(ResultTimeoutError::Failed(TaskError::Cancelled))
    ));
    match f.exception.result_timeout(Duration::ZERO) {
        Err(ResultTimeoutError::Failed(e)) => assert_eq!(e.panic_message(), Some("OSError")),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.successful.result_timeout(Duration::ZERO).unwrap(), 42);
}

#[test]
fn result_with_success() {
    let pool = executor();
    let gate = Gate::new();
    let f1 = pool.submit(gate.hold_then(|| 42)).unwrap();
    thread::scope(|s| {
        s.spawn(|| gate.open());
        assert_eq!(f1.result_timeout(common::NEVER).unwrap(), 42);
    });
}

#[test]
fn result_with_cancel() {
    let f = Futures::new();
    let f1 = f.pending;
    thread::scope(|s| {
        s.spawn(|| assert!(f1.cancel()));
        assert!(f1.wait_timeout(common::NEVER));
    });
    assert!(matches!(
        f1.result_timeout(common::NEVER),
        Err(ResultTimeoutError::Failed(TaskError::Cancelled))
    ));
}

#[test]
fn exception_with_timeout() {
    let f = Futures::new();
    assert!(!f.pending.wait_timeout(Duration::ZERO));
    assert_eq!(f.pending.error(), None);
    assert!(!f.running.wait_timeout(Duration::ZERO));
    assert_eq!(f.running.error(), None);
    assert_eq!(f.cancelled.error(), Some(TaskError::Cancelled));
    assert_eq!(f.cancelled_and_notified.error(), Some(TaskError::Cancelled));
    assert!(f.exception.error().is_some_and(|e| e.is_panic()));
    assert_eq!(f.successful.error(), None);
}

#[test]
fn exception_with_success() {
    let pool = executor();
    let gate = Gate::new();
    let f1 = pool
        .submit(gate.hold_then(|| -> i32 { panic!("OSError") }))
        .unwrap();
    thread::scope(|s| {
        s.spawn(|| gate.open());
        assert!(f1.wait_timeout(common::NEVER));
    });
    assert_eq!(
        f1.error().as_ref().and_then(TaskError::panic_message),
        Some("OSError")
    );
}
