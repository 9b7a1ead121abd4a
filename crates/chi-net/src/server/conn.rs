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

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::net::TcpStream;

use crate::handler::Handler;
use crate::server::MESSAGE_LOG_TARGET;
use crate::shutdown::Shared;

/// Reads per `drive` call before yielding to other connections on the loop.
const READS_PER_TURN: usize = 16;
/// Output buffer capacity kept once everything is sent; more is freed, so idle
/// connections stay small.
const KEEP_CAPACITY: usize = 4 * 1024;

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

/// Why a connection closed (logged at DEBUG).
#[derive(Debug)]
pub(crate) enum CloseReason {
    /// The client sent FIN and got every answer.
    PeerClosed,
    /// Drained during a shutdown.
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

impl CloseReason {
    pub(crate) fn is_forced(&self) -> bool {
        matches!(self, CloseReason::Forced)
    }
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
    peer: SocketAddr,
    log_messages: bool,
) -> Result<(), CloseReason> {
    if log_messages {
        tracing::debug!(target: MESSAGE_LOG_TARGET, %peer, "{}", String::from_utf8_lossy(input));
    }
    catch_unwind(AssertUnwindSafe(|| handler.handle(input, output)))
        .map_err(|_| CloseReason::HandlerPanicked)
}

/// What a loop lends a connection for one `drive`.
pub(crate) struct DriveCtx<'a> {
    pub(crate) handler: &'a dyn Handler,
    pub(crate) buf: &'a mut [u8],
    pub(crate) output_cap: usize,
    pub(crate) log_messages: bool,
    pub(crate) now: Instant,
    /// The loop's largest pending output so far; raised (and published) here.
    pub(crate) peak: &'a mut usize,
    pub(crate) shared: &'a Shared,
}

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Unique per loop; tells a recycled slot from the connection an idle entry was made for.
    pub(crate) id: u64,
    pub(crate) last_activity: Instant,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    out: Vec<u8>,
    /// `out[..out_pos]` is sent already.
    out_pos: usize,
    phase: Phase,
    /// The client sent FIN.
    read_closed: bool,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, id: u64, now: Instant) -> Conn {
        Conn {
            stream,
            peer,
            id,
            last_activity: now,
            bytes_in: 0,
            bytes_out: 0,
            out: Vec::new(),
            out_pos: 0,
            phase: Phase::Open,
            read_closed: false,
        }
    }

    /// Switches to draining (a no-op if already draining or lingering).
    pub(crate) fn start_drain(&mut self) {
        if self.phase == Phase::Open {
            self.phase = Phase::Draining;
        }
    }

    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Moves bytes until the socket would block, the read budget ends, or the connection is done.
    pub(crate) fn drive(&mut self, ctx: &mut DriveCtx<'_>) -> Progress {
        let mut budget = READS_PER_TURN;
        loop {
            // FLUSH
            if let Err(e) = self.flush(ctx.now) {
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
            if budget == 0 {
                return Progress::Again;
            }
            budget -= 1;
            // READ
            match self.stream.read(ctx.buf) {
                Ok(0) => self.read_closed = true,
                Ok(n) => {
                    self.last_activity = ctx.now;
                    if self.phase == Phase::Linger {
                        continue; // input after our FIN is dropped
                    }
                    self.bytes_in += n as u64;
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

    /// Runs the handler on the first `n` bytes of the loop's buffer, appending to `out`.
    fn answer(&mut self, n: usize, ctx: &mut DriveCtx<'_>) -> Result<(), CloseReason> {
        // Drop the sent prefix when it is at least as long as what remains: each byte moves
        // at most once per byte sent, and `out` stays within twice the pending output.
        if self.out_pos > 0 && self.out_pos >= self.pending() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        handle_chunk(
            ctx.handler,
            &ctx.buf[..n],
            &mut self.out,
            self.peer,
            ctx.log_messages,
        )?;
        let pending = self.pending();
        if pending > *ctx.peak {
            *ctx.peak = pending;
            ctx.shared.peak_output.fetch_max(pending, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes pending output until done or the socket would block.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.bytes_out += n as u64;
                    self.last_activity = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        Ok(())
    }
}
