//! The one-line setup forgotten: this test binary has no `chi::process_pool_test_entry!()`.
//! Its only test whose name matches the workers' filter stands for a `main` that skipped
//! `chi::process_pool::init()` and builds a pool of its own. That must neither hang the
//! parent nor start workers of workers (a process explosion): the would-be worker exits at
//! once, and the parent's tasks fail with an error that names the missing line.

use chi::{ProcessPool, TaskError};
use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}

/// What a worker of this binary runs: a "main" without `init()` that builds a pool.
#[test]
fn __chi_process_pool_worker_entry_forgotten() {
    if chi::process_pool::is_worker() {
        let _pool = ProcessPool::new(2);
        unreachable!("building a pool in a worker that skipped init() exits the process");
    }
}

#[test]
fn setup_forgotten_fails_tasks_with_a_hint_and_starts_no_grandchildren() {
    let pool = ProcessPool::builder().max_workers(1).build().unwrap();
    let t = pool.submit(square, 3).unwrap();
    let err = match t.result_timeout(Duration::from_secs(60)) {
        Err(chi::ResultTimeoutError::Failed(e)) => e,
        other => panic!("expected a start-up failure, got {other:?}"),
    };
    match &err {
        TaskError::PoolFailed(m) => {
            assert!(
                m.to_string().contains("exit code 85"),
                "the guard ended the would-be worker: {m}"
            );
            assert!(
                m.to_string().contains("chi::process_pool::init()"),
                "the error names the fix: {m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.metrics().workers, 0);
}
