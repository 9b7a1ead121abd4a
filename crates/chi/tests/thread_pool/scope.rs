//! Scope.

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
