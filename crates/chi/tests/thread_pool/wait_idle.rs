//! wait_idle and shutdown_background.

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
