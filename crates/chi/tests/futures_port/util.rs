//! `util.py`: the fixtures.

use super::*;

/// `ExecutorMixin.worker_count`.
pub(crate) const WORKER_COUNT: usize = 5;

/// The executor of `ThreadPoolMixin`.
pub(crate) fn executor() -> ThreadPool {
    ThreadPool::new(WORKER_COUNT).unwrap()
}

/// `mul` of the CPython tests.
pub(crate) fn mul(x: i32, y: i32) -> i32 {
    x * y
}

/// `divmod` with Python's panic-on-zero turned into a Rust panic.
pub(crate) fn divmod(x: i32, y: i32) -> (i32, i32) {
    let y = std::hint::black_box(y);
    (x / y, x % y)
}

/// One task in each of CPython's fixture states. Fields drop in order: the gate opens
/// before the pool is shut down.
pub(crate) struct Futures {
    pub(crate) pending: Task<i32>,
    pub(crate) running: Task<i32>,
    pub(crate) cancelled: Task<i32>,
    /// `CANCELLED_AND_NOTIFIED_FUTURE`: the same state as `cancelled` in chi.
    pub(crate) cancelled_and_notified: Task<i32>,
    /// Panicked with "OSError" (CPython: `exception=OSError()`).
    pub(crate) exception: Task<i32>,
    /// Returned 42.
    pub(crate) successful: Task<i32>,
    _gate: Gate,
    _pool: ThreadPool,
}

impl Futures {
    pub(crate) fn new() -> Self {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let running = pool.submit(gate.hold_then(|| 7)).unwrap();
        gate.wait_started(1);
        let pending = pool.submit(|| 8).unwrap();
        let cancelled = pool.submit(|| 9).unwrap();
        assert!(cancelled.cancel());
        let cancelled_and_notified = pool.submit(|| 10).unwrap();
        assert!(cancelled_and_notified.cancel());
        let exception = common::finished(|| -> i32 { panic!("OSError") });
        let successful = common::finished(|| 42);
        Futures {
            pending,
            running,
            cancelled,
            cancelled_and_notified,
            exception,
            successful,
            _gate: gate,
            _pool: pool,
        }
    }
}

/// Outcomes of `tasks`, in order.
pub(crate) fn outcomes<T>(tasks: Vec<Task<T>>) -> Vec<Result<T, TaskError>> {
    tasks.into_iter().map(Task::result).collect()
}

/// A short name for an outcome, to compare sets of results.
pub(crate) fn describe(r: &Result<i32, TaskError>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(TaskError::Panicked { message, .. }) => format!("panic {message}"),
        Err(e) => e.to_string(),
    }
}

pub(crate) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
