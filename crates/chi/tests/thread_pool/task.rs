//! Task: result, states, cancel.

use super::*;

#[test]
fn result_returns_value() {
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(
        pool.submit(|| "hello".to_owned()).unwrap().result(),
        Ok("hello".to_owned())
    );
}

#[test]
fn result_timeout_hands_task_back() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let task = pool.submit(gate.hold_then(|| 7)).unwrap();
    let task = match task.result_timeout(SHORT) {
        Err(e @ ResultTimeoutError::Timeout(_)) => {
            assert!(e.is_timeout());
            let ResultTimeoutError::Timeout(t) = e else {
                unreachable!()
            };
            t
        }
        other => panic!("expected Timeout, got {other:?}"),
    };
    assert!(!task.done());
    gate.open();
    assert_eq!(task.result(), Ok(7));
}

#[test]
fn result_timeout_finished_gives_value() {
    let pool = ThreadPool::new(1).unwrap();
    let task = pool.submit(|| 5).unwrap();
    task.wait();
    assert_eq!(task.result_timeout(Duration::ZERO).unwrap(), 5);
}

#[test]
fn result_timeout_failed_gives_error() {
    let pool = ThreadPool::new(1).unwrap();
    let task = pool.submit(|| -> u8 { panic!("nope") }).unwrap();
    match task.result_timeout(common::NEVER) {
        Err(ResultTimeoutError::Failed(e)) => assert_eq!(e.panic_message(), Some("nope")),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn wait_timeout_false_while_held() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let task = pool.submit(gate.hold()).unwrap();
    assert!(!task.wait_timeout(SHORT));
    gate.open();
    assert!(task.wait_timeout(common::NEVER));
    assert!(task.done());
}

#[test]
fn states_follow_lifecycle() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let running = pool.submit(gate.hold_then(|| 1)).unwrap();
    gate.wait_started(1);
    let pending = pool.submit(|| 2).unwrap();

    assert!(running.running() && !running.done() && !running.cancelled());
    assert_eq!(running.error(), None);
    assert_eq!(format!("{running:?}"), r#"Task { state: "running" }"#);
    assert!(!pending.running() && !pending.done() && !pending.cancelled());
    assert_eq!(pending.error(), None);
    assert_eq!(format!("{pending:?}"), r#"Task { state: "pending" }"#);

    gate.open();
    pending.wait();
    assert!(pending.done() && !pending.running() && !pending.cancelled());
    assert_eq!(pending.error(), None);
    assert_eq!(format!("{pending:?}"), r#"Task { state: "finished" }"#);
    assert_eq!(pending.result(), Ok(2));
    assert_eq!(running.result(), Ok(1));
}

#[test]
fn error_reports_panic_without_blocking() {
    let pool = ThreadPool::new(1).unwrap();
    let task = pool.submit(|| -> u8 { panic!("bad") }).unwrap();
    task.wait();
    assert!(task.done() && !task.cancelled() && !task.running());
    assert_eq!(task.error(), Some(TaskError::panicked("bad")));
}

#[test]
fn cancel_pending_never_runs() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let running = pool.submit(gate.hold()).unwrap();
    gate.wait_started(1);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let pending = pool
        .submit(move || r.store(true, Ordering::SeqCst))
        .unwrap();

    assert!(pending.cancel());
    assert!(pending.cancel(), "cancelling twice still reports cancelled");
    assert!(pending.cancelled() && pending.done() && !pending.running());
    assert_eq!(pending.error(), Some(TaskError::Cancelled));
    assert_eq!(format!("{pending:?}"), r#"Task { state: "cancelled" }"#);
    gate.open();
    running.result().unwrap();
    pool.shutdown();
    assert!(!ran.load(Ordering::SeqCst), "a cancelled task ran");
    assert_eq!(pending.result(), Err(TaskError::Cancelled));
}

#[test]
fn cancel_running_refused() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let task = pool.submit(gate.hold_then(|| 3)).unwrap();
    gate.wait_started(1);
    assert!(!task.cancel());
    assert!(!task.cancelled() && task.running());
    gate.open();
    assert_eq!(task.result(), Ok(3));
}

#[test]
fn cancel_pending_is_cancel_on_a_thread_pool() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let running = pool.submit(gate.hold_then(|| 3)).unwrap();
    gate.wait_started(1);
    let pending = pool.submit(|| 4).unwrap();
    assert!(!running.cancel_pending(), "a running task is not pending");
    assert!(pending.cancel_pending());
    assert!(pending.cancelled());
    gate.open();
    running.wait_timeout(Duration::from_secs(60));
    assert!(!running.cancel_pending(), "nor a finished one");
    assert_eq!(running.result(), Ok(3));
    assert_eq!(pending.result(), Err(TaskError::Cancelled));
}

#[test]
fn cancel_finished_refused() {
    let pool = ThreadPool::new(1).unwrap();
    let task = pool.submit(|| 3).unwrap();
    task.wait();
    assert!(!task.cancel());
    assert!(!task.cancelled());
    assert_eq!(task.result(), Ok(3));
}

/// Dropping the handle of a pending task does not cancel it: the work still runs.
#[test]
fn drop_pending_handle_still_runs() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let running = pool.submit(gate.hold()).unwrap();
    gate.wait_started(1);
    let (tx, rx) = mpsc::channel();
    drop(pool.submit(move || tx.send("ran").unwrap()).unwrap());
    gate.open();
    assert_eq!(recv(&rx, "the dropped task's work"), "ran");
    running.result().unwrap();
}

#[test]
fn drop_running_handle_still_completes() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let (tx, rx) = mpsc::channel();
    drop(
        pool.submit(gate.hold_then(move || tx.send("finished").unwrap()))
            .unwrap(),
    );
    gate.wait_started(1);
    gate.open();
    assert_eq!(recv(&rx, "the dropped task's work"), "finished");
}
