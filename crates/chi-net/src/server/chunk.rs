//! What both models do with each chunk read from a connection ([`handle_chunk`]: log it, run
//! the handler, contain a panic) and why a connection closed ([`CloseReason`]).

use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::MESSAGE_LOG_TARGET;
use crate::handler::Handler;

/// Why a connection closed (logged at DEBUG).
#[derive(Debug)]
pub(crate) enum CloseReason {
    /// The client sent FIN and got every answer.
    PeerClosed,
    /// Closed cleanly during a shutdown: every answer sent, then FIN, then the client's FIN.
    Drained,
    /// Nothing read or written for the idle timeout.
    IdleTimeout,
    /// Closed by the drain deadline or `shutdown_now`.
    Forced,
    /// The handler panicked.
    HandlerPanicked,
    /// A socket error: reset by the client, broken pipe, ...
    Error(io::Error),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("client closed"),
            CloseReason::Drained => f.write_str("drained for shutdown"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Forced => f.write_str("closed by shutdown"),
            CloseReason::HandlerPanicked => f.write_str("handler panicked"),
            CloseReason::Error(e) => write!(f, "{e}"),
        }
    }
}

/// Runs the handler on one chunk, logging the chunk first when message logging is on.
/// A panicking handler is caught: only its connection ends.
pub(crate) fn handle_chunk(
    handler: &dyn Handler,
    input: &[u8],
    output: &mut Vec<u8>,
    peer: &dyn fmt::Display,
    log_messages: bool,
) -> Result<(), CloseReason> {
    if log_messages {
        tracing::debug!(target: MESSAGE_LOG_TARGET, %peer, "{}", String::from_utf8_lossy(input));
    }
    catch_unwind(AssertUnwindSafe(|| handler.handle(input, output)))
        .map_err(|_| CloseReason::HandlerPanicked)
}

/// Logs a connection's end at DEBUG (both models).
pub(crate) fn log_closed(
    peer: &dyn fmt::Display,
    reason: &CloseReason,
    bytes_in: u64,
    bytes_out: u64,
) {
    tracing::debug!(%peer, %reason, bytes_in, bytes_out, "connection closed");
}
