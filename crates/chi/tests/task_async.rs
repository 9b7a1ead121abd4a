//! `Task<T>` as a `Future`: awaited under tokio (current-thread and multi-thread runtimes) and
//! under `futures::executor::block_on`, polled by hand to check waker hand-over, and dropped
//! at every stage to check that the result is dropped exactly once and the work still runs.
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

mod common;

use chi::{Task, TaskError, ThreadPool};
use common::{DropCounter, Gate, poll_until, recv};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    fn new() -> (Arc<Self>, Waker) {
        let w = Arc::new(Self::default());
        (w.clone(), Waker::from(w))
    }
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn poll_once<T>(task: &mut Task<T>, waker: &Waker) -> Poll<Result<T, TaskError>> {
    Pin::new(task).poll(&mut Context::from_waker(waker))
}

// ===== tokio =====

mod tokio_rt {
    use super::*;

    #[tokio::test]
    async fn await_returns_value() {
        let pool = ThreadPool::new(2).unwrap();
        assert_eq!(pool.submit(|| 6 * 7).unwrap().await, Ok(42));
    }

    #[tokio::test]
    async fn await_panicked_gives_panic_error() {
        let pool = ThreadPool::new(1).unwrap();
        let err = pool
            .submit(|| -> u8 { panic!("async boom") })
            .unwrap()
            .await
            .unwrap_err();
        assert_eq!(err.panic_message(), Some("async boom"));
    }

    #[tokio::test]
    async fn await_cancelled_gives_cancelled() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gate.hold()).unwrap();
        gate.wait_started(1);
        let task = pool.submit(|| 1).unwrap();
        assert!(task.cancel());
        assert_eq!(task.await, Err(TaskError::Cancelled));
        gate.open();
        held.await.unwrap();
    }

    /// A held task stays pending for the runtime and wakes it when it finishes.
    #[tokio::test]
    async fn await_held_task_pending_until_done() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let mut task = pool.submit(gate.hold_then(|| "late")).unwrap();
        gate.wait_started(1);
        assert!(futures::poll!(&mut task).is_pending());
        assert!(futures::poll!(&mut task).is_pending());
        // Opened from another thread while this runtime's only thread is parked in `.await`.
        let opener = std::thread::spawn(move || gate.open());
        assert_eq!(task.await, Ok("late"));
        opener.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn await_from_many_spawned_tasks() {
        let pool = Arc::new(ThreadPool::new(3).unwrap());
        let handles: Vec<_> = (0..common::scaled(300))
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.submit(move || i * 2).unwrap().await })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), Ok(i * 2));
        }
    }

    /// Many short tasks awaited one after another: a lost wake-up would hang here.
    #[tokio::test]
    async fn await_sequential_no_lost_wakeup() {
        let pool = ThreadPool::new(2).unwrap();
        for i in 0..common::scaled(2000) {
            assert_eq!(pool.submit(move || i).unwrap().await, Ok(i));
        }
    }

    #[tokio::test]
    async fn await_with_callback_both_see_outcome() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let task = pool.submit(gate.hold_then(|| 11)).unwrap();
        let (tx, rx) = mpsc::channel();
        task.add_done_callback(move |o| tx.send(o.clone()).unwrap());
        gate.open();
        assert_eq!(task.await, Ok(11));
        assert_eq!(
            rx.try_recv(),
            Ok(Ok(11)),
            "the callback ran before the value was released"
        );
    }

    #[tokio::test]
    async fn await_join_all_tasks() {
        let pool = ThreadPool::new(2).unwrap();
        let tasks: Vec<_> = (0..20u32)
            .map(|i| pool.submit(move || i + 1).unwrap())
            .collect();
        let out: Vec<u32> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, (1..=20).collect::<Vec<_>>());
    }
}

// ===== futures::executor =====

mod block_on {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn block_on_returns_value() {
        let pool = ThreadPool::new(1).unwrap();
        assert_eq!(block_on(pool.submit(|| "hi").unwrap()), Ok("hi"));
    }

    #[test]
    fn block_on_held_task_woken_by_worker() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let task = pool.submit(gate.hold_then(|| 5)).unwrap();
        gate.wait_started(1);
        let opener = std::thread::spawn(move || gate.open());
        assert_eq!(block_on(task), Ok(5));
        opener.join().unwrap();
    }

    #[test]
    fn block_on_select_first_of_two() {
        let pool = ThreadPool::new(2).unwrap();
        let gate = Gate::new();
        let slow = pool.submit(gate.hold_then(|| "slow")).unwrap();
        let fast = pool.submit(|| "fast").unwrap();
        let (winner, loser) = match block_on(futures::future::select(slow, fast)) {
            futures::future::Either::Right((v, slow)) => (v, slow),
            futures::future::Either::Left(_) => panic!("the held task finished first"),
        };
        assert_eq!(winner, Ok("fast"));
        gate.open();
        assert_eq!(block_on(loser), Ok("slow"));
    }
}

// ===== polling by hand =====

mod poll {
    use super::*;

    /// A task re-polled with a different waker wakes the newest one.
    #[test]
    fn poll_wakes_latest_waker() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let mut task = pool.submit(gate.hold_then(|| 3)).unwrap();
        gate.wait_started(1);
        let (_a, waker_a) = CountingWaker::new();
        let (b, waker_b) = CountingWaker::new();
        assert!(poll_once(&mut task, &waker_a).is_pending());
        assert!(poll_once(&mut task, &waker_b).is_pending());
        gate.open();
        poll_until("the newest waker is woken", || b.wakes() >= 1);
        assert_eq!(poll_once(&mut task, &waker_b), Poll::Ready(Ok(3)));
    }

    #[test]
    fn poll_finished_ready_at_once() {
        let pool = ThreadPool::new(1).unwrap();
        let mut task = pool.submit(|| 8).unwrap();
        task.wait();
        let (w, waker) = CountingWaker::new();
        assert_eq!(poll_once(&mut task, &waker), Poll::Ready(Ok(8)));
        assert_eq!(w.wakes(), 0);
    }

    /// Polling again after `Ready` is a misuse: it never hands out a value twice, but
    /// answers with an error saying the result was already taken.
    #[test]
    fn poll_after_ready_gives_error() {
        let pool = ThreadPool::new(1).unwrap();
        let mut task = pool.submit(|| 8).unwrap();
        task.wait();
        let (_w, waker) = CountingWaker::new();
        assert_eq!(poll_once(&mut task, &waker), Poll::Ready(Ok(8)));
        assert_eq!(
            poll_once(&mut task, &waker),
            Poll::Ready(Err(TaskError::ResultTaken)),
            "a misuse with its own outcome, not a pool failure"
        );
    }
}

// ===== drops through the Future path =====

mod drops {
    use super::*;

    #[test]
    fn drop_once_after_ready() {
        let results = DropCounter::new();
        let pool = ThreadPool::new(1).unwrap();
        let r = results.clone();
        let mut task = pool.submit(move || r.track(1)).unwrap();
        let (_w, waker) = CountingWaker::new();
        let v = loop {
            match poll_once(&mut task, &waker) {
                Poll::Ready(v) => break v.unwrap(),
                Poll::Pending => task.wait(),
            }
        };
        drop(task);
        assert_eq!(
            results.count(),
            0,
            "the value moved out must not be dropped by the handle"
        );
        drop(v);
        pool.shutdown();
        assert_eq!(results.count(), 1);
    }

    /// A future dropped after a `Pending` poll does not cancel: the work runs and its result
    /// is dropped once.
    #[test]
    fn drop_pending_future_still_runs() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let (tx, rx) = mpsc::channel();
        let (c, r) = (closures.track(()), results.clone());
        let mut task = pool
            .submit(gate.hold_then(move || {
                let _keep = &c;
                tx.send("ran").unwrap();
                r.track(2)
            }))
            .unwrap();
        gate.wait_started(1);
        let (_w, waker) = CountingWaker::new();
        assert!(poll_once(&mut task, &waker).is_pending());
        drop(task);
        gate.open();
        assert_eq!(recv(&rx, "the work of a dropped future"), "ran");
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (1, 1));
    }

    #[tokio::test]
    async fn drop_once_awaited_values() {
        let results = DropCounter::new();
        let pool = ThreadPool::new(2).unwrap();
        for i in 0..50 {
            let r = results.clone();
            let v = pool.submit(move || r.track(i)).unwrap().await.unwrap();
            assert_eq!(*v.get(), i);
        }
        pool.shutdown();
        assert_eq!(results.count(), 50);
    }
}
