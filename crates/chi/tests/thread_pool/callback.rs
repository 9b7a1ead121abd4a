//! Task: done-callbacks.

use super::*;

#[test]
fn add_done_callback_runs_exactly_once() {
    let pool = ThreadPool::new(2).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let t = pool.submit(move || i).unwrap();
            let c = calls.clone();
            t.add_done_callback(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            });
            t
        })
        .collect();
    for t in tasks {
        t.result().unwrap();
    }
    pool.shutdown();
    assert_eq!(calls.load(Ordering::SeqCst), 20);
}

#[test]
fn add_done_callback_after_done_runs_at_once_on_caller() {
    let pool = ThreadPool::new(1).unwrap();
    let task = pool.submit(|| 9).unwrap();
    task.wait();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    task.add_done_callback(move |outcome| {
        *s.lock().unwrap() = Some((outcome.clone(), thread::current().id()));
    });
    // Already run, synchronously, on this thread.
    assert_eq!(
        seen.lock().unwrap().take(),
        Some((Ok(9), thread::current().id()))
    );
    assert_eq!(task.result(), Ok(9));
}

#[test]
fn add_done_callback_before_done_runs_on_worker() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let task = pool.submit(gate.hold_then(|| 4)).unwrap();
    let (tx, rx) = mpsc::channel();
    task.add_done_callback(move |outcome| tx.send((outcome.clone(), thread_name())).unwrap());
    gate.open();
    let (outcome, name) = recv(&rx, "the callback");
    assert_eq!(outcome, Ok(4));
    assert!(name.starts_with("chi-worker"), "callback ran on {name:?}");
    assert_eq!(task.result(), Ok(4));
}

#[test]
fn add_done_callback_sees_panic_and_cancel() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let held = pool.submit(gate.hold()).unwrap();
    gate.wait_started(1);
    let panics = pool.submit(|| -> u8 { panic!("cb-visible") }).unwrap();
    let cancelled = pool.submit(|| 0u8).unwrap();
    let (tx, rx) = mpsc::channel();
    for (name, t) in [("panics", &panics), ("cancelled", &cancelled)] {
        let tx = tx.clone();
        t.add_done_callback(move |o| tx.send((name, o.clone())).unwrap());
    }
    assert!(cancelled.cancel());
    assert_eq!(
        recv(&rx, "the cancel callback"),
        ("cancelled", Err(TaskError::Cancelled))
    );
    gate.open();
    let (name, outcome) = recv(&rx, "the panic callback");
    assert_eq!(name, "panics");
    assert_eq!(outcome.unwrap_err().panic_message(), Some("cb-visible"));
    held.result().unwrap();
}

/// A panicking callback is contained: the other callbacks run, the task keeps its value,
/// and the worker lives on (the next task runs on the same thread).
#[test]
fn add_done_callback_panic_isolated() {
    let pool = ThreadPool::new(1).unwrap();
    let gate = Gate::new();
    let task = pool.submit(gate.hold_then(thread_name)).unwrap();
    let (tx, rx) = mpsc::channel();
    task.add_done_callback(|_| panic!("callback exploded"));
    task.add_done_callback(move |_| tx.send("second callback").unwrap());
    gate.open();
    assert_eq!(recv(&rx, "the second callback"), "second callback");
    let first_thread = task.result().unwrap();
    let next_thread = pool.submit(thread_name).unwrap().result().unwrap();
    assert_eq!(
        first_thread, next_thread,
        "the worker was replaced after a callback panicked"
    );
    assert_eq!(pool.metrics().workers, 1);
}

#[test]
fn add_done_callback_panic_after_done_not_raised_on_caller() {
    let pool = ThreadPool::new(1).unwrap();
    let task = pool.submit(|| 1).unwrap();
    task.wait();
    task.add_done_callback(|_| panic!("late callback exploded"));
    let (tx, rx) = mpsc::channel();
    task.add_done_callback(move |o| tx.send(o.clone()).unwrap());
    assert_eq!(rx.try_recv(), Ok(Ok(1)));
    assert_eq!(task.result(), Ok(1));
}
