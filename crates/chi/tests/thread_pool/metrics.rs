//! Metrics.

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
