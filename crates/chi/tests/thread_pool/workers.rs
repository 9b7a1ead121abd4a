//! Worker threads: lazy start, keep-alive, growth.

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
