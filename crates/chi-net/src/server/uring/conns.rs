//! A uring loop's connections: their state, and what they share.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use mio::net::TcpStream;

use crate::handler::Handler;
use crate::server::chunk::{CloseReason, handle_chunk};
use crate::server::conn::Peer;
use crate::server::state::Shared;

/// What a loop's connections share: the handler, the limits, the server's state.
pub(super) struct Settings {
    pub(super) handler: Arc<dyn Handler>,
    pub(super) shared: Arc<Shared>,
    pub(super) output_cap: usize,
    pub(super) max_connections: usize,
    /// Whether each received chunk is logged (checked once per run).
    pub(super) log_messages: bool,
    /// Whether connections are logged with their peer's address, which a connection accepted
    /// in the ring has to look up.
    pub(super) log_peers: bool,
}

impl Settings {
    /// Appends the answer to `input` to `conn`'s pending output.
    pub(super) fn answer(&self, conn: &mut UConn, input: &[u8]) -> Result<(), CloseReason> {
        let handler = &*self.handler;
        handle_chunk(
            handler,
            input,
            &mut conn.pending,
            &conn.peer,
            self.log_messages,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Served.
    Open,
    /// The server drains: the receive stops, the socket is read dry, all is answered, FIN.
    Draining,
    /// After our FIN: received bytes are thrown away until the client's FIN.
    Linger,
}

/// The connection's multishot receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recv {
    Idle,
    Armed,
    /// A cancel is on its way; the receive's last completion has not come back yet.
    Cancelling,
}

pub(super) struct UConn {
    pub(super) stream: TcpStream,
    pub(super) peer: Peer,
    pub(super) id: u64,
    pub(super) last_activity_ms: u64,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) phase: Phase,
    pub(super) recv: Recv,
    /// The client sent FIN.
    pub(super) read_closed: bool,
    /// Draining: the socket was read until it would block after the receive stopped.
    pub(super) drain_read_done: bool,
    /// Answers not yet handed to the ring.
    pub(super) pending: Vec<u8>,
    /// Input delivered while the output was over the cap, answered once it drains.
    pub(super) unread: Vec<u8>,
    /// The send in flight: where its rest starts in its buffer, and the buffer's length.
    pub(super) sending: Option<(usize, usize)>,
    pub(super) shutdown_busy: bool,
    pub(super) cancels: u8,
    pub(super) closing: Option<CloseReason>,
    /// In the loop's `touched` list.
    pub(super) queued: bool,
}

impl UConn {
    pub(super) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub(super) fn unsent(&self) -> usize {
        self.pending.len() + self.sending.map_or(0, |(from, len)| len - from)
    }

    pub(super) fn has_ops(&self) -> bool {
        self.recv != Recv::Idle || self.sending.is_some() || self.shutdown_busy || self.cancels > 0
    }
}
