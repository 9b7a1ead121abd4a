//! [`TaskDef`]: a task by name and type, the same constant on clients and workers.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// A task a cluster can run: a name, a plain function `fn(A) -> R`, and optionally a timeout
/// and retries after a panic.
///
/// Define it once as a `static` in code that both the client and the workers compile:
///
/// ```
/// use chi_cluster::TaskDef;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// static SQUARE: TaskDef<u64, u64> = TaskDef::new("square", square);
/// assert_eq!(SQUARE.name(), "square");
/// ```
///
/// The name and a hash of `A` and `R` travel with every task. A worker that does not know the
/// name, or knows it with other types, never runs it: the handle gets a clear error.
pub struct TaskDef<A, R> {
    name: &'static str,
    func: fn(A) -> R,
    timeout: Option<Duration>,
    retry_on_panic: bool,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> TaskDef<A, R> {
    /// A task called `name` that runs `func`.
    pub const fn new(name: &'static str, func: fn(A) -> R) -> TaskDef<A, R> {
        TaskDef {
            name,
            func,
            timeout: None,
            retry_on_panic: false,
            _types: PhantomData,
        }
    }

    /// The same task with a deadline: a run longer than `timeout` is killed and reports
    /// [`TaskError::TimedOut`](chi::TaskError::TimedOut) (in a process-pool worker).
    pub const fn with_timeout(self, timeout: Duration) -> TaskDef<A, R> {
        TaskDef {
            timeout: Some(timeout),
            ..self
        }
    }

    /// The same task, run again when it panics: a panicking run goes back to the queue (to any
    /// worker) until the task has had `max_attempts` runs
    /// ([`ClusterBuilder::max_attempts`](crate::ClusterBuilder::max_attempts), 3 by default,
    /// shared with the deliveries lost to dead workers); the last panic is the handle's
    /// error. Without it a panic is the handle's error at once: most panics are bugs that
    /// fail again.
    ///
    /// ```
    /// use chi_cluster::TaskDef;
    ///
    /// fn fetch(url: String) -> usize {
    ///     url.len() // stands for a call that may panic on a passing fault
    /// }
    /// static FETCH: TaskDef<String, usize> = TaskDef::new("fetch", fetch).retry_on_panic();
    /// assert!(FETCH.retries_on_panic());
    /// ```
    pub const fn retry_on_panic(self) -> TaskDef<A, R> {
        TaskDef {
            retry_on_panic: true,
            ..self
        }
    }

    /// True if [`retry_on_panic`](Self::retry_on_panic) was asked for.
    pub fn retries_on_panic(&self) -> bool {
        self.retry_on_panic
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The function.
    pub fn func(&self) -> fn(A) -> R {
        self.func
    }

    /// The deadline given by [`with_timeout`](Self::with_timeout).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// A hash of the argument and result types: equal on both sides only when they agree.
    pub fn signature(&self) -> u64 {
        signature::<A, R>()
    }
}

impl<A, R> fmt::Debug for TaskDef<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDef")
            .field("name", &self.name)
            .field("signature", &format_args!("{:016x}", self.signature()))
            .field("timeout", &self.timeout)
            .field("retry_on_panic", &self.retry_on_panic)
            .finish()
    }
}

/// FNV-1a of the type names of `A` and `R`. Type names are stable within one compiler and
/// crate graph; a client and worker built differently may disagree, which fails safe (the
/// task is refused, never run with the wrong types).
pub(crate) fn signature<A, R>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let names = [std::any::type_name::<A>(), "->", std::any::type_name::<R>()];
    for b in names.iter().flat_map(|s| s.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(x: u64) -> u64 {
        x
    }
    fn len(s: String) -> u64 {
        s.len() as u64
    }
    static ID: TaskDef<u64, u64> = TaskDef::new("id", id);
    static LEN: TaskDef<String, u64> =
        TaskDef::new("len", len).with_timeout(Duration::from_secs(2));

    #[test]
    fn signature_tells_types_apart() {
        assert_ne!(ID.signature(), LEN.signature());
        assert_eq!(ID.signature(), signature::<u64, u64>());
        assert_eq!(LEN.timeout(), Some(Duration::from_secs(2)));
        assert_eq!((ID.func())(4), 4);
    }
}
