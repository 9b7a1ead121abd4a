//! Errors of the client and the worker.

use std::fmt;

/// A submission was refused. The argument is handed back ([`into_inner`](Self::into_inner)).
#[derive(PartialEq, Eq, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError<A> {
    /// The queue is at its bound (`try_submit`).
    #[error("the queue is full")]
    Full(A),
    /// The queue stayed at its bound for the whole timeout (`submit_timeout`).
    #[error("the queue stayed full for the whole timeout")]
    Timeout(A),
    /// The client is shut down.
    #[error("the cluster client is shut down")]
    ShutDown(A),
    /// Redis could not be reached (or refused the command) until the submit timeout.
    #[error("Redis unavailable: {reason}")]
    Unavailable {
        /// The argument.
        arg: A,
        /// The last error seen.
        reason: String,
    },
    /// The encoded argument is larger than the client's payload limit; nothing was sent.
    #[error("the argument is {size} bytes encoded, over the {limit}-byte limit")]
    TooLarge {
        /// The argument.
        arg: A,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The argument did not encode.
    #[error("the argument did not encode: {reason}")]
    Codec {
        /// The argument.
        arg: A,
        /// What the encoder said.
        reason: String,
    },
}

impl<A> SubmitError<A> {
    /// The argument that was not submitted.
    pub fn into_inner(self) -> A {
        match self {
            SubmitError::Full(a) | SubmitError::Timeout(a) | SubmitError::ShutDown(a) => a,
            SubmitError::Unavailable { arg, .. }
            | SubmitError::TooLarge { arg, .. }
            | SubmitError::Codec { arg, .. } => arg,
        }
    }

    /// True for [`SubmitError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, SubmitError::Full(_))
    }

    /// True for [`SubmitError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SubmitError::Unavailable { .. })
    }

    pub(crate) fn map_arg<B>(self, f: impl FnOnce(A) -> B) -> SubmitError<B> {
        match self {
            SubmitError::Full(a) => SubmitError::Full(f(a)),
            SubmitError::Timeout(a) => SubmitError::Timeout(f(a)),
            SubmitError::ShutDown(a) => SubmitError::ShutDown(f(a)),
            SubmitError::Unavailable { arg, reason } => SubmitError::Unavailable {
                arg: f(arg),
                reason,
            },
            SubmitError::TooLarge { arg, size, limit } => SubmitError::TooLarge {
                arg: f(arg),
                size,
                limit,
            },
            SubmitError::Codec { arg, reason } => SubmitError::Codec {
                arg: f(arg),
                reason,
            },
        }
    }
}

impl<A> fmt::Debug for SubmitError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubmitError({self})")
    }
}

/// A client or worker could not start, or a worker had to stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis could not be reached or refused a command.
    #[error("Redis: {0}")]
    Redis(String),
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The local pool could not be built.
    #[error("local pool: {0}")]
    Pool(String),
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> ClusterError {
        ClusterError::Redis(e.to_string())
    }
}

impl From<crate::conn::Unavailable> for ClusterError {
    fn from(e: crate::conn::Unavailable) -> ClusterError {
        ClusterError::Redis(e.0)
    }
}
