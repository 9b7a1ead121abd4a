//! Error types: what a task ended with, why a submission was refused, why a pool did not build.
//!
//! Every refused submission hands the work back (`into_inner`), as crossbeam's channel errors do.

use std::fmt;
use std::time::Duration;

/// Why a task produced no value.
///
/// ```
/// let pool = chi::ThreadPool::new(1).unwrap();
/// let err = pool.submit(|| -> u32 { panic!("boom") }).unwrap().result().unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; `message` is the panic payload when it was a string.
    #[error("task panicked: {message}")]
    Panicked {
        /// The panic message (or a placeholder when the payload was not a string).
        message: String,
    },
    /// The task was cancelled before it ran (by `cancel`, `shutdown_now`, or a failed pool).
    #[error("task cancelled")]
    Cancelled,
    /// The process running the task died before it answered.
    #[error("worker process died: {0}")]
    WorkerDied(ExitReason),
    /// The task ran longer than the pool's task timeout; its worker was killed.
    #[error("task timed out after {0:?}")]
    TimedOut(Duration),
    /// The argument or the result could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// The pool could not run the task at all (for example its worker initializer failed).
    #[error("pool failed: {0}")]
    PoolFailed(String),
    /// The [`Completer`](crate::Completer) of a completable task was dropped without
    /// finishing it.
    #[error("the task's completer was dropped without an outcome")]
    Abandoned,
}

impl TaskError {
    /// True when the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked { .. })
    }

    /// True when the task was cancelled before it ran.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// The panic message, when the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked { message } => Some(message),
            _ => None,
        }
    }

    /// The panic message by value; `Err(self)` when the task did not panic.
    pub fn into_panic(self) -> Result<String, TaskError> {
        match self {
            TaskError::Panicked { message } => Ok(message),
            other => Err(other),
        }
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it (the number, for example 9 for SIGKILL).
    Signal(i32),
    /// It closed its end of the connection or sent garbage, and its exit status is unknown.
    Disconnected,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(c) => write!(f, "exit code {c}"),
            ExitReason::Signal(s) => write!(f, "killed by signal {s} ({})", signal_name(*s)),
            ExitReason::Disconnected => f.write_str("connection to the worker lost"),
        }
    }
}

/// A short name for the common signals.
pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// `submit` was refused: the pool is shut down. The work is handed back.
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
#[error("the pool is shut down")]
pub struct SubmitError<F>(pub F);

impl<F> SubmitError<F> {
    /// The work that was not submitted.
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubmitError(..)")
    }
}

/// `try_submit` was refused. The work is handed back.
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
pub enum TrySubmitError<F> {
    /// The queue is at its bound.
    #[error("the pool's queue is full")]
    Full(F),
    /// The pool is shut down.
    #[error("the pool is shut down")]
    ShutDown(F),
}

impl<F> TrySubmitError<F> {
    /// The work that was not submitted.
    pub fn into_inner(self) -> F {
        match self {
            TrySubmitError::Full(f) | TrySubmitError::ShutDown(f) => f,
        }
    }
    /// True when the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySubmitError::Full(_))
    }
}

impl<F> fmt::Debug for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("Full(..)"),
            TrySubmitError::ShutDown(_) => f.write_str("ShutDown(..)"),
        }
    }
}

/// `submit_timeout` was refused. The work is handed back.
#[derive(PartialEq, Eq, Clone, Copy, thiserror::Error)]
pub enum SubmitTimeoutError<F> {
    /// The queue stayed full for the whole timeout.
    #[error("the pool's queue stayed full until the timeout")]
    Timeout(F),
    /// The pool is shut down.
    #[error("the pool is shut down")]
    ShutDown(F),
}

impl<F> SubmitTimeoutError<F> {
    /// The work that was not submitted.
    pub fn into_inner(self) -> F {
        match self {
            SubmitTimeoutError::Timeout(f) | SubmitTimeoutError::ShutDown(f) => f,
        }
    }
    /// True when the wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SubmitTimeoutError::Timeout(_))
    }
}

impl<F> fmt::Debug for SubmitTimeoutError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SubmitTimeoutError::ShutDown(_) => f.write_str("ShutDown(..)"),
        }
    }
}

/// A pool builder was given settings it cannot honour.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct BuildError {
    kind: BuildErrorKind,
}

/// What was wrong with the settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// `max_workers` was 0.
    #[error("a pool needs at least one worker (max_workers was 0)")]
    ZeroWorkers,
    /// The queue bound was 0.
    #[error("a queue bound must be at least 1 (it was 0)")]
    ZeroQueueBound,
    /// A setting was out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The operating system refused a resource (thread, process, socket).
    #[error("the system refused: {0}")]
    Io(#[from] std::io::Error),
}

impl BuildError {
    pub(crate) fn new(kind: BuildErrorKind) -> Self {
        BuildError { kind }
    }
    /// What was wrong.
    pub fn kind(&self) -> &BuildErrorKind {
        &self.kind
    }
}

impl From<BuildErrorKind> for BuildError {
    fn from(kind: BuildErrorKind) -> Self {
        BuildError::new(kind)
    }
}

/// `result_timeout` gave up: either the wait timed out (the task is handed back) or the task failed.
#[derive(thiserror::Error)]
pub enum ResultTimeoutError<T> {
    /// The task was not done within the timeout; it is handed back and keeps running.
    #[error("timed out waiting for the task")]
    Timeout(crate::Task<T>),
    /// The task ended without a value.
    #[error(transparent)]
    Failed(TaskError),
}

impl<T> ResultTimeoutError<T> {
    /// True when the wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ResultTimeoutError::Timeout(_))
    }
}

impl<T> fmt::Debug for ResultTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            ResultTimeoutError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}
