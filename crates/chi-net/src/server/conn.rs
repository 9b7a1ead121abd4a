//! One connection of the event model: its pending output, its phase, and `drive`, which moves
//! bytes between the socket and the handler until the socket would block.
//!
//! Rules, in the order `drive` applies them:
//! 1. Flush pending output first.
//! 2. Read only while the unsent output is at most the output cap: a client that never reads
//!    stops being read from, its TCP window closes, and it costs at most cap + one chunk.
//! 3. After the client's FIN, send everything pending, then close.
//! 4. Draining: read what has arrived, answer it, flush, send FIN, then discard input until the
//!    client closes (closing with unread input would make the kernel send a reset, which can
//!    destroy answers the client has not read yet).
//! 5. A short read ends the turn (the receive queue is empty; registration is edge-triggered,
//!    so the next arrival raises a new event), unless an event has reported the client's FIN,
//!    an error or urgent data: a FIN's edge may be spent already, and a read stops short at an
//!    urgent mark, so reading then goes on until `WouldBlock` or end of stream. This saves one
//!    `read` per message, as tokio does after a short read. It relies on epoll (Linux), which
//!    raises an edge for every arrival; a level-style poller would need the extra read.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::Ordering;

use mio::net::TcpStream;

use super::READ_CHUNK;
use super::chunk::{CloseReason, handle_chunk};
use super::state::Shared;
use crate::handler::Handler;

/// Reads per `drive` call before yielding to other connections on the loop.
const READS_PER_TURN: usize = 16;
/// The loop's output buffer is freed when an answer made it larger than this (a handler that
/// answers one chunk with much more).
const READ_CHUNK_KEEP: usize = 4 * READ_CHUNK;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Normal service.
    Open,
    /// Shutdown requested: answer what has been received, then send FIN.
    Draining,
    /// FIN sent; input is read and dropped until the client closes.
    Linger,
}

/// What the loop should do with a connection after `drive`.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Wait for the next readiness event.
    Wait,
    /// The read budget ran out with input possibly left: drive again soon.
    Again,
    /// Close it.
    Close(CloseReason),
}

/// What a loop lends a connection for one `drive`.
pub(crate) struct DriveCtx<'a> {
    pub(crate) handler: &'a dyn Handler,
    pub(crate) buf: &'a mut [u8],
    /// The loop's output buffer: an answer is built here and written at once; only what the
    /// socket does not take is copied to the connection's own backlog.
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) output_cap: usize,
    pub(crate) log_messages: bool,
    /// Milliseconds since the loop's epoch (see [`Conn::last_activity_ms`]).
    pub(crate) now_ms: u64,
    /// The loop's largest pending output so far; raised (and published) here.
    pub(crate) peak: &'a mut usize,
    pub(crate) shared: &'a Shared,
}

/// A client's address in 16 bytes instead of `SocketAddr`'s 32: the rare IPv6 one is boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
    /// Not looked up (the uring model accepts without the address, and asks for it only when
    /// logs show it).
    #[cfg_attr(not(all(feature = "uring", target_os = "linux")), allow(dead_code))]
    Unknown,
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        match addr {
            SocketAddr::V4(a) => Peer::V4(a),
            SocketAddr::V6(a) => Peer::V6(Box::new(a)),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::V4(a) => a.fmt(f),
            Peer::V6(a) => a.fmt(f),
            Peer::Unknown => f.write_str("(peer not looked up)"),
        }
    }
}

/// Output the socket has not taken yet, kept only while there is some.
#[derive(Debug)]
struct Backlog {
    bytes: Vec<u8>,
    /// `bytes[..sent]` is sent already.
    sent: usize,
}

impl Backlog {
    fn pending(&self) -> usize {
        self.bytes.len() - self.sent
    }
}

/// One connection. Small on purpose (64 bytes in a release build): an idle connection costs
/// the loop this, plus an idle-timer entry when an idle timeout is set and a 32-byte box for an
/// IPv6 peer, so 10,000 idle clients fit in well under a MiB.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    phase: Phase,
    /// The client sent FIN (a read returned 0).
    read_closed: bool,
    /// An event reported the client's FIN, a socket error or urgent data. Until then a short
    /// read means the receive queue is empty, and the next arrival raises a new edge (epoll's
    /// edge-triggered semantics, which this rule relies on), so `drive` stops there instead of
    /// spending a read on `WouldBlock`. After it, reading goes on until `WouldBlock` or end
    /// of stream: the edge for a FIN may already be consumed, and a read also stops short at
    /// an urgent mark with more data queued behind it.
    read_to_block: bool,
    pub(crate) peer: Peer,
    /// Unique per loop; tells a recycled slot from the connection an idle entry was made for.
    pub(crate) id: u64,
    /// When a byte was last read or written, in milliseconds since the loop's epoch.
    pub(crate) last_activity_ms: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    backlog: Option<Box<Backlog>>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, id: u64, now_ms: u64) -> Conn {
        Conn {
            stream,
            phase: Phase::Open,
            read_closed: false,
            read_to_block: false,
            peer: Peer::from(peer),
            id,
            last_activity_ms: now_ms,
            bytes_in: 0,
            bytes_out: 0,
            backlog: None,
        }
    }

    /// Switches to draining (a no-op if already draining or lingering).
    pub(crate) fn start_drain(&mut self) {
        if self.phase == Phase::Open {
            self.phase = Phase::Draining;
        }
    }

    /// Records that an event reported the client's FIN, an error or urgent data (sticky).
    pub(crate) fn read_to_block_from_now(&mut self) {
        self.read_to_block = true;
    }

    fn pending(&self) -> usize {
        self.backlog.as_ref().map_or(0, |b| b.pending())
    }

    /// Moves bytes until the socket would block, the read budget ends, or the connection is done.
    pub(crate) fn drive(&mut self, ctx: &mut DriveCtx<'_>) -> Progress {
        let mut budget = READS_PER_TURN;
        // The last read was short while serving normally: the queue is empty (see
        // `read_to_block`).
        let mut drained = false;
        loop {
            // FLUSH
            if let Err(e) = self.flush(ctx.now_ms) {
                return Progress::Close(CloseReason::Error(e));
            }
            let pending = self.pending();
            if self.read_closed {
                return match (pending, self.phase) {
                    (0, Phase::Open) => Progress::Close(CloseReason::PeerClosed),
                    (0, _) => Progress::Close(CloseReason::Drained),
                    _ => Progress::Wait,
                };
            }
            if pending > ctx.output_cap {
                // Reads pause until a WRITABLE event lets the client's backlog drain.
                return Progress::Wait;
            }
            if drained {
                return Progress::Wait;
            }
            if budget == 0 {
                return Progress::Again;
            }
            budget -= 1;
            // READ
            match self.stream.read(ctx.buf) {
                Ok(0) => self.read_closed = true,
                Ok(n) => {
                    self.last_activity_ms = ctx.now_ms;
                    if self.phase == Phase::Linger {
                        continue; // input after our FIN is dropped
                    }
                    self.bytes_in += n as u64;
                    drained = n < ctx.buf.len() && !self.read_to_block && self.phase == Phase::Open;
                    if let Err(reason) = self.answer(n, ctx) {
                        return Progress::Close(reason);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.phase == Phase::Draining && pending == 0 {
                        // Everything received is answered and sent: say goodbye.
                        if let Err(e) = self.stream.shutdown(Shutdown::Write) {
                            return Progress::Close(CloseReason::Error(e));
                        }
                        self.phase = Phase::Linger;
                        continue;
                    }
                    return Progress::Wait;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Progress::Close(CloseReason::Error(e)),
            }
        }
    }

    /// Runs the handler on the first `n` bytes of the loop's buffer. With nothing queued the
    /// answer is written at once from the loop's output buffer and only the rest is kept;
    /// otherwise it queues behind the backlog, keeping the order.
    fn answer(&mut self, n: usize, ctx: &mut DriveCtx<'_>) -> Result<(), CloseReason> {
        let input = &ctx.buf[..n];
        let peer = &self.peer;
        if let Some(backlog) = self.backlog.as_deref_mut() {
            // Drop the sent prefix when it is at least as long as what remains: each byte
            // moves at most once per byte sent, and the backlog stays within twice its size.
            if backlog.sent > 0 && backlog.sent >= backlog.pending() {
                backlog.bytes.drain(..backlog.sent);
                backlog.sent = 0;
            }
            handle_chunk(
                ctx.handler,
                input,
                &mut backlog.bytes,
                peer,
                ctx.log_messages,
            )?;
        } else {
            ctx.out.clear();
            handle_chunk(ctx.handler, input, ctx.out, peer, ctx.log_messages)?;
            let sent = self.send(ctx.out, ctx.now_ms).map_err(CloseReason::Error)?;
            if sent < ctx.out.len() {
                self.backlog = Some(Box::new(Backlog {
                    bytes: ctx.out[sent..].to_vec(),
                    sent: 0,
                }));
            }
            if ctx.out.capacity() > READ_CHUNK_KEEP {
                *ctx.out = Vec::new();
            }
        }
        let pending = self.pending();
        if pending > *ctx.peak {
            *ctx.peak = pending;
            // ORDERING: Relaxed, a statistic.
            ctx.shared.peak_output.fetch_max(pending, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes from `data` until it is all sent or the socket would block; returns the bytes
    /// sent.
    fn send(&mut self, data: &[u8], now_ms: u64) -> io::Result<usize> {
        let mut sent = 0;
        while sent < data.len() {
            match self.stream.write(&data[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    sent += n;
                    self.bytes_out += n as u64;
                    self.last_activity_ms = now_ms;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Writes the backlog until it is sent (and freed) or the socket would block.
    fn flush(&mut self, now_ms: u64) -> io::Result<()> {
        let Some(mut backlog) = self.backlog.take() else {
            return Ok(());
        };
        let result = self.send(&backlog.bytes[backlog.sent..], now_ms);
        if let Ok(n) = result {
            backlog.sent += n;
        }
        if backlog.pending() > 0 {
            self.backlog = Some(backlog);
        }
        result.map(|_| ())
    }
}
