//! [`ProcessPoolBuilder`]: every setting of a process pool, validated by `build`.

use super::ProcessPool;
use super::dispatch::Config;
use super::func;
use super::protocol::{self, InitCall};
use crate::error::{BuildError, BuildErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::{OsStr, OsString};
use std::time::Duration;

/// The default largest message (argument or result, or a whole `map` chunk): 256 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

/// Settings for a [`ProcessPool`].
///
/// ```no_run
/// use std::time::Duration;
///
/// fn setup(greeting: String) {
///     eprintln!("{greeting} from worker {}", std::process::id());
/// }
///
/// fn main() {
///     chi::process_pool::init();
///     let pool = chi::ProcessPool::builder()
///         .max_workers(4)
///         .task_timeout(Duration::from_secs(30))
///         .max_tasks_per_worker(1000)
///         .env("RUST_LOG", "info")
///         .initializer(setup, "hello".to_string())
///         .queue_bound(10_000)
///         .build()
///         .unwrap();
///     # drop(pool);
/// }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ProcessPoolBuilder {
    workers: Option<usize>,
    task_timeout: Option<Duration>,
    max_tasks_per_worker: Option<u64>,
    env: Vec<(OsString, Option<OsString>)>,
    init: Option<Result<InitCall, String>>,
    queue_bound: Option<usize>,
    max_message: usize,
    startup_timeout: Duration,
    max_in_flight: Option<usize>,
}

impl Default for ProcessPoolBuilder {
    fn default() -> Self {
        ProcessPoolBuilder {
            workers: None,
            task_timeout: None,
            max_tasks_per_worker: None,
            env: Vec::new(),
            init: None,
            queue_bound: None,
            max_message: DEFAULT_MAX_MESSAGE,
            startup_timeout: Duration::from_secs(30),
            max_in_flight: None,
        }
    }
}

impl ProcessPoolBuilder {
    /// The defaults: one worker per core, no task timeout, workers never recycled, the
    /// parent's environment, no initializer, no queue bound, 256 MiB messages, 30 s to start.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many worker processes (all start at once, unlike the thread pool's lazy workers).
    /// Default: the machine's available parallelism. At most
    /// [`MAX_PROCESS_WORKERS`](crate::limits::MAX_PROCESS_WORKERS).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The longest a task may run. A task still running then fails with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut); its worker is killed and replaced,
    /// and other tasks are unaffected. Measured from when the worker starts the task (for a
    /// `map` chunk: the whole chunk). Default: none. At most
    /// [`MAX_DURATION`](crate::limits::MAX_DURATION) (365 days).
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Replace each worker process after it has run `n` messages (tasks, or `map` chunks),
    /// like Python's `max_tasks_per_child`: a worker that leaks memory is recycled. Default:
    /// never.
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n);
        self
    }

    /// Sets an environment variable in the workers (on top of the parent's environment).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from the workers' environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Runs `f(arg)` in each worker when it starts, before it takes work (Python's
    /// `initializer` and `initargs`). If it panics or exits, the worker counts as failed to
    /// start: the pool retries with a growing delay (10 ms doubling to 2 s) while there is
    /// work, and while no worker is up, queued tasks fail with
    /// [`TaskError::PoolFailed`](crate::TaskError::PoolFailed) naming the reason.
    pub fn initializer<A>(mut self, f: fn(A), arg: A) -> Self
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        let call = func::init_ref(f).and_then(|func| {
            let mut bytes = Vec::new();
            protocol::encode_into(&arg, &mut bytes)
                .map_err(|e| format!("the initializer's argument did not encode: {e}"))?;
            Ok(InitCall { func, arg: bytes })
        });
        self.init = Some(call);
        self
    }

    /// Bounds the number of queued (not yet sent to a worker) tasks: `submit` blocks while
    /// the queue is full, `try_submit` fails with `Full`, `submit_timeout` waits at most its
    /// timeout. Default: unbounded. At most [`MAX_QUEUE_BOUND`](crate::limits::MAX_QUEUE_BOUND).
    pub fn queue_bound(mut self, bound: usize) -> Self {
        self.queue_bound = Some(bound);
        self
    }

    /// The largest message in bytes, each way: an encoded argument, an encoded result, or a
    /// whole `map` chunk. Larger ones fail with [`TaskError::Codec`](crate::TaskError::Codec)
    /// saying so. Default 256 MiB; at most 4 GiB − 64 bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// How long a new worker may take to start (process start, hand-shake and initializer)
    /// before it is killed and counted as failed. Default 30 s; more than 0 and at most
    /// [`MAX_DURATION`](crate::limits::MAX_DURATION) (365 days).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// The most messages (a `submit`, or one `map` chunk) sent ahead to one worker process,
    /// the one it runs included. By default the pool measures the time per message and keeps
    /// about 4 ms of work queued on each worker (2 to 128 messages), so a worker never waits
    /// for the parent between short tasks and its supervisor wakes once per few dozen
    /// results; this caps that number. Messages waiting behind one that turns out long are
    /// taken over by the first worker that has nothing left to do (they are revoked where
    /// they wait, never run twice; [`Metrics::rebalanced`](crate::process_pool::Metrics)
    /// counts them), so they wait only while every other worker is busy. `1` sends a
    /// message only to an idle worker: no task ever waits inside a worker behind another
    /// one, even while the other workers are busy or restarting (after a crash, a timeout or
    /// a cancel), at the price of one round trip to the parent between messages. At least 1,
    /// at most [`MAX_IN_FLIGHT`](crate::limits::MAX_IN_FLIGHT) (128).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// Every number is at most its maximum in [`crate::limits`].
    fn check_limits(&self, workers: usize) -> Result<(), BuildError> {
        use crate::limits::{self, check_size};
        check_size(
            "max_workers",
            workers,
            limits::MAX_PROCESS_WORKERS,
            "MAX_PROCESS_WORKERS",
        )?;
        if let Some(n) = self.queue_bound {
            check_size("queue_bound", n, limits::MAX_QUEUE_BOUND, "MAX_QUEUE_BOUND")?;
        }
        if let Some(n) = self.max_in_flight {
            check_size("max_in_flight", n, limits::MAX_IN_FLIGHT, "MAX_IN_FLIGHT")?;
        }
        if let Some(t) = self.task_timeout {
            limits::check_duration("task_timeout", t)?;
        }
        limits::check_duration("startup_timeout", self.startup_timeout)?;
        if self.startup_timeout.is_zero() {
            return Err(
                BuildErrorKind::Invalid("startup_timeout must be more than 0".into()).into(),
            );
        }
        Ok(())
    }

    /// Checks the settings and starts the pool. The workers start in the background.
    ///
    /// In a process that was started as a worker but whose `main` did not call
    /// [`init`](super::init) first, this exits the process with a message instead (each such
    /// worker would otherwise start workers of its own); the pool that started it reports the
    /// failed start.
    pub fn build(self) -> Result<ProcessPool, BuildError> {
        super::entry::refuse_pool_in_uninitialised_worker();
        let invalid = |m: &str| BuildError::from(BuildErrorKind::Invalid(m.to_owned()));
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 {
            return Err(BuildErrorKind::ZeroWorkers.into());
        }
        if self.queue_bound == Some(0) {
            return Err(BuildErrorKind::ZeroQueueBound.into());
        }
        if self.max_tasks_per_worker == Some(0) {
            return Err(invalid("max_tasks_per_worker must be at least 1"));
        }
        if self.max_in_flight == Some(0) {
            return Err(invalid("max_in_flight must be at least 1"));
        }
        if self.task_timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid("task_timeout must be more than 0"));
        }
        self.check_limits(workers)?;
        if self.max_message < 1024 || self.max_message > u32::MAX as usize - 64 {
            return Err(invalid(
                "max_message_size must be between 1 KiB and 4 GiB - 64 bytes",
            ));
        }
        let init = match self.init {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => return Err(invalid(&e)),
        };
        let program = std::env::current_exe().map_err(BuildErrorKind::Io)?;
        let cfg = Config {
            workers,
            task_timeout: self.task_timeout,
            max_tasks_per_worker: self.max_tasks_per_worker,
            env: self.env,
            init,
            queue_bound: self.queue_bound,
            max_message: self.max_message,
            startup_timeout: self.startup_timeout,
            max_in_flight: self.max_in_flight.unwrap_or(crate::limits::MAX_IN_FLIGHT),
            program,
        };
        ProcessPool::start(cfg)
    }
}
