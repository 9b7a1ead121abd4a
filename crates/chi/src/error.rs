//! Error types: what a task ended with, why a submission was refused, why a pool did not build.
//!
//! Every refused submission hands the work back (`into_inner`), as crossbeam's channel errors do.

use crate::loom::unmodeled::{Arc, Mutex, MutexGuard};
use std::any::Any;
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
    #[non_exhaustive]
    Panicked {
        /// The panic message (or a placeholder when the payload was not a string).
        message: String,
        /// The value the task panicked with, for [`TaskError::into_panic`].
        payload: PanicPayload,
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
    /// The argument or the result could not be encoded or decoded; the cause is the
    /// error's [`source`](std::error::Error::source) when the codec gave one.
    #[error("codec error: {0}")]
    Codec(#[source] Cause),
    /// The pool could not run the task at all (for example its worker initializer failed).
    #[error("pool failed: {0}")]
    PoolFailed(#[source] Cause),
    /// The result was already taken: the task was polled again after it returned `Ready`
    /// (a misuse of the `Future` contract; `result` consumes the handle, so only `.await`
    /// machinery that polls twice can see this).
    #[error("the task's result was already taken")]
    ResultTaken,
    /// The [`Completer`](crate::Completer) of a completable task was dropped without
    /// finishing it.
    #[error("the task's completer was dropped without an outcome")]
    Abandoned,
}

impl TaskError {
    /// The error for a task that panicked with `payload` (as `catch_unwind` hands it over).
    /// A payload that is itself a [`PanicPayload`] (a panic re-raised by chi) is kept as is.
    pub fn from_panic(payload: Box<dyn Any + Send>) -> TaskError {
        let payload = match payload.downcast::<PanicPayload>() {
            Ok(p) => *p,
            Err(other) => PanicPayload::new(other),
        };
        TaskError::Panicked {
            message: payload.message(),
            payload,
        }
    }

    /// The error for a panic known only by its message (one that crossed a process boundary
    /// as text); [`into_panic`](TaskError::into_panic) gives the message back as a `String`.
    pub fn panicked(message: impl Into<String>) -> TaskError {
        let message = message.into();
        TaskError::Panicked {
            payload: PanicPayload::new(Box::new(message.clone())),
            message,
        }
    }

    /// A codec error with `context` and no further cause.
    #[cfg(all(feature = "process-pool", target_os = "linux"))]
    pub(crate) fn codec(context: impl Into<String>) -> TaskError {
        TaskError::Codec(Cause::new(context))
    }

    /// A pool failure with `context` and no further cause.
    pub(crate) fn pool_failed(context: impl Into<String>) -> TaskError {
        TaskError::PoolFailed(Cause::new(context))
    }

    /// For a panic, the payload wrapped so that [`from_panic`](TaskError::from_panic) of the
    /// re-raised panic finds the same shared payload again.
    pub(crate) fn into_shared_payload(self) -> Box<dyn Any + Send> {
        match self {
            TaskError::Panicked { payload, .. } => Box::new(payload),
            other => Box::new(other.to_string()),
        }
    }

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
            TaskError::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The value the task panicked with, to raise it again with
    /// [`std::panic::resume_unwind`]; `Err(self)` when the task did not panic.
    ///
    /// The original payload goes to the first caller among the clones of this error; later
    /// ones (and process-pool panics, which cross as text) get the message as a `String`.
    ///
    /// ```
    /// let pool = chi::ThreadPool::new(1).unwrap();
    /// let err = pool.submit(|| std::panic::panic_any(7u8)).unwrap().result().unwrap_err();
    /// let payload = err.into_panic().unwrap();
    /// assert_eq!(payload.downcast_ref::<u8>(), Some(&7));
    /// // std::panic::resume_unwind(payload) would raise it again here.
    /// ```
    pub fn into_panic(self) -> Result<Box<dyn Any + Send>, TaskError> {
        match self {
            TaskError::Panicked { message, payload } => {
                Ok(payload.take().unwrap_or_else(|| Box::new(message)))
            }
            other => Err(other),
        }
    }
}

/// The value a task panicked with, shared by the clones of its [`TaskError`]; the first
/// [`TaskError::into_panic`] takes it out.
#[derive(Clone)]
pub struct PanicPayload(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl PanicPayload {
    fn new(payload: Box<dyn Any + Send>) -> Self {
        PanicPayload(Arc::new(Mutex::new(Some(payload))))
    }

    fn slot(&self) -> MutexGuard<'_, Option<Box<dyn Any + Send>>> {
        // Nothing panics while the lock is held.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The payload's message: the `&str` or `String` it carries, or a placeholder.
    fn message(&self) -> String {
        self.slot().as_deref().map_or_else(
            || "a panic whose payload was already taken".to_owned(),
            crate::unwind::payload_message,
        )
    }

    /// Takes the original payload out; `None` if a clone took it first.
    pub(crate) fn take(&self) -> Option<Box<dyn Any + Send>> {
        self.slot().take()
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanicPayload(..)")
    }
}

/// Payloads do not take part in comparisons: two panics are equal when their messages are.
impl PartialEq for PanicPayload {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PanicPayload {}

/// Why a codec or a pool failed: what chi was doing, and the underlying error when there is
/// one (through [`source`](std::error::Error::source)).
#[derive(Clone)]
pub struct Cause(Arc<CauseInner>);

/// Behind one pointer, so `TaskError` stays four words.
struct CauseInner {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause with a message and no underlying error.
    pub fn new(context: impl Into<String>) -> Self {
        Cause(Arc::new(CauseInner {
            context: context.into(),
            source: None,
        }))
    }

    /// A cause with a message and the underlying error.
    pub fn with_source(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Cause(Arc::new(CauseInner {
            context: context.into(),
            source: Some(Box::new(source)),
        }))
    }

    /// What chi was doing when it failed.
    pub fn context(&self) -> &str {
        &self.0.context
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.context)?;
        if let Some(s) = &self.0.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cause");
        d.field("context", &self.0.context);
        if let Some(s) = &self.0.source {
            d.field("source", &format_args!("{s:?}"));
        }
        d.finish()
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Causes compare by their text (the underlying errors need not be comparable).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

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
