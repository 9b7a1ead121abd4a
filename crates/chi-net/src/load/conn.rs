//! One connection of a load run: connecting, then (active connections) the lockstep exchange
//! of requests and answers, checking every answer byte as it arrives.
//!
//! The exchange runs on an edge-triggered poller, so the rules that keep it correct without
//! extra system calls are:
//! - write until the request is out or the socket would block (then a writable edge follows
//!   when the kernel frees space);
//! - read only after a readable edge, and keep reading until a read returns less than asked
//!   (the receive queue is then empty; the next arrival raises a new edge) or the answer is
//!   complete;
//! - a new request is written at once when the previous answer completes, without waiting for
//!   an edge, and nothing is read until its answer raises one.
//!
//! Writing and reading interleave, so a message larger than the socket buffers (1 MiB) streams
//! through a server that answers as it reads.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::payload::{HEADER_MAX, Payload};
use super::tally::Tally;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Not started: waiting for a place in the connect window.
    Queued,
    /// `connect` issued, waiting for the handshake.
    Connecting,
    /// Connected (active: exchanging messages once the run starts; idle: holding).
    Open,
    /// Finished, failed or closed: no socket any more.
    Done,
}

/// Starts a non-blocking connect to `addr` (close-on-exec, as mio creates every socket).
pub(crate) fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect(addr)
}

/// After an event on a connecting socket: `Ok(true)` connected, `Ok(false)` still in progress,
/// `Err` failed.
pub(crate) fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e)
            if e.kind() == io::ErrorKind::NotConnected
                || e.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// What an active connection needs from its worker while it runs.
pub(crate) struct DriveCtx<'a> {
    pub(crate) payload: &'a Payload,
    /// The worker's read buffer.
    pub(crate) scratch: &'a mut [u8],
    pub(crate) tally: &'a mut Tally,
    /// Unmeasured messages before the measured ones.
    pub(crate) warmup: u64,
    /// `warmup + messages`; `u64::MAX` when only the duration ends the run.
    pub(crate) total: u64,
    /// When the first requests of the run went out.
    pub(crate) go: Instant,
    /// Open loop: seconds between two requests of one connection.
    pub(crate) period: Option<f64>,
    /// Active connections in the run (spreads the connections' schedules over a period).
    pub(crate) connections: u64,
}

impl DriveCtx<'_> {
    /// Open loop: when message `seq` of connection `id` is meant to go out; `None` for closed
    /// loop (it goes when the previous answer is in).
    fn intended(&self, id: u64, seq: u64) -> Option<Instant> {
        let period = self.period?;
        let offset = (seq as f64 + id as f64 / self.connections as f64) * period;
        self.go
            .checked_add(Duration::try_from_secs_f64(offset).ok()?)
    }
}

/// An active connection: sends `total` messages in lockstep.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) stream: Option<TcpStream>,
    pub(crate) state: State,
    /// The connection's number in the run (0..C), which its headers encode.
    id: u64,
    /// The message being exchanged (0-based, warm-up first).
    seq: u64,
    header: [u8; HEADER_MAX],
    written: usize,
    received: usize,
    /// Some received byte of the current answer differed from the expected one.
    wrong: bool,
    /// When the current request's first byte was written.
    started: Instant,
    /// When it was meant to be written (open loop; else `started`): latency counts from here.
    intended: Instant,
    /// Open loop: the next request waits until then (nothing is under way meanwhile).
    pub(crate) due: Option<Instant>,
    /// `due` was set since the worker last looked (it then queues the connection).
    fresh_due: bool,
    answered: bool,
}

impl Active {
    pub(crate) fn new(id: u64, now: Instant) -> Active {
        Active {
            stream: None,
            state: State::Queued,
            id,
            seq: 0,
            header: [0; HEADER_MAX],
            written: 0,
            received: 0,
            wrong: false,
            started: now,
            intended: now,
            due: None,
            fresh_due: false,
            answered: false,
        }
    }

    /// Takes the time this connection's next request is due, if it was just scheduled.
    pub(crate) fn take_fresh_due(&mut self) -> Option<Instant> {
        if std::mem::take(&mut self.fresh_due) {
            self.due
        } else {
            None
        }
    }

    /// Open loop: the next request's time has come; writes it. True when the connection
    /// finished (it failed).
    pub(crate) fn resume(&mut self, cx: &mut DriveCtx<'_>, now: Instant) -> bool {
        let Some(intended) = self.due.take() else {
            return false;
        };
        if self.state != State::Open {
            return false;
        }
        self.start_message(cx, intended, now);
        self.drive(cx, false, true, false)
    }

    /// Whether the answer under way has taken longer than `limit`.
    pub(crate) fn overdue(&self, now: Instant, limit: Duration) -> bool {
        self.state == State::Open
            && self.due.is_none()
            && now.saturating_duration_since(self.started) > limit
    }

    fn wait_until(&mut self, due: Instant) {
        self.written = 0;
        self.received = 0;
        self.wrong = false;
        self.due = Some(due);
        self.fresh_due = true;
    }

    /// Starts the first message and drives the connection as far as it goes. Returns true
    /// when the connection is finished (only when it has no message to send, or fails).
    pub(crate) fn begin(&mut self, cx: &mut DriveCtx<'_>, now: Instant) -> bool {
        debug_assert_eq!(self.state, State::Open);
        if cx.total == 0 {
            self.close();
            return true;
        }
        match cx.intended(self.id, 0) {
            Some(due) if due > now => {
                self.wait_until(due);
                return false;
            }
            intended => self.start_message(cx, intended.unwrap_or(now), now),
        }
        // Read until the socket would block, too: the server may have closed the connection
        // (a limit, a shutdown) while the run waited for every connection, and that edge has
        // passed.
        self.drive(cx, true, true, true)
    }

    fn start_message(&mut self, cx: &DriveCtx<'_>, intended: Instant, now: Instant) {
        cx.payload.header(self.id, self.seq, &mut self.header);
        self.written = 0;
        self.received = 0;
        self.wrong = false;
        self.started = now;
        self.intended = intended;
        self.due = None;
    }

    /// Makes what progress the socket allows after an event. Returns true when the connection
    /// has finished (all messages done, or lost).
    ///
    /// `closing`: the event reported the peer's FIN or an error. A short read then does not
    /// mean "nothing more to read": the end of stream (or the error) may still be waiting
    /// behind the data, and its edge has been consumed, so reading goes on until the socket
    /// says `WouldBlock`, end of stream or error.
    pub(crate) fn drive(
        &mut self,
        cx: &mut DriveCtx<'_>,
        mut readable: bool,
        mut writable: bool,
        closing: bool,
    ) -> bool {
        let size = cx.payload.size();
        if self.due.is_some() {
            // Waiting for the next request's time: only a close matters.
            if closing {
                return self.lost(cx, &io::ErrorKind::UnexpectedEof.into());
            }
            return false;
        }
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return true;
            };
            let mut progressed = false;
            // SEND
            if writable && self.written < size {
                let slices = cx.payload.slices(&self.header, self.written);
                match stream.write_vectored(&slices) {
                    Ok(0) => return self.lost(cx, &io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.written += n;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.lost(cx, &e),
                }
            }
            // RECEIVE
            if readable && self.received < size {
                let want = (size - self.received).min(cx.scratch.len());
                match stream.read(&mut cx.scratch[..want]) {
                    Ok(0) => return self.lost(cx, &io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        if !self.wrong
                            && !cx.payload.answer_matches(
                                &self.header,
                                self.received,
                                &cx.scratch[..n],
                            )
                        {
                            self.wrong = true;
                        }
                        self.received += n;
                        progressed = true;
                        if n < want && !closing {
                            // The receive queue is empty: wait for the next edge.
                            readable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.lost(cx, &e),
                }
            }
            // ANSWER COMPLETE
            if self.received == size {
                if let Some(finished) = self.advance(cx, Instant::now()) {
                    return finished;
                }
                writable = true;
                // Nothing to read until the answer raises an edge — unless the peer's FIN has
                // already been seen, whose edge will not come again.
                readable = closing;
                continue;
            }
            if !progressed {
                return false;
            }
        }
    }

    /// After a complete answer: counts it and starts the next message, now or (open loop) at
    /// its time. `Some(finished)` when the caller must return: the last message is done, or the
    /// next one waits.
    fn advance(&mut self, cx: &mut DriveCtx<'_>, now: Instant) -> Option<bool> {
        self.complete(cx, now);
        self.seq += 1;
        if self.seq == cx.total {
            self.close();
            return Some(true);
        }
        match cx.intended(self.id, self.seq) {
            Some(due) if due > now => {
                self.wait_until(due);
                Some(false)
            }
            intended => {
                self.start_message(cx, intended.unwrap_or(now), now);
                None
            }
        }
    }

    fn complete(&mut self, cx: &mut DriveCtx<'_>, now: Instant) {
        let measured = self.seq >= cx.warmup;
        if measured {
            cx.tally.measured_span(self.started, now);
        }
        if self.wrong {
            cx.tally.wrong += 1;
            return;
        }
        cx.tally.ok += 1;
        if !self.answered {
            self.answered = true;
            cx.tally.first_answer(now.saturating_duration_since(cx.go));
        }
        if measured {
            cx.tally.measured_ok += 1;
            cx.tally
                .record_latency(now.saturating_duration_since(self.intended));
        }
    }

    /// The connection failed or closed mid-run: the current answer is short (or missing if not
    /// a byte of it came), the messages not yet sent are missing.
    fn lost(&mut self, cx: &mut DriveCtx<'_>, err: &io::Error) -> bool {
        tracing::debug!(conn = self.id, message = self.seq, error = %err, "load connection lost");
        self.abandon(cx.tally, cx.total);
        true
    }

    /// The duration ended the run: the answer under way (if a request is out) counts as in
    /// flight; messages not yet sent are not counted.
    pub(crate) fn finish_in_flight(&mut self, tally: &mut Tally, total: u64) {
        if self.state == State::Open && self.seq < total && self.due.is_none() {
            tally.in_flight += 1;
        }
        self.close();
    }

    /// Closes the connection, counting everything unfinished as short or missing (the run is
    /// ending, or the connection was lost). A connection that never connected counts as a
    /// connect failure by its worker, not here.
    pub(crate) fn abandon(&mut self, tally: &mut Tally, total: u64) {
        if self.state == State::Open && self.seq < total {
            if self.received > 0 {
                tally.short += 1;
            } else {
                tally.missing += 1;
            }
            if total != u64::MAX {
                tally.missing += total - self.seq - 1;
            }
            self.seq = total;
        }
        self.close();
    }

    fn close(&mut self) {
        self.stream = None;
        self.state = State::Done;
    }
}

/// An idle connection: connects, then stays silent until the run ends, noticing if the server
/// closes it.
#[derive(Debug)]
pub(crate) struct Idle {
    pub(crate) stream: Option<TcpStream>,
    pub(crate) state: State,
}

impl Idle {
    pub(crate) fn new() -> Idle {
        Idle {
            stream: None,
            state: State::Queued,
        }
    }

    /// After an event on an open idle connection: drains whatever the server sent (nothing, for
    /// a server of chi's protocol) and returns true if the server closed it.
    pub(crate) fn closed_by_server(&mut self, scratch: &mut [u8]) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        loop {
            match stream.read(scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.stream = None;
        self.state = State::Done;
        true
    }
}
