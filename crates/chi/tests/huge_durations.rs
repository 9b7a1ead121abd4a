//! Durations at and past the clock's limit, through every public thread-pool API that takes
//! one. A builder refuses a setting over its documented maximum (`chi::limits`) with a clear
//! `BuildError`; a run-time timeout too large for the clock means "wait forever": it waits
//! for the outcome and never panics.
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

mod common;

use chi::limits::{MAX_DURATION, MAX_QUEUE_BOUND, MAX_STACK_SIZE, MAX_THREAD_WORKERS};
use chi::{ReturnWhen, ThreadPool};
use common::{Gate, HUGE, bounded};
use std::time::Duration;

fn invalid(r: Result<ThreadPool, chi::BuildError>) -> String {
    common::invalid_setting(r)
}

#[test]
fn builder_refuses_keep_alive_over_the_maximum() {
    for d in HUGE
        .into_iter()
        .chain([MAX_DURATION + Duration::from_nanos(1)])
    {
        let msg = invalid(ThreadPool::builder().keep_alive(d).build());
        assert!(
            msg.contains("keep_alive") && msg.contains("365 days"),
            "{msg}"
        );
    }
}

#[test]
fn builder_refuses_sizes_over_their_maximum() {
    let msg = invalid(
        ThreadPool::builder()
            .max_workers(MAX_THREAD_WORKERS + 1)
            .build(),
    );
    assert!(msg.contains("max_workers"), "{msg}");
    let msg = invalid(ThreadPool::builder().max_workers(usize::MAX).build());
    assert!(msg.contains("MAX_THREAD_WORKERS"), "{msg}");
    let msg = invalid(ThreadPool::builder().queue_bound(usize::MAX).build());
    assert!(msg.contains("queue_bound"), "{msg}");
    let msg = invalid(ThreadPool::builder().stack_size(MAX_STACK_SIZE + 1).build());
    assert!(msg.contains("stack_size"), "{msg}");
}

#[test]
fn builder_accepts_every_maximum_and_the_pool_works() {
    let pool = ThreadPool::builder()
        .max_workers(1)
        .thread_name("huge-keep-alive")
        .keep_alive(MAX_DURATION)
        .queue_bound(MAX_QUEUE_BOUND)
        .build()
        .unwrap();
    assert_eq!(pool.submit(|| 1).unwrap().result(), Ok(1));
    // The worker goes idle with a 365-day keep-alive (no overflow), then takes more work.
    common::wait_all_asleep("huge-keep-alive", 1);
    assert_eq!(pool.submit(|| 2).unwrap().result(), Ok(2));
    assert!(
        ThreadPool::builder()
            .max_workers(MAX_THREAD_WORKERS)
            .build()
            .is_ok()
    );
}

#[test]
fn result_and_wait_timeouts_past_the_clock_wait_for_the_outcome() {
    for d in HUGE {
        bounded("huge result/wait timeouts", move || {
            let pool = ThreadPool::new(1).unwrap();
            let gate = Gate::new();
            let t = pool.submit(gate.hold_then(|| 7)).unwrap();
            gate.wait_started(1);
            std::thread::scope(|s| {
                s.spawn(|| gate.open());
                assert!(t.wait_timeout(d));
            });
            assert_eq!(t.result_timeout(d).map_err(|e| e.to_string()), Ok(7));
        });
    }
}

#[test]
fn submit_timeout_past_the_clock_waits_for_room() {
    for d in HUGE {
        bounded("a huge submit_timeout on a full queue", move || {
            let pool = ThreadPool::builder()
                .max_workers(1)
                .queue_bound(1)
                .build()
                .unwrap();
            let gate = Gate::new();
            let held = pool.submit(gate.hold()).unwrap();
            gate.wait_started(1);
            let queued = pool.submit_timeout(|| 1, d).map_err(|_| "refused").unwrap();
            std::thread::scope(|s| {
                s.spawn(|| gate.open());
                let t = pool.submit_timeout(|| 2, d).map_err(|_| "refused").unwrap();
                assert_eq!(t.result(), Ok(2));
            });
            assert_eq!(queued.result(), Ok(1));
            held.result().unwrap();
        });
    }
}

#[test]
fn bulk_timeouts_past_the_clock_wait_for_everything() {
    for d in HUGE {
        bounded("huge map / as_completed / wait timeouts", move || {
            let pool = ThreadPool::new(2).unwrap();
            let got: Vec<u32> = pool
                .map(|x: u32| x + 1, 0..8)
                .timeout(d)
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, (1..=8).collect::<Vec<_>>());
            let tasks: Vec<_> = (0..4u32).map(|i| pool.submit(move || i).unwrap()).collect();
            let mut seen: Vec<u32> = chi::as_completed_timeout(tasks, d)
                .map(|t| t.unwrap().result().unwrap())
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2, 3]);
            let tasks: Vec<_> = (0..4u32).map(|i| pool.submit(move || i).unwrap()).collect();
            let (done, not_done) = chi::wait(tasks, ReturnWhen::AllCompleted, Some(d));
            assert_eq!((done.len(), not_done.len()), (4, 0));
        });
    }
}
