//! The largest settings the pool builders accept, and deadline arithmetic that cannot
//! overflow.
//!
//! Every duration and size a [`ThreadPoolBuilder`](crate::ThreadPoolBuilder) or
//! [`ProcessPoolBuilder`](crate::ProcessPoolBuilder) takes has a maximum here; `build` fails
//! with a [`BuildError`] naming the setting and its maximum above it. The methods that take a
//! timeout at run time (`Task::result_timeout`, `Task::wait_timeout`,
//! `ThreadPool::submit_timeout`, `as_completed_timeout`, `wait`, …) accept any `Duration`:
//! one too large to add to the clock (such as `Duration::MAX`) means "wait forever".

use crate::error::{BuildError, BuildErrorKind};
use std::time::{Duration, Instant};

/// The longest duration a builder accepts (keep-alive, task timeout, start-up timeout):
/// 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The most worker threads a [`ThreadPool`](crate::ThreadPool) may have: 65,536.
pub const MAX_THREAD_WORKERS: usize = 1 << 16;

/// The most worker processes a [`ProcessPool`](crate::ProcessPool) may have: 4,096.
pub const MAX_PROCESS_WORKERS: usize = 1 << 12;

/// The largest queue bound either pool accepts: 2³² tasks.
pub const MAX_QUEUE_BOUND: usize = 1 << 32;

/// The largest worker stack size a thread pool accepts: 1 GiB.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// The most messages a [`ProcessPool`](crate::ProcessPool) may send ahead to one worker
/// ([`max_in_flight`](crate::ProcessPoolBuilder::max_in_flight)): 128, the size of the
/// worker's claim ring.
pub const MAX_IN_FLIGHT: usize = 128;

/// Fails with a clear message if `value` of setting `name` is over `max`.
pub(crate) fn check_duration(name: &str, value: Duration) -> Result<(), BuildError> {
    if value > MAX_DURATION {
        return Err(BuildErrorKind::Invalid(format!(
            "{name} is {value:?}, over the maximum of 365 days (chi::limits::MAX_DURATION)"
        ))
        .into());
    }
    Ok(())
}

/// Fails with a clear message if `value` of setting `name` is over `max` (`max_name` is the
/// constant's name in this module).
pub(crate) fn check_size(
    name: &str,
    value: usize,
    max: usize,
    max_name: &str,
) -> Result<(), BuildError> {
    if value > max {
        return Err(BuildErrorKind::Invalid(format!(
            "{name} is {value}, over the maximum of {max} (chi::limits::{max_name})"
        ))
        .into());
    }
    Ok(())
}

/// `now + timeout`, or `None` ("never") when that is past what the clock can represent.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
