//! `ThreadPool` and its `Task` handles through the public API: building, worker threads,
//! the bounded queue, task states, cancellation, callbacks, panics, drops, shutdown, metrics,
//! idleness and scopes. One module per area; tests read as `<subject>_<condition>`.
//!
//! No test sleeps to synchronise or asserts on a duration: tasks are held by a [`Gate`], waits
//! have a bound that must never fire, and states that appear eventually (a worker exiting
//! after its keep-alive, a thread going to sleep) are polled with a generous deadline.
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

mod common;

use chi::{ResultTimeoutError, SubmitTimeoutError, Task, TaskError, ThreadPool, TrySubmitError};
use common::{DropCounter, Gate, bounded, poll_until, recv, run_alone};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

/// A timeout that is what a test checks (the task is held, so it must expire).
const SHORT: Duration = Duration::from_millis(20);

fn thread_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

// ===== building =====

mod build {
    use super::*;
    use chi::BuildErrorKind;

    #[test]
    fn new_zero_workers_is_error() {
        let err = ThreadPool::new(0).unwrap_err();
        assert!(matches!(err.kind(), BuildErrorKind::ZeroWorkers), "{err:?}");
    }

    #[test]
    fn queue_bound_zero_is_error() {
        let err = ThreadPool::builder().queue_bound(0).build().unwrap_err();
        assert!(
            matches!(err.kind(), BuildErrorKind::ZeroQueueBound),
            "{err:?}"
        );
    }

    #[test]
    fn stack_size_zero_is_error() {
        let err = ThreadPool::builder().stack_size(0).build().unwrap_err();
        assert!(matches!(err.kind(), BuildErrorKind::Invalid(_)), "{err:?}");
    }

    #[test]
    fn thread_name_nul_is_error() {
        let err = ThreadPool::builder()
            .thread_name("a\0b")
            .build()
            .unwrap_err();
        assert!(matches!(err.kind(), BuildErrorKind::Invalid(_)), "{err:?}");
    }

    #[test]
    fn max_workers_default_is_available_parallelism() {
        let expected = thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            ThreadPool::builder().build().unwrap().max_workers(),
            expected
        );
    }

    #[test]
    fn max_workers_set_is_reported() {
        assert_eq!(ThreadPool::new(3).unwrap().max_workers(), 3);
    }

    #[test]
    fn thread_name_default_is_chi_worker_n() {
        let pool = ThreadPool::new(2).unwrap();
        let name = pool.submit(thread_name).unwrap().result().unwrap();
        let n = name
            .strip_prefix("chi-worker-")
            .unwrap_or_else(|| panic!("worker named {name:?}"));
        assert!(n.parse::<usize>().is_ok(), "worker named {name:?}");
    }

    #[test]
    fn thread_name_custom_prefix() {
        let pool = ThreadPool::builder()
            .max_workers(2)
            .thread_name("render")
            .build()
            .unwrap();
        let name = pool.submit(thread_name).unwrap().result().unwrap();
        let n = name
            .strip_prefix("render-")
            .unwrap_or_else(|| panic!("worker named {name:?}"));
        assert!(n.parse::<usize>().is_ok(), "worker named {name:?}");
    }

    /// Uses more stack than a default thread has (2 MiB); without the setting this would
    /// overflow and kill the process, so it runs in a child process of its own.
    #[test]
    fn stack_size_large_array_fits() {
        if run_alone("build::stack_size_large_array_fits") {
            return;
        }
        #[inline(never)]
        fn big_frame() -> u64 {
            let mut buf = [0u8; 8 << 20];
            std::hint::black_box(&mut buf);
            buf[12345] = 7;
            std::hint::black_box(&buf)
                .iter()
                .map(|&b| u64::from(b))
                .sum()
        }
        let pool = ThreadPool::builder()
            .max_workers(1)
            .stack_size(64 << 20)
            .build()
            .unwrap();
        assert_eq!(pool.submit(big_frame).unwrap().result(), Ok(7));
    }
}

// ===== worker threads: lazy start, keep-alive, growth =====

mod workers {
    use super::*;

    #[test]
    fn workers_zero_before_first_submit() {
        let pool = ThreadPool::new(4).unwrap();
        assert_eq!(pool.metrics().workers, 0);
        assert_eq!(pool.metrics(), chi::thread_pool::Metrics::default());
        pool.submit(|| ()).unwrap().result().unwrap();
        assert!(pool.metrics().workers >= 1);
    }

    #[test]
    fn keep_alive_idle_workers_exit_then_restart() {
        let pool = ThreadPool::builder()
            .max_workers(2)
            .keep_alive(Duration::from_millis(20))
            .build()
            .unwrap();
        let gate = Gate::new();
        let held = common::hold_workers(&pool, &gate, 2);
        assert_eq!(pool.metrics().workers, 2);
        gate.open();
        for t in held {
            t.result().unwrap();
        }
        poll_until("idle workers exit after the keep-alive", || {
            pool.metrics().workers == 0
        });

        // A later submit starts a worker again.
        let gate = Gate::new();
        let t = pool.submit(gate.hold_then(thread_name)).unwrap();
        gate.wait_started(1);
        assert_eq!(pool.metrics().workers, 1);
        gate.open();
        assert!(t.result().unwrap().starts_with("chi-worker-"));
    }

    /// A worker whose keep-alive just ran out is on its way out while a submitter arrives:
    /// the work must still run. With a keep-alive of zero, almost every submit meets a worker
    /// that is exiting.
    #[test]
    fn keep_alive_zero_never_strands_work() {
        let pool = ThreadPool::builder()
            .max_workers(1)
            .keep_alive(Duration::ZERO)
            .build()
            .unwrap();
        let pool = Arc::new(pool);
        bounded(
            "2000 submit/result rounds on a pool whose worker keeps exiting",
            move || {
                for i in 0..common::scaled(2000) {
                    assert_eq!(pool.submit(move || i).unwrap().result(), Ok(i));
                }
            },
        );
    }

    /// Tasks that wait for each other need as many threads as there are tasks: the pool must
    /// grow to `max_workers` while work is queued and every worker is busy.
    #[test]
    fn workers_grow_to_max_when_tasks_block() {
        bounded("4 tasks that meet at a gate, 50 times", || {
            for _ in 0..common::scaled(50) {
                let pool = ThreadPool::new(4).unwrap();
                let gate = Gate::new();
                let tasks: Vec<_> = (0..4).map(|_| pool.submit(gate.hold()).unwrap()).collect();
                gate.wait_started(4);
                assert_eq!(pool.metrics().workers, 4);
                gate.open();
                for t in tasks {
                    t.result().unwrap();
                }
            }
        });
    }

    /// The same on a pool that already ran a task, so its first worker is idle (searching or
    /// asleep) when the burst arrives. Each submit that sees an idle worker counts on it and
    /// starts no thread, but that worker takes only one task.
    #[test]
    fn workers_grow_to_max_when_tasks_block_after_idle() {
        for _ in 0..common::scaled(20) {
            let pool = ThreadPool::new(4).unwrap();
            pool.submit(|| ()).unwrap().result().unwrap();
            let gate = Gate::new();
            let tasks: Vec<_> = (0..4).map(|_| pool.submit(gate.hold()).unwrap()).collect();
            common::poll_state(
                "4 workers run the 4 held tasks",
                || pool.metrics(),
                |m| (m.workers, m.queued) == (4, 0),
            );
            gate.wait_started(4);
            gate.open();
            for t in tasks {
                t.result().unwrap();
            }
        }
    }

    #[test]
    fn workers_never_exceed_max() {
        let pool = ThreadPool::new(3).unwrap();
        let gate = Gate::new();
        let mut tasks = common::hold_workers(&pool, &gate, 3);
        tasks.extend((0..27).map(|_| pool.submit(gate.hold()).unwrap()));
        let m = pool.metrics();
        assert_eq!((m.workers, m.queued), (3, 27), "{m:?}");
        gate.open();
        for t in tasks {
            t.result().unwrap();
            assert!(pool.metrics().workers <= 3);
        }
    }

    #[test]
    fn idle_worker_reused_for_sequential_tasks() {
        // Waiting for `metrics().idle == workers` is not enough: a worker that stops searching
        // is counted neither as searching nor as sleeping until it parks, and a submit in that
        // gap starts a second thread. So wait until the worker is asleep in the kernel.
        let pool = ThreadPool::builder()
            .max_workers(4)
            .thread_name("tp-reuse")
            .build()
            .unwrap();
        for _ in 0..5 {
            pool.submit(|| ()).unwrap().result().unwrap();
            common::wait_all_asleep("tp-reuse", 1);
        }
        assert_eq!(pool.metrics().workers, 1);
    }
}

// ===== initializer =====

mod initializer {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static INITIALIZED: Cell<bool> = const { Cell::new(false) };
    }

    #[test]
    fn initializer_runs_once_per_worker_thread() {
        let inits = Arc::new(Mutex::new(Vec::new()));
        let log = inits.clone();
        let pool = ThreadPool::builder()
            .max_workers(3)
            .initializer(move || {
                assert!(!INITIALIZED.get(), "initializer ran twice on one thread");
                INITIALIZED.set(true);
                log.lock().unwrap().push(thread::current().id());
            })
            .build()
            .unwrap();
        // Force all three workers to start, then run more tasks across them.
        let gate = Gate::new();
        let mut tasks: Vec<_> = (0..3)
            .map(|_| {
                let t = pool
                    .submit(gate.hold_then(|| (INITIALIZED.get(), thread::current().id())))
                    .unwrap();
                gate.wait_started(1);
                t
            })
            .collect();
        gate.open();
        tasks.extend((0..30).map(|_| {
            pool.submit(|| (INITIALIZED.get(), thread::current().id()))
                .unwrap()
        }));
        let ran_on: Vec<_> = tasks.into_iter().map(|t| t.result().unwrap()).collect();
        pool.shutdown();

        let inits = inits.lock().unwrap().clone();
        let unique: std::collections::HashSet<_> = inits.iter().copied().collect();
        assert_eq!(
            unique.len(),
            inits.len(),
            "an initializer ran twice on one thread: {inits:?}"
        );
        assert!(inits.len() >= 3, "{inits:?}");
        for (initialized, id) in ran_on {
            assert!(initialized, "a task ran before its thread's initializer");
            assert!(
                inits.contains(&id),
                "a task ran on a thread with no initializer run"
            );
        }
    }

    #[test]
    fn initializer_panic_fails_tasks_with_message() {
        let pool = ThreadPool::builder()
            .max_workers(2)
            .initializer(|| panic!("init exploded"))
            .build()
            .unwrap();
        let pool = Arc::new(pool);
        let p = pool.clone();
        bounded("tasks of a pool whose initializer panics", move || {
            let first = p.submit(|| 1).unwrap().result();
            match first {
                Err(TaskError::PoolFailed(cause)) => {
                    assert!(cause.to_string().contains("init exploded"), "{cause}")
                }
                other => panic!("expected PoolFailed, got {other:?}"),
            }
            // Later submissions fail the same way, at once.
            for _ in 0..10 {
                match p.submit(|| 2).unwrap().result() {
                    Err(TaskError::PoolFailed(cause)) => {
                        assert!(cause.to_string().contains("init exploded"), "{cause}")
                    }
                    other => panic!("expected PoolFailed, got {other:?}"),
                }
            }
        });
        bounded("dropping a failed pool", move || drop(pool));
    }

    /// Many submissions race the failing initializer: every one of them must end (with
    /// `PoolFailed`), none may be stranded in a queue no worker will ever read.
    #[test]
    fn initializer_panic_racing_submits_never_hang() {
        bounded("submissions racing a failing initializer", || {
            for _ in 0..common::scaled(200) {
                let pool = ThreadPool::builder()
                    .max_workers(2)
                    .initializer(|| panic!("init failed"))
                    .build()
                    .unwrap();
                let tasks: Vec<_> = (0..20).map(|i| pool.submit(move || i).unwrap()).collect();
                for t in tasks {
                    match t.result_timeout(Duration::from_secs(10)) {
                        Err(ResultTimeoutError::Failed(TaskError::PoolFailed(_))) => {}
                        Err(ResultTimeoutError::Timeout(_)) => {
                            panic!("a task of a failed pool never finished")
                        }
                        other => panic!("expected PoolFailed, got {other:?}"),
                    }
                }
            }
        });
    }
}

// ===== the bounded queue =====

mod bound {
    use super::*;

    /// A pool of one worker and one queue place, with the worker held and the place taken.
    fn full_pool() -> (Arc<ThreadPool>, Gate, Task<()>, Task<&'static str>) {
        let pool = Arc::new(
            ThreadPool::builder()
                .max_workers(1)
                .queue_bound(1)
                .build()
                .unwrap(),
        );
        let gate = Gate::new();
        let running = pool.submit(gate.hold()).unwrap();
        gate.wait_started(1);
        let queued = pool.submit(|| "queued").unwrap();
        (pool, gate, running, queued)
    }

    #[test]
    fn submit_blocks_while_full() {
        let (pool, gate, running, queued) = full_pool();
        let log = Arc::new(Mutex::new(Vec::<&str>::new()));
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let submitter = {
            let (pool, log) = (pool.clone(), log.clone());
            thread::spawn(move || {
                tid_tx.send(common::current_tid()).unwrap();
                let log2 = log.clone();
                let t = pool
                    .submit(move || log2.lock().unwrap().push("third ran"))
                    .unwrap();
                // Logged after `submit` returned; the task itself may already have run.
                log.lock().unwrap().push("third admitted");
                done_tx.send(()).unwrap();
                t
            })
        };
        // The submitter is blocked inside `submit` (asleep, not finished).
        let tid = recv(&tid_rx, "submitter tid");
        poll_until("the submitter sleeps in submit", || {
            common::thread_state(tid) == Some('S')
        });
        assert!(
            done_rx.try_recv().is_err(),
            "submit returned while the queue was full"
        );
        assert!(matches!(
            pool.try_submit(|| "x"),
            Err(TrySubmitError::Full(_))
        ));

        // Freeing the worker lets it take the queued task, which frees the place.
        log.lock().unwrap().push("worker freed");
        gate.open();
        recv(&done_rx, "submit returning");
        let third = submitter.join().unwrap();
        assert_eq!(queued.result(), Ok("queued"));
        running.result().unwrap();
        third.result().unwrap();
        let log = log.lock().unwrap().clone();
        assert_eq!(
            log[0], "worker freed",
            "submit returned before the worker freed a place: {log:?}"
        );
        assert_eq!(log.len(), 3, "{log:?}");
    }

    #[test]
    fn try_submit_full_hands_closure_back() {
        let (pool, gate, running, queued) = full_pool();
        let err = pool.try_submit(|| 41 + 1).unwrap_err();
        assert!(err.is_full());
        assert_eq!(format!("{err:?}"), "Full(..)");
        assert_eq!(err.into_inner()(), 42);
        gate.open();
        running.result().unwrap();
        queued.result().unwrap();
    }

    #[test]
    fn submit_timeout_full_hands_closure_back() {
        let (pool, gate, running, queued) = full_pool();
        match pool.submit_timeout(|| 7, SHORT) {
            Err(e @ SubmitTimeoutError::Timeout(_)) => {
                assert!(e.is_timeout());
                assert_eq!(e.into_inner()(), 7);
            }
            other => panic!("expected Timeout, got {:?}", other.map(|_| ())),
        }
        gate.open();
        running.result().unwrap();
        queued.result().unwrap();
        // With room, submit_timeout admits at once.
        assert_eq!(
            pool.submit_timeout(|| 8, common::NEVER).unwrap().result(),
            Ok(8)
        );
    }

    /// A submitter blocked on a full queue when the pool shuts down gets `ShutDown`, not a hang.
    #[test]
    fn shutdown_wakes_blocked_submitter() {
        let (pool, gate, running, queued) = full_pool();
        let (tid_tx, tid_rx) = mpsc::channel();
        let submitter = {
            let pool = pool.clone();
            thread::spawn(move || {
                tid_tx.send(common::current_tid()).unwrap();
                pool.submit(|| 3).map(|_| ()).map_err(|e| e.into_inner()())
            })
        };
        let tid = recv(&tid_rx, "submitter tid");
        poll_until("the submitter sleeps in submit", || {
            common::thread_state(tid) == Some('S')
        });
        let shutter = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown())
        };
        // The worker is still held, so no place frees: only the shutdown can wake it.
        let refused = bounded("the blocked submitter", move || submitter.join().unwrap());
        assert_eq!(refused, Err(3));
        gate.open();
        shutter.join().unwrap();
        running.result().unwrap();
        assert_eq!(queued.result(), Ok("queued"));
    }

    /// Submitting from a task of the same pool never blocks on the bound (it could deadlock).
    #[test]
    fn nested_submit_ignores_bound() {
        let pool = Arc::new(
            ThreadPool::builder()
                .max_workers(1)
                .queue_bound(1)
                .build()
                .unwrap(),
        );
        let p = pool.clone();
        let outer = pool
            .submit(move || {
                let inner: Vec<_> = (0..5).map(|i| p.submit(move || i * 2).unwrap()).collect();
                inner.into_iter().map(|t| t.result().unwrap()).sum::<i32>()
            })
            .unwrap();
        assert_eq!(
            bounded("nested submits over the bound", move || outer.result()),
            Ok(20)
        );
    }
}

// ===== Task: result, states, cancel =====

mod task {
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
}

// ===== Task: done-callbacks =====

mod callback {
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
}

// ===== TaskError =====

mod task_error {
    use super::*;

    #[test]
    fn panicked_exposes_message() {
        let pool = ThreadPool::new(1).unwrap();
        let err = pool
            .submit(|| -> u8 { panic!("boom {}", 42) })
            .unwrap()
            .result()
            .unwrap_err();
        assert_eq!(err, TaskError::panicked("boom 42"));
        assert!(err.is_panic() && !err.is_cancelled());
        assert_eq!(err.panic_message(), Some("boom 42"));
        assert_eq!(err.to_string(), "task panicked: boom 42");
        // The payload itself, as std raised it (a `&str` or a `String`, by how the message
        // was formatted).
        let payload = err.into_panic().unwrap();
        let text = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        assert_eq!(text, Some("boom 42"));
    }

    #[test]
    fn panicked_non_string_payload_still_panic() {
        let pool = ThreadPool::new(1).unwrap();
        let err = pool
            .submit(|| -> u8 { std::panic::panic_any(17u32) })
            .unwrap()
            .result()
            .unwrap_err();
        assert!(err.is_panic(), "{err:?}");
        assert!(err.panic_message().is_some());
        // The original payload survives, for `resume_unwind`; a clone taken before gets the
        // message instead, never the payload twice.
        let copy = err.clone();
        let payload = err.into_panic().unwrap();
        assert_eq!(payload.downcast_ref::<u32>(), Some(&17));
        assert!(copy.into_panic().unwrap().downcast_ref::<u32>().is_none());
    }

    /// The payload round-trips through `resume_unwind`: a `catch_unwind` around it sees the
    /// task's own value.
    #[test]
    fn panicked_payload_round_trips_through_resume_unwind() {
        let pool = ThreadPool::new(1).unwrap();
        let err = pool
            .submit(|| -> u8 { std::panic::panic_any(("tuple", 5u64)) })
            .unwrap()
            .result()
            .unwrap_err();
        let raised = err.into_panic().unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::panic::resume_unwind(raised)
        }));
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<(&str, u64)>(), Some(&("tuple", 5)));
    }

    /// Errors that wrap a cause expose it through `source()`: a process-pool codec failure
    /// carries the codec's own error.
    #[test]
    fn pool_failed_and_codec_expose_source() {
        use std::error::Error as _;
        let io = std::io::Error::other("disk gone");
        let err = TaskError::Codec(chi::Cause::with_source("the argument did not encode", io));
        let cause = err.source().expect("Codec has a source");
        assert_eq!(cause.to_string(), "the argument did not encode: disk gone");
        assert_eq!(cause.source().unwrap().to_string(), "disk gone");
        assert!(TaskError::Cancelled.source().is_none());
    }

    #[test]
    fn cancelled_is_not_panic() {
        let err = TaskError::Cancelled;
        assert!(err.is_cancelled() && !err.is_panic());
        assert_eq!(err.panic_message(), None);
        assert_eq!(err.to_string(), "task cancelled");
        assert_eq!(err.clone().into_panic().unwrap_err(), TaskError::Cancelled);
    }

    #[test]
    fn pool_failed_is_neither() {
        let err = TaskError::PoolFailed(chi::Cause::new("init"));
        assert!(!err.is_cancelled() && !err.is_panic());
        assert_eq!(err.panic_message(), None);
        assert!(err.to_string().contains("init"));
    }
}

// ===== panics in tasks =====

mod panics {
    use super::*;

    #[test]
    fn task_panic_worker_lives_on() {
        let pool = ThreadPool::new(1).unwrap();
        let (tx, rx) = mpsc::channel();
        let err = pool
            .submit(move || -> u8 {
                tx.send(thread_name()).unwrap();
                panic!("task exploded")
            })
            .unwrap()
            .result()
            .unwrap_err();
        assert_eq!(err.panic_message(), Some("task exploded"));
        let panicked_on = recv(&rx, "the panicking task's thread");
        let next_on = pool.submit(thread_name).unwrap().result().unwrap();
        assert_eq!(panicked_on, next_on, "the worker died with its task");
        assert_eq!(pool.metrics().workers, 1);
        poll_until("metrics count the panic", || pool.metrics().panicked == 1);
    }

    #[test]
    fn task_panic_many_all_reported() {
        let pool = ThreadPool::new(2).unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                pool.submit(move || if i % 2 == 0 { panic!("even {i}") } else { i })
                    .unwrap()
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.result() {
                Ok(v) => assert_eq!(v, i),
                Err(e) => assert_eq!(e.panic_message(), Some(format!("even {i}").as_str())),
            }
        }
        pool.shutdown();
        let m = pool.metrics();
        assert_eq!((m.completed, m.panicked), (25, 25), "{m:?}");
    }
}

// ===== nested submission (the classic deadlock) =====

mod nested {
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
}

// ===== drops: each closure and result exactly once =====

mod drops {
    use super::*;
    use common::Counted;

    /// A task whose closure and result are both counted.
    fn counted_task(
        closures: &DropCounter,
        results: &DropCounter,
    ) -> impl FnOnce() -> Counted<u32> + Send + 'static {
        let captured = closures.track(());
        let results = results.clone();
        move || {
            let _keep = &captured;
            results.track(7)
        }
    }

    /// Pool of one with its worker held; returns the held task too.
    fn held_pool() -> (ThreadPool, Gate, Task<()>) {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = pool.submit(gate.hold()).unwrap();
        gate.wait_started(1);
        (pool, gate, held)
    }

    #[test]
    fn drop_once_on_run() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::new(1).unwrap();
        let v = pool
            .submit(counted_task(&closures, &results))
            .unwrap()
            .result()
            .unwrap();
        assert_eq!(*v.get(), 7);
        assert_eq!((closures.count(), results.count()), (1, 0));
        drop(v);
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (1, 1));
    }

    #[test]
    fn drop_once_on_cancel() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let (pool, gate, held) = held_pool();
        let t = pool.submit(counted_task(&closures, &results)).unwrap();
        assert!(t.cancel());
        assert_eq!(closures.count(), 1, "cancel drops the closure at once");
        gate.open();
        held.result().unwrap();
        assert_eq!(t.result().unwrap_err(), TaskError::Cancelled);
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (1, 0));
    }

    #[test]
    fn drop_once_on_shutdown_now() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let (pool, gate, held) = held_pool();
        let tasks: Vec<_> = (0..10)
            .map(|_| pool.submit(counted_task(&closures, &results)).unwrap())
            .collect();
        thread::scope(|s| {
            let stopper = s.spawn(|| pool.shutdown_now());
            poll_until("shutdown_now cancels the queue", || {
                tasks.iter().all(Task::cancelled)
            });
            gate.open();
            assert_eq!(stopper.join().unwrap(), 10);
        });
        assert_eq!((closures.count(), results.count()), (10, 0));
        held.result().unwrap();
        drop(tasks);
        assert_eq!((closures.count(), results.count()), (10, 0));
    }

    #[test]
    fn drop_once_on_panic() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::new(1).unwrap();
        let captured = closures.track(());
        let r = results.clone();
        let t = pool
            .submit(move || -> Counted<u32> {
                let _keep = &captured;
                let _r = &r;
                panic!("with captures")
            })
            .unwrap();
        assert!(t.result().unwrap_err().is_panic());
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (1, 0));
    }

    #[test]
    fn drop_once_handle_dropped_before_run() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let (pool, gate, held) = held_pool();
        drop(pool.submit(counted_task(&closures, &results)).unwrap());
        assert_eq!(
            (closures.count(), results.count()),
            (0, 0),
            "dropping the handle does not cancel"
        );
        gate.open();
        held.result().unwrap();
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (1, 1));
    }

    #[test]
    fn drop_once_handle_dropped_while_running() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let t = pool
            .submit(gate.hold_then(counted_task(&closures, &results)))
            .unwrap();
        gate.wait_started(1);
        drop(t);
        gate.open();
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (1, 1));
    }

    #[test]
    fn drop_once_handle_dropped_after_run() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::new(1).unwrap();
        let t = pool.submit(counted_task(&closures, &results)).unwrap();
        t.wait();
        drop(t);
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (1, 1));
    }

    #[test]
    fn drop_once_submit_refused() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::new(1).unwrap();
        pool.shutdown();
        let err = pool.submit(counted_task(&closures, &results)).unwrap_err();
        assert_eq!(
            closures.count(),
            0,
            "the refused closure is handed back, not dropped"
        );
        drop(err);
        assert_eq!((closures.count(), results.count()), (1, 0));
    }

    #[test]
    fn drop_once_failed_pool() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::builder()
            .max_workers(1)
            .initializer(|| panic!("no"))
            .build()
            .unwrap();
        let first = pool.submit(counted_task(&closures, &results)).unwrap();
        assert!(matches!(first.result(), Err(TaskError::PoolFailed(_))));
        let later = pool.submit(counted_task(&closures, &results)).unwrap();
        assert!(matches!(later.result(), Err(TaskError::PoolFailed(_))));
        pool.shutdown();
        assert_eq!((closures.count(), results.count()), (2, 0));
    }

    #[test]
    fn drop_once_callbacks() {
        let callbacks = DropCounter::new();
        let (pool, gate, held) = held_pool();
        let ran = pool.submit(|| 1).unwrap();
        let cancelled = pool.submit(|| 2).unwrap();
        let abandoned = pool.submit(|| 3).unwrap();
        for t in [&ran, &cancelled, &abandoned] {
            let c = callbacks.track(());
            t.add_done_callback(move |_| drop(c));
        }
        assert!(cancelled.cancel());
        drop(abandoned);
        gate.open();
        held.result().unwrap();
        ran.result().unwrap();
        pool.shutdown();
        drop(cancelled);
        assert_eq!(callbacks.count(), 3);
    }

    /// Many tasks over every path at once; the totals must be exact.
    #[test]
    fn drop_once_mixed_paths() {
        let (closures, results) = (DropCounter::new(), DropCounter::new());
        let pool = ThreadPool::new(2).unwrap();
        let n = common::scaled(300);
        let mut cancelled = 0;
        let mut kept = Vec::new();
        for i in 0..n {
            let t = pool.submit(counted_task(&closures, &results)).unwrap();
            match i % 3 {
                0 => kept.push(t),
                1 => {
                    // Refused when a worker already took it; then it runs like the others.
                    if t.cancel() {
                        cancelled += 1;
                    }
                    kept.push(t);
                }
                _ => drop(t),
            }
        }
        for t in kept {
            drop(t.result());
        }
        pool.shutdown();
        assert_eq!(closures.count(), n);
        assert_eq!(results.count(), n - cancelled);
    }
}

// ===== shutdown and drop =====

mod shutdown {
    use super::*;

    #[test]
    fn shutdown_runs_queued_then_joins() {
        let pool = ThreadPool::new(2).unwrap();
        let gate = Gate::new();
        let held = common::hold_workers(&pool, &gate, 2);
        let ran = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..40)
            .map(|i| {
                let ran = ran.clone();
                pool.submit(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    i
                })
                .unwrap()
            })
            .collect();
        thread::scope(|s| {
            let stopper = s.spawn(|| pool.shutdown());
            poll_until("shutdown begins", || pool.is_shut_down());
            gate.open();
            stopper.join().unwrap();
        });
        // shutdown returned: everything queued has run, and every worker is gone.
        assert_eq!(ran.load(Ordering::SeqCst), 40);
        assert!(queued.iter().all(Task::done) && held.iter().all(Task::done));
        assert_eq!(pool.metrics().workers, 0);
        for (i, t) in queued.into_iter().enumerate() {
            assert_eq!(t.result(), Ok(i));
        }
    }

    #[test]
    fn shutdown_now_cancels_queued_waits_running() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let running = pool.submit(gate.hold_then(|| "running")).unwrap();
        gate.wait_started(1);
        let ran = Arc::new(AtomicBool::new(false));
        let queued: Vec<_> = (0..10)
            .map(|_| {
                let ran = ran.clone();
                pool.submit(move || ran.store(true, Ordering::SeqCst))
                    .unwrap()
            })
            .collect();
        thread::scope(|s| {
            let stopper = s.spawn(|| pool.shutdown_now());
            poll_until("queued tasks are cancelled", || {
                queued.iter().all(Task::cancelled)
            });
            assert!(!running.done(), "shutdown_now does not stop a running task");
            gate.open();
            assert_eq!(stopper.join().unwrap(), 10);
        });
        // shutdown_now returned only after the running task finished.
        assert!(running.done());
        assert_eq!(running.result(), Ok("running"));
        for t in queued {
            assert_eq!(t.result(), Err(TaskError::Cancelled));
        }
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(pool.metrics().workers, 0);
    }

    #[test]
    fn submit_after_shutdown_refused() {
        let pool = ThreadPool::new(1).unwrap();
        pool.submit(|| ()).unwrap().result().unwrap();
        pool.shutdown();
        assert!(pool.is_shut_down());
        let err = pool.submit(|| 1).unwrap_err();
        assert_eq!(err.to_string(), "the pool is shut down");
        assert_eq!(err.into_inner()(), 1);
        match pool.try_submit(|| 2) {
            Err(e @ TrySubmitError::ShutDown(_)) => assert_eq!(e.into_inner()(), 2),
            other => panic!("expected ShutDown, got {:?}", other.map(|_| ())),
        }
        match pool.submit_timeout(|| 3, common::NEVER) {
            Err(e @ SubmitTimeoutError::ShutDown(_)) => assert_eq!(e.into_inner()(), 3),
            other => panic!("expected ShutDown, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn shutdown_twice_is_harmless() {
        let pool = ThreadPool::new(2).unwrap();
        let t = pool.submit(|| 1).unwrap();
        pool.shutdown();
        pool.shutdown();
        assert_eq!(pool.shutdown_now(), 0);
        assert_eq!(t.result(), Ok(1));
    }

    #[test]
    fn shutdown_never_started_pool() {
        let pool = ThreadPool::new(2).unwrap();
        bounded("shutting down a pool that never ran", move || {
            pool.shutdown();
            assert_eq!(pool.shutdown_now(), 0);
        });
    }

    /// A task may shut down its own pool; it does not wait for itself.
    #[test]
    fn shutdown_from_own_task_returns() {
        let pool = Arc::new(ThreadPool::new(2).unwrap());
        let p = pool.clone();
        let t = pool.submit(move || p.shutdown()).unwrap();
        bounded("a task shutting down its own pool", move || t.result()).unwrap();
        assert!(pool.is_shut_down());
        assert!(pool.submit(|| ()).is_err());
    }

    /// The last handle to the pool is dropped on one of its own workers.
    #[test]
    fn drop_last_handle_on_worker() {
        let pool = Arc::new(ThreadPool::new(1).unwrap());
        let gate = Gate::new();
        let p = pool.clone();
        let t = pool.submit(gate.hold_then(move || drop(p))).unwrap();
        drop(pool);
        gate.open();
        bounded("a pool dropped on its own worker", move || t.result()).unwrap();
    }

    #[test]
    fn drop_runs_queued_work() {
        let pool = ThreadPool::new(2).unwrap();
        let tasks: Vec<_> = (0..50u64)
            .map(|i| pool.submit(move || i * i).unwrap())
            .collect();
        drop(pool);
        assert!(
            tasks.iter().all(Task::done),
            "drop returned before the queue ran"
        );
        for (i, t) in (0u64..).zip(tasks) {
            assert_eq!(t.result(), Ok(i * i));
        }
    }

    /// Drop is shutdown: every worker thread is joined. Runs alone so that other tests'
    /// pools are not in the thread list.
    #[test]
    fn drop_leaves_no_worker_thread() {
        if run_alone("shutdown::drop_leaves_no_worker_thread") {
            return;
        }
        let pool = ThreadPool::new(4).unwrap();
        let gate = Gate::new();
        let tasks = common::hold_workers(&pool, &gate, 4);
        assert_eq!(common::threads_named("chi-worker").len(), 4);
        gate.open();
        drop(pool);
        for t in tasks {
            assert!(t.done());
        }
        // The kernel removes an exited thread from /proc just after it is joined.
        poll_until("no chi-worker thread left", || {
            common::threads_named("bg-shutdown").is_empty()
        });
    }
}

// ===== metrics =====

mod metrics {
    use super::*;

    #[test]
    fn metrics_fields_track_pool() {
        let pool = ThreadPool::new(2).unwrap();
        assert_eq!(pool.metrics(), chi::thread_pool::Metrics::default());
        let gate = Gate::new();
        let held = common::hold_workers(&pool, &gate, 2);
        let queued: Vec<_> = (0..3).map(|i| pool.submit(move || i).unwrap()).collect();
        let boom = pool.submit(|| -> i32 { panic!("counted") }).unwrap();
        let m = pool.metrics();
        assert_eq!(
            (m.workers, m.idle, m.queued, m.completed, m.panicked),
            (2, 0, 4, 0, 0),
            "{m:?}"
        );

        gate.open();
        for t in held {
            t.result().unwrap();
        }
        for t in queued {
            t.result().unwrap();
        }
        assert!(boom.result().is_err());
        common::poll_state(
            "all workers idle with the counts in",
            || pool.metrics(),
            |m| (m.workers, m.idle, m.queued, m.completed, m.panicked) == (2, 2, 0, 5, 1),
        );
        pool.shutdown();
        let m = pool.metrics();
        assert_eq!(
            (m.workers, m.queued, m.completed, m.panicked),
            (0, 0, 5, 1),
            "{m:?}"
        );
    }
}

// ===== an idle pool uses no CPU =====

mod idle {
    use super::*;

    /// After the work is done, every worker thread is asleep in the kernel (`S`), not spinning
    /// (`R`). Checked by state, never by timing; runs alone so that only this pool's workers
    /// are in the thread list.
    #[test]
    fn idle_workers_sleep() {
        if run_alone("idle::idle_workers_sleep") {
            return;
        }
        let pool = ThreadPool::new(4).unwrap();
        let gate = Gate::new();
        let held = common::hold_workers(&pool, &gate, 4);
        let busy: Vec<_> = (0..200u64)
            .map(|i| pool.submit(move || i.pow(2)).unwrap())
            .collect();
        gate.open();
        for t in held {
            t.result().unwrap();
        }
        for t in busy {
            t.result().unwrap();
        }
        common::wait_all_asleep("chi-worker", 4);
        let m = pool.metrics();
        assert_eq!((m.workers, m.idle, m.queued), (4, 4, 0), "{m:?}");
    }
}

// ===== scope =====

mod scope {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    #[test]
    fn scope_borrows_stack() {
        let pool = ThreadPool::new(3).unwrap();
        let input: Vec<u64> = (1..=30).collect();
        let mut sums = [0u64; 3];
        pool.scope(|s| {
            for (chunk, out) in input.chunks(10).zip(sums.iter_mut()) {
                s.spawn(move || *out = chunk.iter().sum());
            }
        });
        assert_eq!(sums, [55, 155, 255]);
    }

    /// `scope` returns only after every scoped task has run, even when the body returns at once.
    #[test]
    fn scope_joins_all_before_return() {
        let pool = ThreadPool::new(2).unwrap();
        let gate = Gate::new();
        let finished = AtomicUsize::new(0);
        thread::scope(|ts| {
            // Opens the gate only once both held tasks run, i.e. while `scope` must be waiting.
            ts.spawn(|| {
                gate.wait_started(2);
                gate.open();
            });
            pool.scope(|s| {
                for _ in 0..2 {
                    let h = gate.handle();
                    let finished = &finished;
                    s.spawn(move || {
                        h.wait();
                        finished.fetch_add(1, Ordering::SeqCst);
                    });
                }
                for _ in 0..20 {
                    s.spawn(|| finished.fetch_add(1, Ordering::SeqCst));
                }
            });
            assert_eq!(finished.load(Ordering::SeqCst), 22);
        });
    }

    #[test]
    fn scope_returns_body_value_and_results() {
        let pool = ThreadPool::new(2).unwrap();
        let words = ["a", "bb", "ccc"];
        let total = pool.scope(|s| {
            let tasks: Vec<_> = words.iter().map(|w| s.spawn(move || w.len())).collect();
            tasks
                .into_iter()
                .map(|t| t.result().unwrap())
                .sum::<usize>()
        });
        assert_eq!(total, 6);
    }

    #[test]
    fn scope_task_panic_propagates() {
        let pool = ThreadPool::new(2).unwrap();
        let other_ran = AtomicBool::new(false);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                s.spawn(|| panic!("scoped boom"));
                s.spawn(|| other_ran.store(true, Ordering::SeqCst));
            })
        }));
        let payload = caught.expect_err("scope must panic when a scoped task panicked");
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        assert!(msg.contains("scoped boom"), "{msg:?}");
        assert_eq!(
            msg, "scoped boom",
            "the original payload, not a wrapper message"
        );
        assert!(
            other_ran.load(Ordering::SeqCst),
            "the other scoped task was lost"
        );
        // The pool survived.
        assert_eq!(pool.submit(|| 5).unwrap().result(), Ok(5));
    }

    /// As `std::thread::scope`: the scope re-raises the task's own payload, whatever its type.
    #[test]
    fn scope_task_panic_reraises_original_payload() {
        let pool = ThreadPool::new(2).unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(|s| {
                s.spawn(|| std::panic::panic_any(42i64));
            })
        }));
        let payload = caught.expect_err("scope must panic");
        assert_eq!(payload.downcast_ref::<i64>(), Some(&42));
    }

    #[test]
    fn scope_body_panic_still_waits() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let done = AtomicBool::new(false);
        thread::scope(|ts| {
            ts.spawn(|| {
                gate.wait_started(1);
                gate.open();
            });
            let caught = catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    let h = gate.handle();
                    let done = &done;
                    s.spawn(move || {
                        h.wait();
                        done.store(true, Ordering::SeqCst);
                    });
                    panic!("body exploded");
                })
            }));
            assert!(caught.is_err());
            assert!(
                done.load(Ordering::SeqCst),
                "scope unwound before its task finished"
            );
        });
    }

    #[test]
    fn scope_nested_spawn_from_task() {
        let pool = ThreadPool::new(2).unwrap();
        let counter = AtomicUsize::new(0);
        pool.scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        s.spawn(|| counter.fetch_add(1, Ordering::SeqCst));
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::SeqCst), 20);
    }

    /// A scoped task on a pool of one spawns and waits for another scoped task.
    #[test]
    fn scope_nested_wait_pool_of_one() {
        let pool = Arc::new(ThreadPool::new(1).unwrap());
        let p = pool.clone();
        let got = bounded("nested scoped waits on a pool of one", move || {
            let base = 40;
            p.scope(|s| {
                s.spawn(|| s.spawn(|| base + 2).result().unwrap())
                    .result()
                    .unwrap()
            })
        });
        assert_eq!(got, 42);
        drop(pool);
    }

    #[test]
    fn scope_nested_submit_from_task() {
        let pool = Arc::new(ThreadPool::new(1).unwrap());
        let p = pool.clone();
        let got = bounded("a scoped task submitting to its pool", move || {
            let inner = &p;
            p.scope(|s| {
                s.spawn(|| inner.submit(|| 6 * 7).unwrap().result().unwrap())
                    .result()
                    .unwrap()
            })
        });
        assert_eq!(got, 42);
    }

    /// A task of a pool of one opens a scope on its own pool: the waiting worker runs the
    /// scoped tasks itself.
    #[test]
    fn scope_inside_task_pool_of_one() {
        let pool = Arc::new(ThreadPool::new(1).unwrap());
        let p = pool.clone();
        let outer = pool
            .submit(move || {
                let mut parts = [0u32; 4];
                p.scope(|s| {
                    for (i, part) in parts.iter_mut().enumerate() {
                        s.spawn(move || *part = i as u32 * 10);
                    }
                });
                parts.iter().sum::<u32>()
            })
            .unwrap();
        assert_eq!(
            bounded("a scope inside a task on a pool of one", move || outer
                .result()),
            Ok(60)
        );
    }

    #[test]
    fn scope_after_shutdown_tasks_cancelled() {
        let pool = ThreadPool::new(1).unwrap();
        pool.shutdown();
        let ran = AtomicBool::new(false);
        let outcome = pool.scope(|s| s.spawn(|| ran.store(true, Ordering::SeqCst)).result());
        assert_eq!(outcome, Err(TaskError::Cancelled));
        assert!(!ran.load(Ordering::SeqCst));
    }
}

// ===== wait_idle and shutdown_background =====

mod wait_idle {
    use super::*;
    use common::hold_workers;

    /// Tasks that submit tasks: `wait_idle` returns only once the whole tree is done, and
    /// the pool still takes work afterwards.
    #[test]
    fn wait_idle_waits_for_tasks_that_submit_tasks() {
        let pool = Arc::new(ThreadPool::new(2).unwrap());
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..8 {
            let (p, d) = (pool.clone(), done.clone());
            drop(
                pool.submit(move || {
                    for _ in 0..8 {
                        let d = d.clone();
                        drop(p.submit(move || d.fetch_add(1, Ordering::SeqCst)).unwrap());
                    }
                    d.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap(),
            );
        }
        bounded("wait_idle", {
            let pool = pool.clone();
            move || pool.wait_idle()
        });
        assert_eq!(done.load(Ordering::SeqCst), 8 + 64);
        assert!(!pool.is_shut_down());
        assert_eq!(pool.submit(|| 3).unwrap().result(), Ok(3));
    }

    /// A held task keeps `wait_idle` waiting; releasing it lets `wait_idle` return.
    #[test]
    fn wait_idle_blocks_while_a_task_runs() {
        let pool = Arc::new(ThreadPool::new(2).unwrap());
        let gate = Gate::new();
        let _held = hold_workers(&pool, &gate, 1);
        let (tx, rx) = mpsc::channel();
        let p = pool.clone();
        let waiter = thread::spawn(move || {
            p.wait_idle();
            tx.send(()).unwrap();
        });
        // Tasks submitted meanwhile run on the free worker; the held one keeps it waiting.
        assert_eq!(pool.submit(|| 1).unwrap().result(), Ok(1));
        assert!(
            rx.try_recv().is_err(),
            "wait_idle returned with a task running"
        );
        gate.open();
        recv(&rx, "wait_idle after the release");
        waiter.join().unwrap();
    }

    /// Cancelled and panicking tasks count as finished.
    #[test]
    fn wait_idle_counts_cancelled_and_panicked() {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let held = hold_workers(&pool, &gate, 1);
        let queued: Vec<_> = (0..5).map(|_| pool.submit(|| 0u8).unwrap()).collect();
        for t in &queued {
            assert!(t.cancel());
        }
        drop(pool.submit(|| -> u8 { panic!("counted") }).unwrap());
        gate.open();
        pool.wait_idle();
        assert!(held.iter().all(Task::done));
        assert_eq!(pool.metrics().queued, 0);
    }

    /// From inside a task on a pool of one: waits for every other task (running them itself)
    /// and returns, instead of waiting for itself.
    #[test]
    fn wait_idle_inside_a_task_waits_for_the_others() {
        let pool = Arc::new(ThreadPool::new(1).unwrap());
        let p = pool.clone();
        let outer = pool
            .submit(move || {
                let n = Arc::new(AtomicUsize::new(0));
                for _ in 0..10 {
                    let n = n.clone();
                    drop(p.submit(move || n.fetch_add(1, Ordering::SeqCst)).unwrap());
                }
                p.wait_idle();
                n.load(Ordering::SeqCst)
            })
            .unwrap();
        assert_eq!(
            bounded("wait_idle inside a task", move || outer.result()),
            Ok(10)
        );
    }

    #[test]
    fn wait_idle_on_an_unused_pool_returns_at_once() {
        let pool = ThreadPool::new(3).unwrap();
        pool.wait_idle();
        assert_eq!(pool.metrics().workers, 0);
    }

    /// Returns at once with a task held; the task still finishes and its handle gets the
    /// result; new work is refused.
    #[test]
    fn shutdown_background_returns_while_work_runs() {
        let pool = ThreadPool::builder()
            .max_workers(1)
            .thread_name("bg-shutdown")
            .build()
            .unwrap();
        let gate = Gate::new();
        let held = hold_workers(&pool, &gate, 1);
        let queued = pool.submit(|| 7).unwrap();
        let (tx, rx) = mpsc::channel();
        let killer = thread::spawn(move || {
            pool.shutdown_background();
            tx.send(()).unwrap();
        });
        recv(&rx, "shutdown_background to return with a task held");
        killer.join().unwrap();
        gate.open();
        assert_eq!(queued.result(), Ok(7));
        for t in held {
            assert_eq!(t.result(), Ok(()));
        }
        poll_until("the background worker to exit", || {
            common::threads_named("bg-shutdown").is_empty()
        });
    }
}
