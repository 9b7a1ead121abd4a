//! An idle pool uses no CPU.

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
