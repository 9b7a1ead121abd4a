//! [`Task<T>`]: the handle that `submit` returns, Python's `Future` for Rust.
//!
//! A task is pending, then running, then finished with `Result<T, TaskError>`; or it is
//! cancelled before it ever runs. The handle can block for the outcome (`result`), poll it
//! (`done`, `running`, `cancelled`, `error`), cancel it, attach done-callbacks, or `.await` it.
//!
//! Dropping a `Task` does **not** cancel the work: the task still runs, and its result is
//! dropped when it completes (exactly once). Call [`Task::cancel`] to stop work that has not
//! started.
//!
//! User values whose `Drop` panics: wherever chi drops a closure, a result, a callback or an
//! argument itself (cancel, `shutdown_now`, a failed pool, a result nobody holds a handle to),
//! the panic is caught and logged and the handle still completes. Dropping your own `Task`
//! after it finished drops its value on your thread, and a panic there is yours.
//!
//! Implementation notes (see `cell.rs` for who may touch which field): one heap allocation per
//! task holds the state word, the result slot, the slow part and, for the thread pool, the
//! closure. The handle is an `Arc` of it; the queued job is the same `Arc`.

mod cell;
mod completer;
mod state;
mod waiter;

#[cfg(test)]
mod tests;

pub(crate) use cell::{Core, FnCell, RunResult, Runnable, TaskCell};
pub use completer::Completer;
#[cfg(all(feature = "process-pool", target_os = "linux"))]
pub(crate) use state::{TransitionToCancelled, TransitionToRunning};

use crate::TaskError;
use crate::error::ResultTimeoutError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A handle to work submitted to a pool.
///
/// ```
/// let pool = chi::ThreadPool::new(2).unwrap();
/// let task = pool.submit(|| 6 * 7).unwrap();
/// task.add_done_callback(|outcome| println!("finished with {outcome:?}"));
/// assert_eq!(task.result(), Ok(42));
/// ```
///
/// `Task<T>` is also a [`Future`]: `task.await` gives the same `Result<T, TaskError>` as
/// [`result`](Task::result), without blocking the executor's thread.
pub struct Task<T> {
    cell: Arc<dyn TaskCell<T>>,
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.core().snapshot();
        let state = if s.is_cancelled() {
            "cancelled"
        } else if s.is_complete() {
            "finished"
        } else if s.is_running() {
            "running"
        } else {
            "pending"
        };
        f.debug_struct("Task").field("state", &state).finish()
    }
}

impl<T: Send + 'static> Task<T> {
    /// Wraps the allocation behind a task.
    pub(crate) fn from_cell(cell: Arc<dyn TaskCell<T>>) -> Self {
        Task { cell }
    }

    /// A task that is already finished with `outcome` (for pools that refuse work but still
    /// owe the caller a handle, such as one whose worker initializer failed).
    pub(crate) fn ready(outcome: Result<T, TaskError>) -> Self {
        let core = Core::new();
        core.complete(outcome);
        Task::from_cell(Arc::new(core))
    }
}

impl<T> Task<T> {
    fn core(&self) -> &Core<T> {
        self.cell.core()
    }

    /// Blocks until the task finishes and returns its value, or why there is none.
    ///
    /// On a worker thread of the pool that runs this task, the wait runs other queued work of
    /// that pool instead of blocking, so a task may submit a task and wait for it even on a
    /// pool of one worker. (A thread-pool worker helps its own pool whatever task it waits
    /// for, also one of a process pool or a [`Completer`].)
    pub fn result(self) -> Result<T, TaskError> {
        self.wait_until(None);
        self.take()
    }

    /// Like [`result`](Task::result), but gives up after `timeout`, handing the task back.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = chi::ThreadPool::new(1).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let task = pool.submit(move || rx.recv().unwrap()).unwrap();
    /// let task = match task.result_timeout(Duration::from_millis(10)) {
    ///     Err(chi::ResultTimeoutError::Timeout(task)) => task,
    ///     other => panic!("{other:?}"),
    /// };
    /// tx.send(()).unwrap();
    /// assert_eq!(task.result(), Ok(()));
    /// ```
    pub fn result_timeout(self, timeout: Duration) -> Result<T, ResultTimeoutError<T>> {
        if self.wait_until(deadline_after(timeout)) {
            self.take().map_err(ResultTimeoutError::Failed)
        } else {
            Err(ResultTimeoutError::Timeout(self))
        }
    }

    /// Blocks until the task is finished (or cancelled), without taking the value.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Blocks at most `timeout` for the task to finish; true if it did.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(deadline_after(timeout))
    }

    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.core().snapshot().is_takeable() {
            return true;
        }
        // Helping runs other tasks, which may take any time: only an unbounded wait helps.
        if deadline.is_none() {
            crate::help::help_while(|| self.core().snapshot().is_takeable());
        }
        self.core().wait(deadline)
    }

    fn take(self) -> Result<T, TaskError> {
        self.core().take()
    }

    /// True once the task has finished: with a value, an error, or by cancellation.
    pub fn done(&self) -> bool {
        self.core().snapshot().is_complete()
    }

    /// True while a worker is running the task.
    pub fn running(&self) -> bool {
        self.core().snapshot().is_running()
    }

    /// True if the task was cancelled before it ran.
    pub fn cancelled(&self) -> bool {
        let s = self.core().snapshot();
        s.is_cancelled() && s.is_complete()
    }

    /// The error the task ended with; `None` while it runs or when it produced a value
    /// (Python's `Future.exception()`, without blocking).
    pub fn error(&self) -> Option<TaskError> {
        self.core().error()
    }

    /// Cancels the task if it has not started. Returns true if the task is cancelled (now or
    /// before): it will never run, and `result` gives [`TaskError::Cancelled`]. Returns false
    /// if it is running or finished. (A process-pool task that is running is stopped by
    /// killing its worker, and this returns true.)
    pub fn cancel(&self) -> bool {
        self.cell.cancel()
    }

    /// Cancels the task only if it has not started, and never stops a running one, like
    /// Python's `Future.cancel()`. Returns true if the task is cancelled (now or before) and
    /// never runs; its outcome is then [`TaskError::Cancelled`].
    ///
    /// - Thread pool: the same as [`cancel`](Self::cancel).
    /// - Process pool: a task queued in the pool, or sent to a worker process that has not
    ///   taken it yet, is taken back; one its worker has begun runs on (where `cancel` would
    ///   kill that worker). A task put back in the queue because its worker died before taking
    ///   it still counts as running, and gives false. A task taken back after it was marked
    ///   running reports `running()` until the worker's skip comes back, and `cancelled()`
    ///   false; its outcome is `Cancelled` all the same.
    /// - A [`Completer`](crate::Completer)'s task counts as started only once its producer
    ///   marks it running; before that this is `cancel`, cancel hook included. A producer
    ///   that gave a take-back hook ([`Completer::with_cancel_hooks`](crate::Completer::with_cancel_hooks))
    ///   is asked first, and a false answer ("it may have started") gives false and leaves
    ///   the task alone. A `chi-cluster` handle is such a task: it is cancelled only while
    ///   no worker has read it from the queue.
    pub fn cancel_pending(&self) -> bool {
        self.cell.cancel_pending()
    }

    /// Runs `f` with the outcome once the task finishes: at once on this thread if it already
    /// has, otherwise on the thread that finishes it. Runs exactly once. A panic in `f` is
    /// caught and logged; it does not affect the task, the worker, or other callbacks.
    pub fn add_done_callback<F>(&self, f: F)
    where
        F: FnOnce(&Result<T, TaskError>) + Send + 'static,
        T: Sync,
    {
        self.core().add_callback(Box::new(f));
    }

    /// Internal form of `add_done_callback` for T that need not be Sync: the callback only
    /// sees whether the task is done, never the value.
    pub(crate) fn on_done(&self, f: impl FnOnce() + Send + 'static) {
        self.core().add_callback(Box::new(move |_| f()));
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, TaskError>;

    /// Ready with the outcome once the task finishes. Polling again after `Ready` is a misuse
    /// of the `Future` contract; it returns `Err(TaskError::ResultTaken)` (never the value
    /// twice, never a panic).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.core().poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(self.core().take()),
        }
    }
}

impl<T> Drop for Task<T> {
    /// A finished task's value is dropped here, on the dropping thread: if its `Drop` panics,
    /// the panic is the caller's (as for any value they drop). A task dropped before it
    /// finishes leaves its value to the pool, which drops it on completion and catches (and
    /// logs) a panic from that `Drop`.
    fn drop(&mut self) {
        if self.core().snapshot().is_takeable() {
            self.core().drop_outcome();
        }
    }
}

// The handle holds no self-references; moving it while pinned is fine.
impl<T> Unpin for Task<T> {}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
