//! [`ThreadPool`]: a bounded pool of worker threads with a futures API.
//!
//! Flow of one task: `submit` wraps the closure in its one allocation (see `task/cell.rs`),
//! queues it (globally, or on the current worker's deque when a task submits a task), and
//! makes sure somebody will run it (a searching worker, a woken sleeper, or a new thread up to
//! the maximum). A worker takes it (local → injector → steal), runs it under `catch_unwind`,
//! stores the outcome, runs the done-callbacks and wakes the waiter.

mod builder;
mod counter;
mod map;
mod queue;
mod scope;
mod shared;
mod sleep;
mod worker;

#[cfg(test)]
mod tests;

pub use builder::ThreadPoolBuilder;
pub use map::Map;
pub use scope::{Scope, ScopedTask};

use crate::TaskError;
use crate::admit::{Admit, Refused};
use crate::error::{BuildError, SubmitError, SubmitTimeoutError, TrySubmitError};
use crate::task::{FnCell, Runnable, Task};
use shared::Shared;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A pool of worker threads.
///
/// ```
/// use chi::ThreadPool;
///
/// let pool = ThreadPool::new(5).unwrap();
/// let tasks: Vec<_> = (0..10).map(|i| pool.submit(move || i * 3).unwrap()).collect();
/// for (i, t) in tasks.into_iter().enumerate() {
///     assert_eq!(t.result(), Ok(i * 3));
/// }
/// pool.shutdown(); // also what dropping the pool does
/// ```
///
/// Workers start when work arrives, up to `max_workers`, and exit after the keep-alive with
/// nothing to do: an idle pool holds no running thread and uses no CPU. Dropping the pool
/// waits for queued and running work and joins every worker (see [`shutdown`](Self::shutdown)).
pub struct ThreadPool {
    shared: Arc<Shared>,
}

/// A snapshot of a pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Worker threads alive.
    pub workers: usize,
    /// Of those, how many are looking for work or parked.
    pub idle: usize,
    /// Tasks queued and not started.
    pub queued: usize,
    /// Tasks that returned a value.
    pub completed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("max_workers", &self.shared.max_workers())
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl ThreadPool {
    /// A pool of at most `max_workers` threads with the other settings at their defaults.
    /// Fails only if `max_workers` is 0.
    pub fn new(max_workers: usize) -> Result<ThreadPool, BuildError> {
        ThreadPoolBuilder::new().max_workers(max_workers).build()
    }

    /// All the settings: see [`ThreadPoolBuilder`].
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::new()
    }

    pub(crate) fn from_builder(b: ThreadPoolBuilder) -> ThreadPool {
        ThreadPool {
            shared: Arc::new(Shared::new(b, worker::run)),
        }
    }

    /// The most workers this pool runs at once.
    pub fn max_workers(&self) -> usize {
        self.shared.max_workers()
    }

    /// Queues `f` and returns its handle. Blocks while a bounded queue is full (the
    /// classic design's "the pool is full, submit waits"). Fails only when the pool is shut down, handing `f`
    /// back.
    pub fn submit<F, T>(&self, f: F) -> Result<Task<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_with(f, Admit::Until(None))
            .map_err(Refused::into_submit)
    }

    /// Queues `f` if there is room now.
    ///
    /// ```
    /// let pool = chi::ThreadPool::builder().max_workers(1).queue_bound(1).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let busy = pool.submit(move || { started_tx.send(()).unwrap(); rx.recv().unwrap() }).unwrap();
    /// started.recv().unwrap();              // the worker is busy
    /// let queued = pool.try_submit(|| 1).unwrap(); // fills the one queue place
    /// let err = pool.try_submit(|| 2).unwrap_err();
    /// assert!(err.is_full());
    /// assert_eq!((err.into_inner())(), 2);  // the work comes back
    /// tx.send(()).unwrap();
    /// assert_eq!(queued.result(), Ok(1));
    /// # busy.result().unwrap();
    /// ```
    pub fn try_submit<F, T>(&self, f: F) -> Result<Task<T>, TrySubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_with(f, Admit::Now)
            .map_err(Refused::into_try_submit)
    }

    /// Queues `f`, waiting at most `timeout` for room in a bounded queue.
    pub fn submit_timeout<F, T>(
        &self,
        f: F,
        timeout: Duration,
    ) -> Result<Task<T>, SubmitTimeoutError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_with(f, Admit::within(timeout))
            .map_err(Refused::into_submit_timeout)
    }

    fn submit_with<F, T>(&self, f: F, admit: Admit) -> Result<Task<T>, Refused<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = &self.shared;
        if shared.is_shut_down() {
            return Err(Refused::ShutDown(f));
        }
        if let Some(msg) = shared.failure() {
            return Ok(Task::ready(Err(TaskError::pool_failed(msg))));
        }
        if let Some(bound) = &shared.queues.bound {
            if shared.is_own_worker() {
                bound.force_acquire();
            } else {
                let ok = match admit {
                    Admit::Now => bound.try_acquire(),
                    Admit::Until(deadline) => bound.acquire(deadline, || {
                        shared.is_shut_down() || shared.failure().is_some()
                    }),
                };
                if !ok {
                    return Err(if shared.is_shut_down() {
                        Refused::ShutDown(f)
                    } else {
                        Refused::Full(f)
                    });
                }
                if let Some(msg) = shared.failure() {
                    bound.release();
                    return Ok(Task::ready(Err(TaskError::pool_failed(msg))));
                }
            }
        }
        let cell = Arc::new(FnCell::new(f));
        let job: Arc<dyn Runnable> = cell.clone();
        if shared.push(job) {
            cell.mark_cold();
        }
        Ok(Task::from_cell(cell))
    }

    /// Counters right now.
    pub fn metrics(&self) -> Metrics {
        let (completed, panicked) = self.shared.totals();
        Metrics {
            workers: self.shared.alive(),
            idle: self.shared.sleep.idle_count(),
            queued: self.shared.queues.len(),
            completed,
            panicked,
        }
    }

    /// Stops accepting work, lets the workers finish everything queued and running, and joins
    /// them. Idempotent. Later submissions fail with `SubmitError`. Called from a task of
    /// this pool, it does not wait for that task's own thread.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
        self.shared.join_workers();
    }

    /// Like [`shutdown`](Self::shutdown), but cancels every task that has not started (their
    /// handles report [`TaskError::Cancelled`]) and waits only for the running ones.
    /// Returns how many tasks it cancelled.
    pub fn shutdown_now(&self) -> usize {
        self.shared.begin_shutdown();
        let n = self.shared.cancel_queued(TaskError::Cancelled);
        self.shared.join_workers();
        n
    }

    /// Blocks until every task submitted before this call has finished (run, failed or been
    /// cancelled), without shutting the pool down: the threadpool crate's `join`. Tasks those
    /// tasks submit are waited for too. Called from a task of this pool, it waits for every
    /// other task and runs queued work meanwhile (it cannot wait for itself).
    ///
    /// ```
    /// let pool = chi::ThreadPool::new(2).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// for i in 0..10 {
    ///     let tx = tx.clone();
    ///     drop(pool.submit(move || tx.send(i).unwrap()).unwrap());
    /// }
    /// pool.wait_idle();
    /// assert_eq!(rx.try_iter().count(), 10, "every task ran before wait_idle returned");
    /// assert!(!pool.is_shut_down(), "the pool still takes work");
    /// ```
    pub fn wait_idle(&self) {
        self.shared.wait_idle();
    }

    /// Stops accepting work and returns at once (Python's `shutdown(wait=False)`): the
    /// workers finish what is queued and running in the background, then exit. Dropping the
    /// pool afterwards does not wait for them. Handles of the queued tasks still get their
    /// results.
    ///
    /// ```
    /// let pool = chi::ThreadPool::new(1).unwrap();
    /// let task = pool.submit(|| 5).unwrap();
    /// pool.shutdown_background();
    /// assert_eq!(task.result(), Ok(5));
    /// ```
    pub fn shutdown_background(self) {
        self.shared.begin_shutdown();
        self.shared.detach_workers();
    }

    /// True once `shutdown` or `shutdown_now` was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.is_shut_down()
    }
}

impl Drop for ThreadPool {
    /// The same as [`ThreadPool::shutdown`]: waits for the work, joins every thread.
    fn drop(&mut self) {
        self.shutdown();
    }
}
