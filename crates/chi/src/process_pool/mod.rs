//! [`ProcessPool`]: the [`ThreadPool`](crate::ThreadPool) API across processes, for plain
//! functions `fn(A) -> R` whose argument and result are serde types.
//!
//! ```rust,standalone_crate
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() {
//!     chi::process_pool::init(); // the one line: a worker process stops here
//!
//!     let pool = chi::ProcessPool::new(4).unwrap();
//!     let task = pool.submit(square, 12).unwrap();
//!     task.add_done_callback(|r| println!("got {r:?}"));
//!     assert_eq!(task.result(), Ok(144));
//!
//!     let squares: Vec<u64> = pool.map(square, 1..=1000).chunksize(100).map(Result::unwrap).collect();
//!     assert_eq!(squares[9], 100);
//! }
//! ```
//!
//! # Setup: one line
//!
//! Workers are the current executable started again with a marker in its environment, so
//! the program must let them in before it does anything else:
//!
//! - in a binary or an example: [`init()`] first thing in `main`;
//! - in a `cargo test` binary: [`process_pool_test_entry!()`](crate::process_pool_test_entry)
//!   once at the top level of the test file (it defines a hidden test that the workers run).
//!
//! Forgetting it is an error, not a hang: the first tasks fail with
//! [`TaskError::PoolFailed`] whose message names the missing line.
//!
//! # What crosses, and how
//!
//! A task is a `fn` item (or a closure that captures nothing) and an argument: the worker
//! runs the same function in its identical copy of the program. The first message checks
//! that parent and worker are the same build (GNU build id and a layout probe of the running
//! image); a mismatch fails tasks with a clear error, never jumps into wrong code. Arguments
//! and results are encoded with postcard, framed with a length prefix, and limited to
//! [`ProcessPoolBuilder::max_message_size`]. The workers' stdout and stderr are the
//! parent's: what tasks print shows up.
//!
//! # Faults
//!
//! | What happens | The task gets | The pool |
//! |---|---|---|
//! | argument does not encode (parent) | [`TaskError::Codec`] at once; nothing sent | unaffected |
//! | argument does not decode (worker) | [`TaskError::Codec`] | worker lives on |
//! | task panics | [`TaskError::Panicked`] with the message | worker lives on |
//! | result does not encode (worker) or decode (parent) | [`TaskError::Codec`] | worker lives on |
//! | result over the size limit | [`TaskError::Codec`] saying so | worker lives on |
//! | task exits, aborts, segfaults, is OOM-killed | [`TaskError::WorkerDied`] with the code or signal | worker replaced; tasks queued on it rerun elsewhere |
//! | task runs past the timeout | [`TaskError::TimedOut`] | worker killed and replaced |
//! | `cancel()` while it runs | [`TaskError::Cancelled`] | worker killed and replaced |
//! | initializer panics or exits | [`TaskError::PoolFailed`] while no worker can start | retried with back-off (10 ms → 2 s), no spawn storm |
//! | parent process dies | — | workers get SIGKILL (parent-death signal) and see EOF |
//! | pool dropped while its thread panics | running and queued: [`TaskError::Cancelled`] | workers killed at once, not waited for |
//!
//! # Processes a task starts
//!
//! Each worker leads a process group of its own. When a worker ends for any reason (it
//! crashed, timed out, was killed by a `cancel`, was recycled by `max_tasks_per_worker`, or
//! the pool shut down), the whole group gets SIGKILL before the worker is reaped: processes a
//! task started and left running end with it. A task that wants a process to outlive its
//! worker must move it to a group (or session) of its own. Because workers are not in the
//! terminal's foreground group, Ctrl-C reaches only the parent; the workers end through the
//! parent (its pool's drop, or the parent-death signal and EOF when it dies). When the parent
//! is killed outright, the parent-death signal ends each worker but not the processes its
//! tasks started (nothing is left to kill their group).
//!
//! No task ever sees a "broken pool": one worker's death fails at most the one message it
//! was running.
//!
//! [`TaskError::PoolFailed`]: crate::TaskError::PoolFailed
//! [`TaskError::Codec`]: crate::TaskError::Codec
//! [`TaskError::Panicked`]: crate::TaskError::Panicked
//! [`TaskError::WorkerDied`]: crate::TaskError::WorkerDied
//! [`TaskError::TimedOut`]: crate::TaskError::TimedOut
//! [`TaskError::Cancelled`]: crate::TaskError::Cancelled

mod bell;
mod builder;
mod cell;
mod dispatch;
mod entry;
mod func;
mod link;
mod map;
mod protocol;
mod ring;
mod supervisor;
mod sys;
mod worker;

#[cfg(test)]
mod tests;

pub use builder::{DEFAULT_MAX_MESSAGE, ProcessPoolBuilder};
pub use entry::{init, is_worker};
pub use map::Map;

use crate::error::{BuildError, BuildErrorKind, SubmitError, SubmitTimeoutError, TrySubmitError};
use crate::task::Task;
use crate::{Cause, TaskError};
use cell::{Job, ProcCell};
use dispatch::{Admit, Refusal, Shared};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::fd::EventFd;

/// A pool of worker processes.
///
/// ```rust,standalone_crate
/// fn pid_of_worker(_: ()) -> u32 {
///     std::process::id()
/// }
///
/// fn main() {
///     chi::process_pool::init();
///     let pool = chi::ProcessPool::new(2).unwrap();
///     let pid = pool.submit(pid_of_worker, ()).unwrap().result().unwrap();
///     assert_ne!(pid, std::process::id());
///     pool.shutdown(); // also what dropping the pool does
/// }
/// ```
///
/// See the [module docs](self) for the one-line setup, the wire format and the fault table.
pub struct ProcessPool {
    shared: Arc<Shared>,
}

/// A snapshot of a process pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Worker processes up and taking work.
    pub workers: usize,
    /// Messages (tasks or `map` chunks) queued and not yet sent to a worker.
    pub queued: usize,
    /// Messages sent to workers and not yet answered.
    pub in_flight: usize,
    /// Worker processes started so far (including replacements).
    pub spawned: u64,
    /// Worker processes that ended abnormally or with work in flight.
    pub died: u64,
    /// Worker starts that failed (hand-shake, initializer, build mismatch).
    pub start_failures: u64,
    /// Messages sent to workers so far (a message another worker took over counts again).
    pub messages: u64,
    /// Times a supervisor thread woke up to handle its worker so far (answers, timeouts,
    /// cancels, room to write). While workers are busy with short tasks, well under one per
    /// message: a worker rings its supervisor once per batch of answers.
    pub wakeups: u64,
    /// Messages a worker with nothing left to do took over from another worker's queue so
    /// far (sent there, not started; see the module docs).
    pub rebalanced: u64,
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.shared.cfg.workers)
            .field("metrics", &self.metrics())
            .finish()
    }
}

// Why a submission was refused, and how the submit triad reports it (shared with the thread pool).
use crate::admit::Refused;

impl ProcessPool {
    /// A pool of `max_workers` processes with the other settings at their defaults. Fails only
    /// if `max_workers` is 0 or the system refuses a resource. The workers start in the background.
    pub fn new(max_workers: usize) -> Result<ProcessPool, BuildError> {
        ProcessPoolBuilder::new().max_workers(max_workers).build()
    }

    /// All the settings: see [`ProcessPoolBuilder`].
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::new()
    }

    fn start(cfg: dispatch::Config) -> Result<ProcessPool, BuildError> {
        let wakers = (0..cfg.workers)
            .map(|_| EventFd::new().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildErrorKind::Io)?;
        let shared = Arc::new(Shared::new(cfg, wakers));
        if let Err(e) = supervisor::start_all(&shared) {
            shared.close(true);
            return Err(BuildErrorKind::Io(e).into());
        }
        Ok(ProcessPool { shared })
    }

    /// How many worker processes this pool runs.
    pub fn max_workers(&self) -> usize {
        self.shared.cfg.workers
    }

    /// Runs `f(arg)` in a worker process and returns its handle. Blocks while a bounded queue
    /// is full. Fails only when the pool is shut down, handing `arg` back.
    ///
    /// An argument that does not encode, or is over the size limit, gives a task that is
    /// already finished with [`TaskError::Codec`] (nothing is sent).
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<Task<R>, SubmitError<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_with(f, arg, Admit::Until(None))
            .map_err(Refused::into_submit)
    }

    /// Like [`submit`](Self::submit), but fails with `Full` at once if the queue is at its
    /// bound.
    pub fn try_submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<Task<R>, TrySubmitError<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_with(f, arg, Admit::Now)
            .map_err(Refused::into_try_submit)
    }

    /// Like [`submit`](Self::submit), but waits at most `timeout` for room in a bounded queue.
    pub fn submit_timeout<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        timeout: Duration,
    ) -> Result<Task<R>, SubmitTimeoutError<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let deadline = crate::limits::deadline_after(timeout);
        self.submit_with(f, arg, Admit::Until(deadline))
            .map_err(Refused::into_submit_timeout)
    }

    /// Like [`submit`](Self::submit), with a time limit for this task alone, in place of the
    /// pool's [`task_timeout`](ProcessPoolBuilder::task_timeout) (pebble's
    /// `schedule(timeout=…)`). Past it the task ends with [`TaskError::TimedOut`] and its
    /// worker is killed and replaced. The limit counts from when the task starts running, not
    /// from submission; a zero limit ends the task with `TimedOut` at once, without sending it.
    ///
    /// ```no_run
    /// # fn slow(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// use std::time::Duration;
    /// let pool = chi::ProcessPool::new(1).unwrap();
    /// let task = pool.submit_with_timeout(slow, 10_000, Duration::from_millis(50)).unwrap();
    /// assert_eq!(task.result(), Err(chi::TaskError::TimedOut(Duration::from_millis(50))));
    /// ```
    pub fn submit_with_timeout<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        timeout: Duration,
    ) -> Result<Task<R>, SubmitError<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if timeout.is_zero() {
            return Ok(Task::ready(Err(TaskError::TimedOut(timeout))));
        }
        self.submit_job(f, arg, Admit::Until(None), Some(timeout))
            .map_err(Refused::into_submit)
    }

    fn submit_with<A, R>(&self, f: fn(A) -> R, arg: A, admit: Admit) -> Result<Task<R>, Refused<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_job(f, arg, admit, None)
    }

    fn submit_job<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        admit: Admit,
        timeout: Option<Duration>,
    ) -> Result<Task<R>, Refused<A>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        // (A shut-down pool is noticed by `enqueue`, under the lock it takes anyway.)
        let func = match func::fn_ref(f) {
            Ok(r) => r,
            Err(msg) => return Ok(Task::ready(Err(TaskError::pool_failed(msg)))),
        };
        let mut items = Vec::with_capacity(32);
        let start = protocol::begin_item(&mut items, protocol::ARG);
        if let Err(e) = protocol::encode_into(&arg, &mut items) {
            return Ok(Task::ready(Err(TaskError::Codec(Cause::with_source(
                "the argument did not encode",
                e,
            )))));
        }
        let max = self.shared.cfg.max_message;
        let len = items.len() - start - 5;
        if len + 64 > max || protocol::end_item(&mut items, start).is_err() {
            let msg = format!(
                "the argument is {len} bytes, over the pool's maximum message size of {max} bytes"
            );
            return Ok(Task::ready(Err(TaskError::codec(msg))));
        }
        let cell = Arc::new(ProcCell::new(cell::decode_one::<R>));
        let job = Job {
            cell: cell.clone(),
            func,
            count: 1,
            items,
            timeout,
        };
        match self.shared.enqueue(job, admit) {
            Ok(()) => {
                // The argument crossed as bytes; chi drops the value itself, so a panic from
                // its `Drop` is caught (and logged) rather than losing the task's handle.
                crate::unwind::drop_caught(arg);
                Ok(Task::from_cell(cell))
            }
            Err((Refusal::Full, _)) => Err(Refused::Full(arg)),
            Err((Refusal::ShutDown, _)) => Err(Refused::ShutDown(arg)),
        }
    }

    /// Applies `f` to every item of `input` in the workers and yields the results in input
    /// order. Lazy, with bounded look-ahead; [`Map::chunksize`] sends several items per
    /// message (Python's `map(fn, it, chunksize=…)`), [`Map::timeout`] bounds the whole run.
    pub fn map<A, R, I>(&self, f: fn(A) -> R, input: I) -> Map<'_, I::IntoIter, A, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Map::new(self, f, input.into_iter(), false)
    }

    /// Like [`map`](Self::map), but yields each result as soon as its chunk is done, in
    /// finishing order (Python's `Pool.imap_unordered`). Same settings, same bound on what is
    /// in flight.
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() {
    ///     chi::process_pool::init();
    ///     let pool = chi::ProcessPool::new(2).unwrap();
    ///     let total: u64 = pool.map_unordered(square, 0..100).chunksize(10).map(Result::unwrap).sum();
    ///     assert_eq!(total, 328_350);
    /// }
    /// ```
    pub fn map_unordered<A, R, I>(&self, f: fn(A) -> R, input: I) -> Map<'_, I::IntoIter, A, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Map::new(self, f, input.into_iter(), true)
    }

    pub(crate) fn enqueue_chunk(&self, job: Job) -> bool {
        self.shared.enqueue(job, Admit::Until(None)).is_ok()
    }

    pub(crate) fn max_message(&self) -> usize {
        self.shared.cfg.max_message
    }

    /// Blocks until every worker process has started (hand-shake and initializer done), at
    /// most `timeout`; returns how many are up. Workers start in the background when the pool
    /// is built, and tasks submitted before then simply wait for them; this is for programs
    /// (and benchmarks) that want a warm pool before they start the clock.
    ///
    /// ```no_run
    /// # fn main() {
    /// # chi::process_pool::init();
    /// let pool = chi::ProcessPool::new(4).unwrap();
    /// assert_eq!(pool.wait_for_workers(std::time::Duration::from_secs(30)), 4);
    /// # }
    /// ```
    pub fn wait_for_workers(&self, timeout: Duration) -> usize {
        self.shared
            .wait_ready(self.shared.cfg.workers, Instant::now().checked_add(timeout))
    }

    /// Process ids of the workers that are up now (for monitoring, and for tests that kill
    /// one from outside).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    /// Counters right now.
    pub fn metrics(&self) -> Metrics {
        let (workers, queued, in_flight, c) = self.shared.snapshot();
        Metrics {
            workers,
            queued,
            in_flight,
            spawned: c.spawned,
            died: c.died,
            start_failures: c.start_failures,
            messages: c.messages,
            wakeups: c.wakeups,
            rebalanced: c.rebalanced,
        }
    }

    /// Stops accepting work, lets the workers finish everything queued and running, ends the
    /// worker processes and reaps them. Idempotent. Later submissions fail with
    /// `SubmitError`. Called from a done-callback (which runs on a supervisor thread), it
    /// does not wait.
    pub fn shutdown(&self) {
        self.shared.close(false);
        self.join();
    }

    /// Like [`shutdown`](Self::shutdown), but cancels every task that has not started (their
    /// handles report [`TaskError::Cancelled`]) and waits only for the running ones. Returns
    /// how many tasks it cancelled.
    pub fn shutdown_now(&self) -> usize {
        let n = self.shared.close(true);
        self.join();
        n
    }

    fn join(&self) {
        if supervisor::on_supervisor() {
            return;
        }
        self.shared.wait_supervisors();
        let handles = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for h in handles {
            let _ = h.join();
        }
    }

    /// True once `shutdown` or `shutdown_now` was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.is_closed()
    }
}

impl Drop for ProcessPool {
    /// The same as [`ProcessPool::shutdown`]: waits for the work, ends and reaps every worker.
    ///
    /// Except while the dropping thread panics (a `main` that panics with tasks running, say):
    /// then the pool does not wait for work that may take any time. It cancels every task
    /// (their handles report [`TaskError::Cancelled`]), kills every worker with its process
    /// group, reaps them, and lets the panic go on.
    fn drop(&mut self) {
        if std::thread::panicking() && !supervisor::on_supervisor() {
            self.shared.close(true);
            self.shared.kill_workers();
        }
        self.shutdown();
    }
}

/// Feeds arbitrary bytes to the frame decoder and the message decoders, as a worker or a pool
/// would receive them. Never panics. For the fuzz target; not part of the API.
#[doc(hidden)]
pub fn __fuzz_decode(data: &[u8]) -> usize {
    protocol::decode_stream(data, 1 << 20)
}
