//! `Completer<T>`: tasks made without a pool, finished from outside, under every consumer of
//! tasks (`result`, callbacks, `as_completed`, `wait`, `.await`) and every cancel race.
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

mod common;

use chi::{Completer, ReturnWhen, Task, TaskError};
use common::{DropCounter, recv};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

#[test]
fn completer_set_result_from_another_thread() {
    let (c, t) = Completer::new();
    let h = std::thread::spawn(move || c.set_result(String::from("done")));
    assert_eq!(t.result(), Ok(String::from("done")));
    assert!(h.join().unwrap());
}

#[test]
fn completer_set_error_reaches_result() {
    let (c, t) = Completer::<u8>::new();
    assert!(!t.done());
    assert!(c.set_error(TaskError::TimedOut(std::time::Duration::from_secs(1))));
    assert!(t.done());
    assert!(matches!(t.result(), Err(TaskError::TimedOut(_))));
}

#[test]
fn completer_dropped_abandons_task() {
    let (c, t) = Completer::<u8>::new();
    drop(c);
    assert_eq!(t.result(), Err(TaskError::Abandoned));
}

#[test]
fn completer_callback_runs_once_on_completion() {
    let (c, t) = Completer::new();
    let (tx, rx) = mpsc::channel();
    t.add_done_callback(move |o| tx.send(o.clone()).unwrap());
    assert!(c.set_result(7u32));
    assert_eq!(recv(&rx, "callback"), Ok(7));
    assert!(rx.try_recv().is_err());
}

#[test]
fn completer_under_as_completed_in_completion_order() {
    let (completers, tasks): (Vec<_>, Vec<Task<usize>>) = (0..4).map(|_| Completer::new()).unzip();
    let order = [2usize, 0, 3, 1];
    let mut completers: Vec<Option<Completer<usize>>> = completers.into_iter().map(Some).collect();
    let mut seen = Vec::new();
    let mut it = chi::as_completed(tasks);
    for &i in &order {
        assert!(completers[i].take().unwrap().set_result(i));
        seen.push(it.next().unwrap().result().unwrap());
    }
    assert!(it.next().is_none());
    assert_eq!(seen, order);
}

#[test]
fn completer_under_wait_first_completed() {
    let (c1, t1) = Completer::<u8>::new();
    let (_c2, t2) = Completer::<u8>::new();
    let waiter = std::thread::spawn(move || chi::wait([t1, t2], ReturnWhen::FirstCompleted, None));
    assert!(c1.set_result(1));
    let (done, not_done) = waiter.join().unwrap();
    assert_eq!((done.len(), not_done.len()), (1, 1));
}

#[test]
fn completer_awaited_under_futures_block_on() {
    let (c, t) = Completer::new();
    std::thread::spawn(move || c.set_result(5u64));
    assert_eq!(futures::executor::block_on(t), Ok(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completer_awaited_under_tokio() {
    let (c, t) = Completer::new();
    tokio::task::spawn_blocking(move || c.set_result(9u64));
    assert_eq!(t.await, Ok(9));
}

#[test]
fn completer_cancel_pending_drops_later_outcome_once() {
    let drops = DropCounter::new();
    let hooks = Arc::new(AtomicUsize::new(0));
    let h = hooks.clone();
    let (c, t) = Completer::with_cancel_hook(move || {
        h.fetch_add(1, Ordering::SeqCst);
        false
    });
    assert!(t.cancel());
    assert!(t.cancelled() && t.done());
    assert_eq!(hooks.load(Ordering::SeqCst), 1);
    assert!(c.is_cancelled());
    assert!(!c.set_running());
    assert!(!c.complete(Ok(drops.track(1u8))));
    assert_eq!(drops.count(), 1);
    assert!(matches!(t.result(), Err(TaskError::Cancelled)));
}

#[test]
fn completer_cancel_running_asks_hook() {
    let (tx, rx) = mpsc::channel();
    let (c, t) = Completer::<u8>::with_cancel_hook(move || {
        tx.send(()).unwrap();
        true
    });
    assert!(c.set_running());
    assert!(c.set_running(), "set_running twice is harmless");
    assert!(t.running());
    assert!(t.cancel(), "the hook agreed to stop the running task");
    recv(&rx, "hook call");
    assert!(
        !t.done(),
        "a running task is finished by its producer, not by cancel"
    );
    assert!(c.set_error(TaskError::Cancelled));
    assert_eq!(t.result(), Err(TaskError::Cancelled));
}

#[test]
fn completer_cancel_running_without_hook_is_refused() {
    let (c, t) = Completer::<u8>::new();
    assert!(c.set_running());
    assert!(!t.cancel());
    assert!(c.set_result(3));
    assert!(!t.cancel(), "a finished task cannot be cancelled");
    assert_eq!(t.result(), Ok(3));
}

#[test]
fn completer_cancel_pending_never_asks_the_hook_to_stop_a_running_task() {
    let (tx, rx) = mpsc::channel();
    let (c, t) = Completer::<u8>::with_cancel_hook(move || {
        tx.send(()).unwrap();
        true
    });
    assert!(c.set_running());
    assert!(!t.cancel_pending(), "running: not pending");
    assert!(rx.try_recv().is_err(), "the hook was not called");
    assert!(c.set_result(5));
    assert_eq!(t.result(), Ok(5));
    let (tx, rx) = mpsc::channel();
    let (c, t) = Completer::<u8>::with_cancel_hook(move || {
        tx.send(()).unwrap();
        true
    });
    assert!(t.cancel_pending(), "not started: cancelled");
    recv(&rx, "the hook told the producer");
    assert!(!c.set_result(1), "a later outcome is dropped");
    assert_eq!(t.result(), Err(TaskError::Cancelled));
}

#[test]
fn completer_cancel_pending_asks_the_producer_to_take_the_task_back_first() {
    let calls = Arc::new(AtomicUsize::new(0));
    let hooks = Arc::new(AtomicUsize::new(0));
    let make = |answer: bool| {
        let (c, h) = (calls.clone(), hooks.clone());
        Completer::<u8>::with_cancel_hooks(
            move || {
                h.fetch_add(1, Ordering::SeqCst);
                true
            },
            move || {
                c.fetch_add(1, Ordering::SeqCst);
                answer
            },
        )
    };
    // The producer could not withdraw it: left alone, and it finishes normally.
    let (c, t) = make(false);
    assert!(!t.cancel_pending());
    assert!(!t.done() && !t.cancelled());
    assert_eq!(
        (calls.load(Ordering::SeqCst), hooks.load(Ordering::SeqCst)),
        (1, 0)
    );
    assert!(c.set_result(4));
    assert_eq!(t.result(), Ok(4));
    // Withdrawn: cancelled, the cancel hook told, a later outcome dropped; asking again
    // answers true without asking the producer.
    let (c, t) = make(true);
    assert!(t.cancel_pending());
    assert!(t.cancel_pending());
    assert_eq!(
        (calls.load(Ordering::SeqCst), hooks.load(Ordering::SeqCst)),
        (2, 1)
    );
    assert!(!c.set_result(1));
    assert_eq!(t.result(), Err(TaskError::Cancelled));
    // Running or finished: not asked.
    let (c, t) = make(true);
    assert!(c.set_running());
    assert!(!t.cancel_pending());
    assert!(c.set_result(2));
    assert!(!t.cancel_pending());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A plain cancel does not ask either.
    let (_c, t) = make(false);
    assert!(t.cancel());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(t.result(), Err(TaskError::Cancelled));
}

#[test]
fn completer_panicking_take_back_hook_counts_as_refusal() {
    let (c, t) = Completer::<u8>::with_cancel_hooks(|| true, || panic!("take-back boom"));
    assert!(!t.cancel_pending());
    assert!(!t.done());
    assert!(c.set_result(7));
    assert_eq!(t.result(), Ok(7));
}

#[test]
fn completer_panicking_hook_counts_as_refusal() {
    let (c, t) = Completer::<u8>::with_cancel_hook(|| panic!("hook boom"));
    assert!(c.set_running());
    assert!(!t.cancel());
    assert!(c.set_result(1));
    assert_eq!(t.result(), Ok(1));
}

#[test]
fn completer_cancel_races_completion_exactly_one_wins() {
    for _ in 0..200 {
        let drops = DropCounter::new();
        let (c, t) = Completer::new();
        let value = drops.track(1u8);
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let b = barrier.clone();
        let producer = std::thread::spawn(move || {
            b.wait();
            c.set_result(value)
        });
        barrier.wait();
        let cancelled = t.cancel();
        let completed = producer.join().unwrap();
        assert!(
            cancelled != completed,
            "exactly one of cancel and complete wins"
        );
        let outcome = t.result();
        assert_eq!(outcome.is_err(), cancelled);
        drop(outcome);
        assert_eq!(drops.count(), 1);
    }
}
