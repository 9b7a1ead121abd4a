//! [`ThreadPoolBuilder`]: every setting of a thread pool, validated by `build`.

use super::ThreadPool;
use crate::error::{BuildError, BuildErrorKind};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A per-worker initializer, run once on each worker thread before it takes work.
pub(crate) type Initializer = Arc<dyn Fn() + Send + Sync>;

/// Settings for a [`ThreadPool`].
///
/// ```
/// use std::time::Duration;
/// let pool = chi::ThreadPool::builder()
///     .max_workers(4)
///     .queue_bound(100)
///     .thread_name("render")
///     .keep_alive(Duration::from_secs(5))
///     .initializer(|| println!("worker up"))
///     .build()
///     .unwrap();
/// assert_eq!(pool.submit(|| 1 + 1).unwrap().result(), Ok(2));
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ThreadPoolBuilder {
    pub(crate) max_workers: Option<usize>,
    pub(crate) queue_bound: Option<usize>,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) keep_alive: Duration,
    pub(crate) initializer: Option<Initializer>,
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("max_workers", &self.max_workers)
            .field("queue_bound", &self.queue_bound)
            .field("thread_name", &self.thread_name)
            .field("stack_size", &self.stack_size)
            .field("keep_alive", &self.keep_alive)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        ThreadPoolBuilder {
            max_workers: None,
            queue_bound: None,
            thread_name: "chi-worker".to_owned(),
            stack_size: None,
            keep_alive: Duration::from_secs(10),
            initializer: None,
        }
    }
}

impl ThreadPoolBuilder {
    /// The defaults: as many workers as the machine has cores, no queue bound, threads named
    /// `chi-worker-N`, the platform's stack size, idle workers exit after 10 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most worker threads the pool runs at once. Default: the machine's available
    /// parallelism. Unlike Python's `min(32, cpu + 4)` (sized for I/O-bound threads that
    /// block) or the classic thread-pool server's `cpu × 5`, chi sizes for CPU-bound work, where more threads than
    /// cores only add switching; pools of blocking I/O tasks should set a larger number. At
    /// most [`MAX_THREAD_WORKERS`](crate::limits::MAX_THREAD_WORKERS).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Bounds the number of queued (not yet started) tasks. When the queue is full, `submit`
    /// blocks, `try_submit` fails with `Full`, `submit_timeout` waits at most its timeout.
    /// Tasks submitted from inside a task of the same pool never block (they could deadlock
    /// the pool) but still count. Default: unbounded. At most
    /// [`MAX_QUEUE_BOUND`](crate::limits::MAX_QUEUE_BOUND).
    pub fn queue_bound(mut self, bound: usize) -> Self {
        self.queue_bound = Some(bound);
        self
    }

    /// The prefix of worker thread names: `<prefix>-<N>`. Default `chi-worker`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// The stack size of each worker thread, in bytes. At most
    /// [`MAX_STACK_SIZE`](crate::limits::MAX_STACK_SIZE) (1 GiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// How long a worker with nothing to do waits before its thread exits. A new one starts
    /// when work arrives. Default 10 s; at most [`MAX_DURATION`](crate::limits::MAX_DURATION)
    /// (365 days).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Runs `f` on each worker thread when it starts. If it panics the pool is failed: every
    /// queued task and every later submission ends with [`crate::TaskError::PoolFailed`]
    /// naming the panic.
    pub fn initializer(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.initializer = Some(Arc::new(f));
        self
    }

    /// Checks the settings and creates the pool. No thread starts until work arrives.
    pub fn build(self) -> Result<ThreadPool, BuildError> {
        if self.max_workers == Some(0) {
            return Err(BuildErrorKind::ZeroWorkers.into());
        }
        if self.queue_bound == Some(0) {
            return Err(BuildErrorKind::ZeroQueueBound.into());
        }
        if self.stack_size == Some(0) {
            return Err(BuildErrorKind::Invalid("stack_size must be more than 0".into()).into());
        }
        self.check_limits()?;
        if self.thread_name.contains('\0') {
            return Err(BuildErrorKind::Invalid("thread_name contains a NUL byte".into()).into());
        }
        Ok(ThreadPool::from_builder(self))
    }

    /// Every number is at most its maximum in [`crate::limits`].
    fn check_limits(&self) -> Result<(), BuildError> {
        use crate::limits::{self, check_size};
        if let Some(n) = self.max_workers {
            check_size(
                "max_workers",
                n,
                limits::MAX_THREAD_WORKERS,
                "MAX_THREAD_WORKERS",
            )?;
        }
        if let Some(n) = self.queue_bound {
            check_size("queue_bound", n, limits::MAX_QUEUE_BOUND, "MAX_QUEUE_BOUND")?;
        }
        if let Some(n) = self.stack_size {
            check_size("stack_size", n, limits::MAX_STACK_SIZE, "MAX_STACK_SIZE")?;
        }
        limits::check_duration("keep_alive", self.keep_alive)
    }

    pub(crate) fn workers(&self) -> usize {
        self.max_workers.unwrap_or_else(default_workers)
    }
}

/// The machine's available parallelism (1 if unknown).
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
