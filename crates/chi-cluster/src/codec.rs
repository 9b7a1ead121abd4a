//! Payloads and errors on the wire: postcard, as chi's process pool encodes its messages.

use chi::{Cause, ExitReason, TaskError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The default largest encoded argument or result: 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;

/// What a result stream entry carries: the encoded value or an error.
pub(crate) type Outcome = Result<Vec<u8>, WireError>;

/// Encodes `value`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| e.to_string())
}

/// Decodes a `T`.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

/// A [`TaskError`] as it crosses between worker and client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireError {
    Panicked(String),
    Cancelled,
    /// Exit code, signal, or `None` when the holder vanished (heartbeat lapsed).
    WorkerDied {
        code: Option<i32>,
        signal: Option<i32>,
    },
    TimedOut(u64),
    Codec(String),
    Failed(String),
}

impl From<&TaskError> for WireError {
    fn from(e: &TaskError) -> WireError {
        match e {
            TaskError::Panicked { message, .. } => WireError::Panicked(message.clone()),
            TaskError::Cancelled => WireError::Cancelled,
            TaskError::WorkerDied(ExitReason::Code(c)) => WireError::WorkerDied {
                code: Some(*c),
                signal: None,
            },
            TaskError::WorkerDied(ExitReason::Signal(s)) => WireError::WorkerDied {
                code: None,
                signal: Some(*s),
            },
            TaskError::WorkerDied(_) => WireError::WorkerDied {
                code: None,
                signal: None,
            },
            TaskError::TimedOut(d) => {
                WireError::TimedOut(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
            TaskError::Codec(m) => WireError::Codec(m.to_string()),
            TaskError::PoolFailed(m) => WireError::Failed(m.to_string()),
            other => WireError::Failed(other.to_string()),
        }
    }
}

impl From<WireError> for TaskError {
    fn from(e: WireError) -> TaskError {
        match e {
            WireError::Panicked(message) => TaskError::panicked(message),
            WireError::Cancelled => TaskError::Cancelled,
            WireError::WorkerDied {
                code: Some(c),
                signal: _,
            } => TaskError::WorkerDied(ExitReason::Code(c)),
            WireError::WorkerDied {
                code: None,
                signal: Some(s),
            } => TaskError::WorkerDied(ExitReason::Signal(s)),
            WireError::WorkerDied { .. } => TaskError::WorkerDied(ExitReason::Disconnected),
            WireError::TimedOut(ms) => TaskError::TimedOut(Duration::from_millis(ms)),
            WireError::Codec(m) => TaskError::Codec(Cause::new(m)),
            WireError::Failed(m) => TaskError::PoolFailed(Cause::new(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip() {
        let all = [
            TaskError::panicked("boom"),
            TaskError::Cancelled,
            TaskError::WorkerDied(ExitReason::Signal(9)),
            TaskError::WorkerDied(ExitReason::Code(3)),
            TaskError::WorkerDied(ExitReason::Disconnected),
            TaskError::TimedOut(Duration::from_millis(250)),
            TaskError::Codec(Cause::new("bad")),
            TaskError::PoolFailed(Cause::new("unknown task")),
        ];
        for e in all {
            let wire = encode(&WireError::from(&e)).unwrap();
            let back: WireError = decode(&wire).unwrap();
            assert_eq!(TaskError::from(back), e);
        }
    }
}
