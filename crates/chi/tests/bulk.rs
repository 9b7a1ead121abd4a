//! Operations over many tasks: `ThreadPool::map` (ordered, lazy, bounded look-ahead, timeout),
//! `as_completed` / `as_completed_timeout`, and `wait` with each `ReturnWhen`.
//!
//! Tasks are held by a [`Gate`] to fix the order in which they finish; no test sleeps or
//! asserts on a duration. The only short timeouts are the ones under test, on tasks that are
//! held and so cannot finish in time.
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

mod common;

use chi::{ReturnWhen, Task, TaskError, ThreadPool, WaitTimeout};
use common::{Gate, bounded, cancelled, finished, poll_until};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A timeout that is what a test checks (the tasks it waits for are held, so it must expire).
const SHORT: Duration = Duration::from_millis(20);

/// An endless input that counts how many items were pulled from it.
fn counting_input(pulled: &Arc<AtomicUsize>) -> impl Iterator<Item = usize> + use<> {
    let pulled = pulled.clone();
    (0..).inspect(move |_| {
        pulled.fetch_add(1, Ordering::SeqCst);
    })
}

fn results<T>(tasks: Vec<Task<T>>) -> Vec<Result<T, TaskError>> {
    tasks.into_iter().map(Task::result).collect()
}

// ===== map =====

mod map {
    use super::*;

    #[test]
    fn map_results_in_input_order() {
        let pool = ThreadPool::new(2).unwrap();
        let out: Vec<u64> = pool
            .map(|x: u64| x * x, 0..500)
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
    }

    /// The first item finishes last, yet comes out first.
    #[test]
    fn map_order_kept_when_first_finishes_last() {
        let pool = ThreadPool::new(4).unwrap();
        let gate = Gate::new();
        let finish_order = Arc::new(Mutex::new(Vec::new()));
        let (h, order) = (gate.handle(), finish_order.clone());
        let out = thread::scope(|s| {
            s.spawn(|| {
                poll_until("items 1..8 finish", || {
                    finish_order.lock().unwrap().len() == 7
                });
                gate.open();
            });
            let f = move |i: usize| {
                if i == 0 {
                    h.wait();
                }
                order.lock().unwrap().push(i);
                i * 10
            };
            pool.map(f, 0..8)
                .lookahead(8)
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        });
        assert_eq!(out, [0, 10, 20, 30, 40, 50, 60, 70]);
        assert_eq!(finish_order.lock().unwrap().last(), Some(&0));
    }

    #[test]
    fn map_panicking_item_is_err_and_rest_continue() {
        let pool = ThreadPool::new(2).unwrap();
        let out: Vec<_> = pool
            .map(|x: i32| if x == 2 { panic!("item {x}") } else { x }, 0..5)
            .collect();
        assert_eq!(out[..2], [Ok(0), Ok(1)]);
        assert_eq!(out[2].as_ref().unwrap_err().panic_message(), Some("item 2"));
        assert_eq!(out[3..], [Ok(3), Ok(4)]);
    }

    #[test]
    fn map_empty_input_yields_nothing() {
        let pool = ThreadPool::new(2).unwrap();
        assert_eq!(pool.map(|x: u8| x, Vec::new()).count(), 0);
        assert_eq!(pool.metrics().workers, 0, "no task was submitted");
    }

    #[test]
    fn map_infinite_input_works() {
        let pool = ThreadPool::new(2).unwrap();
        let out: Vec<u64> = pool
            .map(|x: u64| x + 1, 0..)
            .take(100)
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, (1..=100).collect::<Vec<u64>>());
    }

    #[test]
    fn map_lazy_pulls_nothing_before_next() {
        let pool = ThreadPool::new(2).unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let it = pool.map(|x| x, counting_input(&pulled)).lookahead(4);
        assert_eq!(pulled.load(Ordering::SeqCst), 0);
        drop(it);
        assert_eq!(pool.metrics().workers, 0, "no task was submitted");
    }

    /// At most `lookahead` items are pulled before the first result is consumed, and the
    /// input stays at most `lookahead` ahead of the consumer.
    #[test]
    fn map_lazy_pull_bounded_by_lookahead() {
        const L: usize = 4;
        let pool = ThreadPool::new(2).unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let seen_by_first = Arc::new(AtomicUsize::new(usize::MAX));
        let (p, first) = (pulled.clone(), seen_by_first.clone());
        let mut it = pool
            .map(
                move |i: usize| {
                    if i == 0 {
                        first.store(p.load(Ordering::SeqCst), Ordering::SeqCst);
                    }
                    i
                },
                counting_input(&pulled),
            )
            .lookahead(L);
        assert_eq!(it.next(), Some(Ok(0)));
        assert!(
            seen_by_first.load(Ordering::SeqCst) <= L,
            "pulled {seen_by_first:?} while computing the first item"
        );
        assert!(
            pulled.load(Ordering::SeqCst) <= L + 1,
            "pulled {pulled:?} after one result"
        );
        for consumed in 2..200 {
            assert_eq!(it.next(), Some(Ok(consumed - 1)));
            let p = pulled.load(Ordering::SeqCst);
            assert!(
                p >= consumed && p <= consumed + L,
                "pulled {p} after {consumed} results"
            );
        }
    }

    /// While the consumer waits for a held first item, exactly `lookahead` items are in
    /// flight: the map pulls no more until that result is consumed.
    #[test]
    fn map_lookahead_bounds_in_flight() {
        const L: usize = 3;
        let pool = ThreadPool::new(4).unwrap();
        let gate = Gate::new();
        let pulled = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let (h, r) = (gate.handle(), ran.clone());
        let f = move |i: usize| {
            r.fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                h.wait();
            }
            i
        };
        let mut it = pool.map(f, counting_input(&pulled)).lookahead(L);
        let pulled_while_held = thread::scope(|s| {
            let opener = s.spawn(|| {
                gate.wait_started(1);
                poll_until("the look-ahead items run", || {
                    ran.load(Ordering::SeqCst) == L
                });
                let p = pulled.load(Ordering::SeqCst);
                gate.open();
                p
            });
            assert_eq!(it.next(), Some(Ok(0)));
            opener.join().unwrap()
        });
        assert_eq!(pulled_while_held, L);
        assert_eq!(
            it.take(5).map(Result::unwrap).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }

    /// The default look-ahead is twice `max_workers`.
    #[test]
    fn map_lookahead_default_twice_workers() {
        let pool = ThreadPool::new(3).unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut it = pool.map(|x| x, counting_input(&pulled));
        assert_eq!(it.next(), Some(Ok(0)));
        assert_eq!(pulled.load(Ordering::SeqCst), 2 * 3 + 1);
    }

    #[test]
    fn map_lookahead_zero_means_one() {
        let pool = ThreadPool::new(2).unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut it = pool.map(|x| x * 2, counting_input(&pulled)).lookahead(0);
        assert_eq!(it.next(), Some(Ok(0)));
        assert!(pulled.load(Ordering::SeqCst) <= 2);
        assert_eq!(
            it.take(3).map(Result::unwrap).collect::<Vec<_>>(),
            [2, 4, 6]
        );
    }

    /// A held item makes the map time out: that item is `Err(TimedOut)` and the map ends;
    /// the items behind it are cancelled and never run.
    #[test]
    fn map_timeout_held_item_times_out() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let (h, r) = (gate.handle(), ran.clone());
        let timeout = Duration::from_millis(200);
        let f = move |i: usize| {
            r.lock().unwrap().push(i);
            if i == 1 {
                h.wait();
            }
            i
        };
        let out: Vec<_> = pool.map(f, 0..6).lookahead(6).timeout(timeout).collect();
        // Item 0 is instant; on a heavily loaded machine even it may miss the timeout.
        let (last, ok) = out.split_last().expect("at least one item");
        assert_eq!(*last, Err(TaskError::TimedOut(timeout)));
        assert!(ok.len() <= 1 && ok.iter().all(|r| *r == Ok(0)), "{out:?}");
        gate.open();
        pool.shutdown();
        let ran = ran.lock().unwrap().clone();
        assert!(
            ran.iter().all(|&i| i <= 1),
            "items after the timeout ran: {ran:?}"
        );
    }

    #[test]
    fn map_timeout_never_reached_all_ok() {
        let pool = ThreadPool::new(2).unwrap();
        let out: Vec<_> = pool
            .map(|x: u32| x + 1, 0..50)
            .timeout(common::NEVER)
            .collect();
        assert_eq!(out, (1..=50).map(Ok).collect::<Vec<_>>());
    }

    /// Dropping the iterator half-way does not hang the pool; the tasks in flight still run.
    #[test]
    fn map_drop_midway_then_shutdown() {
        let pool = ThreadPool::new(2).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let mut it = pool
            .map(
                move |x: usize| {
                    r.fetch_add(1, Ordering::SeqCst);
                    x
                },
                0..100,
            )
            .lookahead(4);
        assert_eq!(it.next(), Some(Ok(0)));
        drop(it);
        bounded("shutdown after an abandoned map", move || pool.shutdown());
        let ran = ran.load(Ordering::SeqCst);
        assert!((1..=5).contains(&ran), "{ran} items ran");
    }

    #[test]
    fn map_after_shutdown_cancelled_then_ends() {
        let pool = ThreadPool::new(2).unwrap();
        pool.shutdown();
        let mut it = pool.map(|x: u8| x, 0..10);
        assert_eq!(it.next(), Some(Err(TaskError::Cancelled)));
        assert_eq!(it.next(), None);
    }
}

// ===== as_completed =====

mod map_unordered {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn map_unordered_yields_every_result_once() {
        let pool = ThreadPool::new(2).unwrap();
        let mut got: Vec<u64> = pool
            .map_unordered(|x: u64| x * 3, 0..500)
            .map(Result::unwrap)
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..500).map(|x| x * 3).collect::<Vec<_>>());
    }

    /// A held first item does not hold back the results behind it: they come out first.
    #[test]
    fn map_unordered_slow_item_does_not_block_others() {
        let pool = ThreadPool::new(2).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let mut it = pool
            .map_unordered(
                move |i: usize| {
                    if i == 0 {
                        release_rx.lock().unwrap().recv().unwrap();
                    }
                    i
                },
                0..6,
            )
            .lookahead(6);
        let first_five: Vec<usize> = (&mut it).take(5).map(Result::unwrap).collect();
        assert!(!first_five.contains(&0), "{first_five:?}");
        release_tx.send(()).unwrap();
        assert_eq!(it.next().unwrap(), Ok(0));
        assert!(it.next().is_none());
    }

    /// The input stays at most `lookahead` ahead of the consumer, as for `map`.
    #[test]
    fn map_unordered_pull_bounded_by_lookahead() {
        const L: usize = 3;
        let pool = ThreadPool::new(2).unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut it = pool
            .map_unordered(|x: usize| x, counting_input(&pulled))
            .lookahead(L);
        for consumed in 1..=50 {
            it.next().unwrap().unwrap();
            let p = pulled.load(Ordering::SeqCst);
            assert!(p <= consumed + L, "pulled {p} after consuming {consumed}");
        }
    }

    #[test]
    fn map_unordered_panicking_item_is_err_rest_continue() {
        let pool = ThreadPool::new(2).unwrap();
        let out: Vec<_> = pool
            .map_unordered(|x: i32| if x == 2 { panic!("item {x}") } else { x }, 0..5)
            .collect();
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 4);
        let err = out.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(err.panic_message(), Some("item 2"));
    }

    #[test]
    fn map_unordered_timeout_ends_with_timed_out() {
        let pool = ThreadPool::new(1).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Mutex::new(rx);
        let limit = Duration::from_millis(20);
        let out: Vec<_> = pool
            .map_unordered(move |_: u8| rx.lock().unwrap().recv().is_ok(), 0..3)
            .timeout(limit)
            .collect();
        assert_eq!(out, [Err(TaskError::TimedOut(limit))]);
        drop(tx);
    }

    #[test]
    fn map_unordered_empty_input_yields_nothing() {
        let pool = ThreadPool::new(2).unwrap();
        assert_eq!(pool.map_unordered(|x: u8| x, Vec::new()).count(), 0);
    }
}

mod as_completed {
    use super::*;

    #[test]
    fn as_completed_yields_all() {
        let pool = ThreadPool::new(3).unwrap();
        let tasks: Vec<_> = (0..50).map(|i| pool.submit(move || i).unwrap()).collect();
        let it = chi::as_completed(tasks);
        assert_eq!(it.size_hint(), (50, Some(50)));
        let mut got: Vec<i32> = it.map(|t| t.result().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn as_completed_empty_yields_nothing() {
        assert_eq!(chi::as_completed(Vec::<Task<u8>>::new()).count(), 0);
    }

    /// Tasks that already finished come first; the held ones follow once released.
    #[test]
    fn as_completed_finished_first() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gate.hold_then(|| "held")).unwrap();
        gate.wait_started(1);
        let queued = pool.submit(|| "queued").unwrap();
        let tasks = vec![held, queued, finished(|| "done-1"), finished(|| "done-2")];
        let mut it = chi::as_completed(tasks);
        let mut first: Vec<_> = it.by_ref().take(2).map(|t| t.result().unwrap()).collect();
        first.sort_unstable();
        assert_eq!(first, ["done-1", "done-2"]);
        assert_eq!(it.size_hint(), (2, Some(2)));
        gate.open();
        let rest: Vec<_> = it.map(|t| t.result().unwrap()).collect();
        assert_eq!(rest, ["held", "queued"]);
    }

    /// Each task comes out when it finishes, whatever the input order.
    #[test]
    fn as_completed_follows_finishing_order() {
        let pool = ThreadPool::new(3).unwrap();
        let gates: Vec<Gate> = (0..3).map(|_| Gate::new()).collect();
        let tasks: Vec<_> = gates
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let t = pool.submit(g.hold_then(move || i)).unwrap();
                g.wait_started(1);
                t
            })
            .collect();
        let mut it = chi::as_completed(tasks);
        for i in [2, 0, 1] {
            gates[i].open();
            let t = it.next().expect("a task per release");
            assert_eq!(t.result(), Ok(i));
        }
        assert!(it.next().is_none());
    }

    #[test]
    fn as_completed_yields_failed_and_cancelled() {
        let tasks = vec![
            finished(|| -> u8 { panic!("x") }),
            cancelled::<u8>(),
            finished(|| 1u8),
        ];
        let mut got: Vec<String> = chi::as_completed(tasks)
            .map(|t| match t.result() {
                Ok(v) => format!("ok {v}"),
                Err(e) => e.to_string(),
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, ["ok 1", "task cancelled", "task panicked: x"]);
    }

    /// A yielded task's value can be taken at once.
    #[test]
    fn as_completed_yielded_task_is_takeable() {
        let pool = ThreadPool::new(2).unwrap();
        let tasks: Vec<_> = (0..20).map(|i| pool.submit(move || i).unwrap()).collect();
        for t in chi::as_completed(tasks) {
            assert!(t.done());
            assert!(t.result_timeout(Duration::ZERO).is_ok());
        }
    }

    #[test]
    fn as_completed_remaining_hands_back_rest() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gate.hold_then(|| 1)).unwrap();
        let mut it = chi::as_completed(vec![held, finished(|| 2)]);
        assert_eq!(it.next().unwrap().result(), Ok(2));
        let rest = it.remaining();
        assert_eq!(rest.len(), 1);
        gate.open();
        assert_eq!(results(rest), [Ok(1)]);
    }

    #[test]
    fn as_completed_timeout_held_gives_wait_timeout() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gate.hold_then(|| "held")).unwrap();
        let mut it = chi::as_completed_timeout(vec![held, finished(|| "done")], SHORT);
        assert_eq!(it.next().unwrap().unwrap().result(), Ok("done"));
        assert_eq!(it.next().unwrap().unwrap_err(), WaitTimeout { pending: 1 });
        assert!(it.next().is_none(), "the iterator ends after the timeout");
        let rest = it.remaining();
        gate.open();
        assert_eq!(results(rest), [Ok("held")]);
    }

    /// A zero timeout still yields what is already finished, then times out.
    #[test]
    fn as_completed_timeout_zero_yields_finished_first() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gate.hold_then(|| 0)).unwrap();
        let tasks = vec![finished(|| 1), held, finished(|| 2), cancelled()];
        let mut it = chi::as_completed_timeout(tasks, Duration::ZERO);
        let mut done = Vec::new();
        for _ in 0..3 {
            done.push(it.next().unwrap().expect("a finished task").result());
        }
        done.sort_unstable_by_key(|r| format!("{r:?}"));
        assert_eq!(done, [Err(TaskError::Cancelled), Ok(1), Ok(2)]);
        let err = it.next().unwrap().unwrap_err();
        assert_eq!(err.pending, 1);
        assert_eq!(err.to_string(), "1 task(s) unfinished at the timeout");
        gate.open();
    }

    #[test]
    fn as_completed_timeout_never_reached_all_ok() {
        let pool = ThreadPool::new(2).unwrap();
        let tasks: Vec<_> = (0..10).map(|i| pool.submit(move || i).unwrap()).collect();
        let mut got: Vec<i32> = chi::as_completed_timeout(tasks, common::NEVER)
            .map(|t| t.unwrap().result().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }
}

// ===== wait =====

mod wait {
    use super::*;

    /// A pool of two whose first worker is held: room for one more running task.
    fn pool_with_held() -> (ThreadPool, Gate, Task<i32>) {
        let pool = ThreadPool::new(2).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gate.hold_then(|| -1)).unwrap();
        gate.wait_started(1);
        (pool, gate, held)
    }

    fn panicked() -> Task<i32> {
        finished(|| panic!("failed"))
    }

    #[test]
    fn wait_all_completed_all_done_in_order() {
        let pool = ThreadPool::new(2).unwrap();
        let tasks: Vec<_> = (0..20).map(|i| pool.submit(move || i).unwrap()).collect();
        let (done, not_done) = chi::wait(tasks, ReturnWhen::AllCompleted, None);
        assert!(not_done.is_empty());
        assert_eq!(results(done), (0..20).map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn wait_all_completed_timeout_splits() {
        let (_pool, gate, held) = pool_with_held();
        let tasks = vec![finished(|| 1), held, panicked(), cancelled()];
        let (done, not_done) = chi::wait(tasks, ReturnWhen::AllCompleted, Some(SHORT));
        assert_eq!(not_done.len(), 1);
        let done = results(done);
        assert_eq!(done[0], Ok(1));
        assert!(done[1].as_ref().unwrap_err().is_panic());
        assert_eq!(done[2], Err(TaskError::Cancelled));
        gate.open();
        assert_eq!(results(not_done), [Ok(-1)]);
    }

    #[test]
    fn wait_first_completed_returns_on_first() {
        let (pool, gate, held) = pool_with_held();
        let gate2 = Gate::new();
        let second = pool.submit(gate2.hold_then(|| 2)).unwrap();
        gate2.wait_started(1);
        let (done, not_done) = thread::scope(|s| {
            s.spawn(|| gate2.open());
            chi::wait(vec![held, second], ReturnWhen::FirstCompleted, None)
        });
        assert_eq!(results(done), [Ok(2)]);
        gate.open();
        assert_eq!(results(not_done), [Ok(-1)]);
    }

    #[test]
    fn wait_first_completed_already_done_returns_at_once() {
        let (_pool, gate, held) = pool_with_held();
        let tasks = vec![held, finished(|| 5), cancelled()];
        let (done, not_done) = chi::wait(tasks, ReturnWhen::FirstCompleted, None);
        assert_eq!(results(done), [Ok(5), Err(TaskError::Cancelled)]);
        gate.open();
        assert_eq!(results(not_done), [Ok(-1)]);
    }

    #[test]
    fn wait_first_completed_timeout_none_done() {
        let (_pool, gate, held) = pool_with_held();
        let (done, not_done) = chi::wait(vec![held], ReturnWhen::FirstCompleted, Some(SHORT));
        assert!(done.is_empty());
        gate.open();
        assert_eq!(results(not_done), [Ok(-1)]);
    }

    #[test]
    fn wait_first_exception_returns_on_panic() {
        let (pool, gate, held) = pool_with_held();
        let failing = pool
            .submit(|| -> i32 { panic!("first exception") })
            .unwrap();
        let tasks = vec![finished(|| 1), held, failing];
        let (done, not_done) = chi::wait(tasks, ReturnWhen::FirstException, None);
        let done = results(done);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0], Ok(1));
        assert_eq!(
            done[1].as_ref().unwrap_err().panic_message(),
            Some("first exception")
        );
        gate.open();
        assert_eq!(results(not_done), [Ok(-1)]);
    }

    /// A cancellation is not an exception: FIRST_EXCEPTION keeps waiting (here until its
    /// timeout, as one task stays held).
    #[test]
    fn wait_first_exception_cancel_is_not_exception() {
        let (_pool, gate, held) = pool_with_held();
        let tasks = vec![cancelled(), finished(|| 3), held];
        let (done, not_done) = chi::wait(tasks, ReturnWhen::FirstException, Some(SHORT));
        assert_eq!(results(done), [Err(TaskError::Cancelled), Ok(3)]);
        gate.open();
        assert_eq!(results(not_done), [Ok(-1)]);
    }

    /// Without any failure, FIRST_EXCEPTION waits for all.
    #[test]
    fn wait_first_exception_none_waits_all() {
        let (_pool, gate, held) = pool_with_held();
        let tasks = vec![finished(|| 1), held];
        let (done, not_done) = thread::scope(|s| {
            s.spawn(|| gate.open());
            chi::wait(tasks, ReturnWhen::FirstException, None)
        });
        assert!(not_done.is_empty());
        assert_eq!(results(done), [Ok(1), Ok(-1)]);
    }

    #[test]
    fn wait_empty_returns_at_once() {
        for when in [
            ReturnWhen::FirstCompleted,
            ReturnWhen::FirstException,
            ReturnWhen::AllCompleted,
        ] {
            let (done, not_done) = bounded("wait on no tasks", move || {
                chi::wait(Vec::<Task<u8>>::new(), when, None)
            });
            assert!(done.is_empty() && not_done.is_empty(), "{when:?}");
        }
    }

    #[test]
    fn wait_done_tasks_are_takeable() {
        let pool = ThreadPool::new(2).unwrap();
        let tasks: Vec<_> = (0..10).map(|i| pool.submit(move || i).unwrap()).collect();
        let (done, _) = chi::wait(tasks, ReturnWhen::AllCompleted, None);
        for t in done {
            assert!(t.result_timeout(Duration::ZERO).is_ok());
        }
    }

    /// Many tasks released at once (CPython's `test_pending_calls_race`).
    #[test]
    fn wait_all_completed_many_released_together() {
        let pool = ThreadPool::new(4).unwrap();
        let gate = Gate::new();
        let tasks: Vec<_> = (0..common::scaled(100))
            .map(|_| pool.submit(gate.hold()).unwrap())
            .collect();
        let n = tasks.len();
        let (done, not_done) = thread::scope(|s| {
            s.spawn(|| gate.open());
            chi::wait(tasks, ReturnWhen::AllCompleted, Some(common::NEVER))
        });
        assert_eq!((done.len(), not_done.len()), (n, 0));
    }
}
