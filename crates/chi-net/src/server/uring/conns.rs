//! A uring loop's connections: their state, and what they share.
//!
//! A connection is 64 bytes in a release build, as in the event model: what every connection
//! needs is inline ([`UConn`]); output, held input, a send in flight, a close in progress and
//! the drain's steps are in a [`Busy`] box that exists only while there is some, so an idle
//! connection costs its slot and nothing more. Send buffers are not kept per connection: a
//! sent buffer goes back to the loop's [`SendBufs`] for the next answer of any connection.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use mio::net::TcpStream;

use super::sys::BUF_SIZE;
use crate::handler::Handler;
use crate::server::chunk::{CloseReason, handle_chunk};
use crate::server::conn::Peer;
use crate::server::state::Shared;

/// A sent buffer is kept for the next answer unless it grew beyond this.
const SEND_BUF_KEEP: usize = 4 * BUF_SIZE;
/// The most buffers, and bytes, the loop keeps for answers.
const SEND_BUFS_KEPT: usize = 128;
const SEND_BYTES_KEPT: usize = 16 * BUF_SIZE;

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
    /// Appends the answer to `input` to `conn`'s pending output (in a buffer from `bufs` if it
    /// has none).
    pub(super) fn answer(
        &self,
        conn: &mut UConn,
        input: &[u8],
        bufs: &mut SendBufs,
    ) -> Result<(), CloseReason> {
        let handler = &*self.handler;
        let busy = conn.busy.get_or_insert_with(Box::default);
        if busy.pending.capacity() == 0 {
            busy.pending = bufs.take();
        }
        handle_chunk(
            handler,
            input,
            &mut busy.pending,
            &conn.peer,
            self.log_messages,
        )
    }
}

/// Buffers for answers, reused across the loop's connections (bounded in count and bytes).
#[derive(Default)]
pub(super) struct SendBufs {
    free: Vec<Vec<u8>>,
    /// The capacity of the buffers in `free`.
    bytes: usize,
}

impl SendBufs {
    /// An empty buffer, with capacity if one was kept.
    pub(super) fn take(&mut self) -> Vec<u8> {
        let buf = self.free.pop().unwrap_or_default();
        self.bytes -= buf.capacity();
        buf
    }

    /// Keeps `buf` for a later answer, unless it is too large or enough are kept.
    pub(super) fn put(&mut self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity == 0
            || capacity > SEND_BUF_KEEP
            || self.free.len() >= SEND_BUFS_KEPT
            || self.bytes + capacity > SEND_BYTES_KEPT
        {
            return;
        }
        buf.clear();
        self.bytes += capacity;
        self.free.push(buf);
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

/// One connection: what every connection needs, and a box for the rest while there is some.
pub(super) struct UConn {
    pub(super) stream: TcpStream,
    pub(super) phase: Phase,
    pub(super) recv: Recv,
    /// The client sent FIN.
    pub(super) read_closed: bool,
    /// In the loop's `touched` list.
    pub(super) queued: bool,
    pub(super) peer: Peer,
    pub(super) id: u64,
    pub(super) last_activity_ms: u64,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    busy: Option<Box<Busy>>,
}

/// The state of a connection with work in progress; all of it empty or false when none is
/// (then the box is freed, see [`UConn::tidy`]).
#[derive(Default)]
pub(super) struct Busy {
    /// Answers not yet handed to the ring.
    pub(super) pending: Vec<u8>,
    /// Input delivered while the output was over the cap, answered once it drains.
    pub(super) unread: Vec<u8>,
    /// The send in flight: where its rest starts in its buffer, and the buffer's length.
    pub(super) sending: Option<(usize, usize)>,
    pub(super) closing: Option<CloseReason>,
    /// Cancels in flight.
    pub(super) cancels: u8,
    pub(super) shutdown_busy: bool,
    /// Draining: the socket was read until it would block after the receive stopped.
    pub(super) drain_read_done: bool,
}

impl Busy {
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.unread.is_empty()
            && self.sending.is_none()
            && self.closing.is_none()
            && self.cancels == 0
            && !self.shutdown_busy
            && !self.drain_read_done
    }
}

impl UConn {
    pub(super) fn new(stream: TcpStream, peer: Peer, id: u64, now_ms: u64, phase: Phase) -> UConn {
        UConn {
            stream,
            phase,
            recv: Recv::Idle,
            read_closed: false,
            queued: false,
            peer,
            id,
            last_activity_ms: now_ms,
            bytes_in: 0,
            bytes_out: 0,
            busy: None,
        }
    }

    pub(super) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The connection's work in progress, if it has any.
    pub(super) fn busy(&self) -> Option<&Busy> {
        self.busy.as_deref()
    }

    /// The connection's work in progress, boxed on first use.
    pub(super) fn busy_mut(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }

    /// The connection's work in progress, if it has any.
    pub(super) fn busy_mut_if_any(&mut self) -> Option<&mut Busy> {
        self.busy.as_deref_mut()
    }

    /// Frees the box of work in progress once it is empty, keeping its buffer in `bufs`.
    pub(super) fn tidy(&mut self, bufs: &mut SendBufs) {
        if self.busy().is_some_and(Busy::is_empty)
            && let Some(busy) = self.busy.take()
        {
            bufs.put(busy.pending);
        }
    }

    /// Takes the connection's state apart as it is released: its socket, peer, byte counts
    /// and why it closed.
    pub(super) fn into_closed(self) -> (TcpStream, Peer, u64, u64, CloseReason) {
        let reason = self.busy.and_then(|busy| busy.closing);
        let reason = reason.unwrap_or(CloseReason::Forced);
        (
            self.stream,
            self.peer,
            self.bytes_in,
            self.bytes_out,
            reason,
        )
    }

    pub(super) fn is_closing(&self) -> bool {
        self.busy().is_some_and(|b| b.closing.is_some())
    }

    pub(super) fn has_unread(&self) -> bool {
        self.busy().is_some_and(|b| !b.unread.is_empty())
    }

    pub(super) fn is_sending(&self) -> bool {
        self.busy().is_some_and(|b| b.sending.is_some())
    }

    pub(super) fn shutdown_busy(&self) -> bool {
        self.busy().is_some_and(|b| b.shutdown_busy)
    }

    pub(super) fn drain_read_done(&self) -> bool {
        self.busy().is_some_and(|b| b.drain_read_done)
    }

    pub(super) fn unsent(&self) -> usize {
        self.busy().map_or(0, |b| {
            b.pending.len() + b.sending.map_or(0, |(from, len)| len - from)
        })
    }

    pub(super) fn has_ops(&self) -> bool {
        self.recv != Recv::Idle
            || self
                .busy()
                .is_some_and(|b| b.sending.is_some() || b.shutdown_busy || b.cancels > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_state_stays_small() {
        // What one idle connection costs the loop, as in the event model: 64 bytes (mio's
        // stream carries a selector id in debug builds, which adds 16).
        let debug_extra = if cfg!(debug_assertions) { 16 } else { 0 };
        assert!(std::mem::size_of::<Option<UConn>>() <= 64 + debug_extra);
    }

    #[test]
    fn work_in_progress_is_boxed_only_while_there_is_some() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let stream = TcpStream::from_std(client);
        let mut conn = UConn::new(stream, Peer::Unknown, 0, 0, Phase::Open);
        let mut bufs = SendBufs::default();
        assert!(conn.busy().is_none());
        conn.busy_mut().pending = Vec::with_capacity(64);
        conn.tidy(&mut bufs);
        // Empty: freed, and its buffer kept for the next answer.
        assert!(conn.busy().is_none());
        assert_eq!(bufs.take().capacity(), 64);
        conn.busy_mut().pending.extend_from_slice(b"answer");
        conn.tidy(&mut bufs);
        assert_eq!(conn.unsent(), 6);
        conn.busy_mut().pending.clear();
        conn.busy_mut().closing = Some(CloseReason::IdleTimeout);
        conn.tidy(&mut bufs);
        assert!(conn.is_closing());
        let (.., reason) = conn.into_closed();
        assert!(matches!(reason, CloseReason::IdleTimeout));
    }

    #[test]
    fn send_buffers_kept_are_bounded() {
        let mut bufs = SendBufs::default();
        bufs.put(Vec::with_capacity(SEND_BUF_KEEP + 1));
        bufs.put(Vec::new());
        assert_eq!(bufs.take().capacity(), 0);
        for _ in 0..2 * SEND_BUFS_KEPT {
            bufs.put(Vec::with_capacity(64));
        }
        assert_eq!(bufs.free.len(), SEND_BUFS_KEPT);
        assert!(bufs.bytes <= SEND_BYTES_KEPT);
    }
}
