//! The `uring` model: the event model's acceptor and hand-off, with one io_uring event loop
//! per worker instead of one epoll loop.
//!
//! Each loop keeps a multishot receive armed per connection, into a ring of provided buffers
//! (so an idle connection holds no receive buffer), runs the handler on every received chunk,
//! and queues one send per connection at a time; every operation of a loop turn goes to the
//! kernel in the one `io_uring_enter` that also waits for the next completions. The acceptor
//! wakes a loop through a mio `Waker` whose epoll descriptor the ring polls.
//!
//! Per connection, as in the event model:
//! - output cap: while the unsent output is over the cap the multishot receive is cancelled;
//!   input the kernel had already delivered is kept and answered once the output drains;
//! - half-close: after the client's FIN the rest is answered and sent, then the connection
//!   closes;
//! - drain: the receive is cancelled, the socket is read until it would block, everything is
//!   answered and sent, then FIN; input after that is dropped until the client closes;
//! - forced close (idle timeout, drain deadline, stop, errors): every operation in flight is
//!   cancelled, and the connection is released once its last completion has come back.
//!
//! All `unsafe` code lives in [`sys`].

mod conns;
mod sys;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Poll, Token, Waker};

use self::conns::{Conns, Phase, Recv, Settings, UConn};
use self::sys::{BUF_SIZE, Completion, Ring};
use super::chunk::{CloseReason, log_closed};
use super::conn::Peer;
use super::event::{LoopHandle, LoopMsg, guard_loop, run_loops, try_recv};
use super::{RunContext, ServerError, deadline_after};

/// User data of the poll on the waker's epoll descriptor, and of its cancel.
const WAKE: u64 = u64::MAX;
const WAKE_CANCEL: u64 = u64::MAX - 1;
/// Operation kinds, in the low bits of the user data (the slot is above them).
const RECV: u64 = 0;
const SEND: u64 = 1;
const CANCEL: u64 = 2;
const SHUTDOWN: u64 = 3;
const KIND_BITS: u32 = 2;
/// The send buffer is kept for the next answer unless it grew beyond this.
const SEND_BUF_KEEP: usize = 4 * BUF_SIZE;
/// Turns spent waiting for the last completions when a loop ends.
const TEARDOWN_TURNS: usize = 50;

fn user_data(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << KIND_BITS) | kind
}

/// Sets up (and drops) one ring as the loops will: an error where io_uring is unavailable.
///
/// On a thread of its own: tearing a ring down can leave task work for the thread that made
/// it, and that work interrupts the thread's next blocking socket call that has a timeout
/// (`EINTR`). The caller of `Server::bind` must never see that (a test client on the same
/// thread did).
pub(crate) fn check_available() -> io::Result<()> {
    std::thread::Builder::new()
        .name("chi-uring-probe".into())
        .spawn(|| Ring::new().map(drop))?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the io_uring probe panicked")))
}

pub(crate) fn run(ctx: RunContext, ready: &mut dyn FnMut()) -> Result<(), ServerError> {
    run_loops(ctx, ready, &spawn_loop)
}

/// Starts a loop thread; its ring is set up on that thread, and a setup failure is returned
/// here, so `run` fails at start where io_uring is unavailable.
fn spawn_loop(id: usize, ctx: &RunContext) -> Result<LoopHandle, ServerError> {
    let poll = Poll::new().map_err(ServerError::Setup)?;
    let waker = Arc::new(Waker::new(poll.registry(), Token(0)).map_err(ServerError::Setup)?);
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let loop_rx = Arc::clone(&rx);
    let (setup_tx, setup_rx) = mpsc::sync_channel(1);
    let settings = Settings {
        handler: Arc::clone(&ctx.handler),
        shared: Arc::clone(&ctx.shared),
        output_cap: ctx.config.output_cap(),
        idle_timeout: ctx.config.idle_timeout(),
        log_messages: ctx.log_messages,
    };
    // ORDERING: SeqCst, as every use of `running_loops`.
    ctx.shared.running_loops.fetch_add(1, Ordering::SeqCst);
    let thread = std::thread::Builder::new()
        .name(format!("chi-net-uring-{id}"))
        .spawn(move || {
            let ring = match Ring::new() {
                Ok(ring) => ring,
                Err(e) => {
                    let _ = setup_tx.send(Err(e));
                    settings.shared.loop_exited();
                    return;
                }
            };
            let _ = setup_tx.send(Ok(()));
            let event_loop = UringLoop {
                id,
                ring,
                poll,
                rx: loop_rx,
                conns: Conns::default(),
                idle: BinaryHeap::new(),
                touched: Vec::new(),
                starved: Vec::new(),
                completions: Vec::new(),
                scratch: vec![0; BUF_SIZE].into_boxed_slice(),
                epoch: Instant::now(),
                settings,
                next_id: 0,
                peak: 0,
                draining: false,
                drain_deadline: None,
                closing_all: false,
                stop: false,
            };
            event_loop.run_guarded();
        });
    let thread = match thread {
        Ok(thread) => thread,
        Err(e) => {
            // ORDERING: SeqCst, as above.
            ctx.shared.running_loops.fetch_sub(1, Ordering::SeqCst);
            return Err(ServerError::Setup(e));
        }
    };
    match setup_rx.recv() {
        Ok(Ok(())) => Ok(LoopHandle {
            tx,
            rx,
            waker,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(ServerError::Uring(e))
        }
        Err(_) => {
            let _ = thread.join();
            Err(ServerError::Setup(io::Error::other(
                "a uring loop ended during setup",
            )))
        }
    }
}

struct UringLoop {
    id: usize,
    ring: Ring,
    /// Only the acceptor's `Waker` is registered here; the ring polls its descriptor.
    poll: Poll,
    /// The acceptor's messages (its [`LoopHandle`] closes what is left once this loop ended).
    rx: Arc<Mutex<Receiver<LoopMsg>>>,
    conns: Conns,
    /// Idle deadlines as (deadline, connection id, slot), earliest first; checked when popped.
    idle: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Connections to advance at the end of this turn.
    touched: Vec<usize>,
    /// Connections whose receive ended for lack of buffers: re-armed at the end of the turn.
    starved: Vec<usize>,
    completions: Vec<Completion>,
    /// Where a draining connection is read into.
    scratch: Box<[u8]>,
    epoch: Instant,
    settings: Settings,
    next_id: u64,
    peak: usize,
    /// A drain was requested.
    draining: bool,
    /// When the drain gives up (`None`: never, or no drain).
    drain_deadline: Option<Instant>,
    /// Every connection has been told to close (stop or drain deadline).
    closing_all: bool,
    stop: bool,
}

impl UringLoop {
    // ===== MAIN LOOP =====
    /// Runs the loop; a ring failure or a panic is reported as this thread's death, which
    /// stops the server (as an event loop's does).
    fn run_guarded(mut self) {
        let name = format!("uring loop {}", self.id);
        let shared = Arc::clone(&self.settings.shared);
        // After a panic, `teardown` reaps what is in flight and books the connections (a ring
        // it cannot reap leaks its buffers rather than free memory the kernel may touch).
        guard_loop(&mut self, &shared, &name, "ring", Self::run, Self::teardown);
    }

    fn run(&mut self) -> io::Result<()> {
        let mut result = self.ring.poll_readable(self.poll.as_raw_fd(), WAKE);
        while result.is_ok() {
            let timeout = self.next_timeout(Instant::now());
            result = self.ring.submit_and_wait(timeout);
            if result.is_err() {
                break;
            }
            #[cfg(test)]
            self.settings
                .shared
                .maybe_inject_fault(super::state::Fault::Worker);
            let mut completions = std::mem::take(&mut self.completions);
            self.ring.completions(&mut completions);
            let now = Instant::now();
            for completion in completions.drain(..) {
                self.complete(completion, now);
            }
            self.completions = completions;
            for slot in std::mem::take(&mut self.starved) {
                self.touch(slot);
            }
            let now_ms = self.millis(now);
            while let Some(slot) = self.touched.pop() {
                self.advance(slot, now_ms);
            }
            self.expire_idle(now);
            if self.finished(now) {
                break;
            }
        }
        if let Err(e) = &result {
            tracing::error!(event_loop = self.id, error = %e, "uring loop failed; closing its connections");
        }
        self.teardown();
        result
    }

    /// Whether the loop is done: stopped or drained, with every connection released.
    fn finished(&mut self, now: Instant) -> bool {
        let past_deadline = self.drain_deadline.is_some_and(|d| now >= d);
        if (self.stop || past_deadline) && !self.closing_all {
            if past_deadline && self.conns.open > 0 {
                tracing::warn!(
                    event_loop = self.id,
                    open = self.conns.open,
                    "drain timeout: closing the remaining connections"
                );
            }
            self.close_all();
        }
        (self.stop || self.draining) && self.conns.open == 0
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let idle = self.idle.peek().map(|Reverse((at, _, _))| *at);
        let deadline = self.drain_deadline.filter(|_| !self.closing_all);
        let wake_at = [idle, deadline].into_iter().flatten().min();
        wake_at.map(|at| at.saturating_duration_since(now))
    }

    /// Cancels the wake poll, waits (bounded) for the last completions, and releases every
    /// connection still open (only after a ring failure: otherwise there is none).
    fn teardown(&mut self) {
        self.close_all();
        let _ = self.ring.cancel(WAKE, WAKE_CANCEL);
        let mut completions = Vec::new();
        for _ in 0..TEARDOWN_TURNS {
            if self.ring.in_flight() == 0 {
                break;
            }
            if self
                .ring
                .submit_and_wait(Some(Duration::from_millis(100)))
                .is_err()
            {
                break;
            }
            self.ring.completions(&mut completions);
            let now = Instant::now();
            for completion in completions.drain(..) {
                self.complete(completion, now);
            }
            let now_ms = self.millis(now);
            while let Some(slot) = self.touched.pop() {
                self.advance(slot, now_ms);
            }
        }
        for slot in self.conns.occupied() {
            if let Some(conn) = self.conns.get(slot) {
                // The ring is gone or stuck: nothing will complete any more.
                (conn.recv, conn.sending, conn.shutdown_busy, conn.cancels) =
                    (Recv::Idle, None, false, 0);
                conn.closing.get_or_insert(CloseReason::Forced);
            }
            self.finish_close(slot);
        }
    }

    // ===== COMPLETIONS =====
    fn complete(&mut self, mut completion: Completion, now: Instant) {
        match completion.user_data {
            // Cancelled at teardown: not re-armed. Once every connection was told to close
            // (stop, drain deadline, teardown) no message matters any more: not re-armed
            // either, and what is still queued is closed and counted by the acceptor's join.
            WAKE if completion.result == -libc::ECANCELED || self.closing_all => return,
            WAKE => return self.woken(now),
            WAKE_CANCEL => return,
            _ => {}
        }
        let slot = (completion.user_data >> KIND_BITS) as usize;
        let now_ms = self.millis(now);
        match completion.user_data & ((1 << KIND_BITS) - 1) {
            RECV => self.received(slot, &mut completion, now_ms),
            SEND => self.sent(slot, &completion, now_ms),
            CANCEL => {
                if let Some(conn) = self.conns.get(slot) {
                    conn.cancels -= 1;
                }
            }
            _ => self.shut_down(slot, &completion),
        }
        self.touch(slot);
    }

    fn received(&mut self, slot: usize, completion: &mut Completion, now_ms: u64) {
        let buf = self.ring.take_buf(completion);
        let Some(conn) = self.conns.get(slot) else {
            if let Some(buf) = buf {
                self.ring.recycle(buf);
            }
            return;
        };
        if !completion.more() {
            conn.recv = Recv::Idle;
        }
        let mut failed = None;
        match completion.result {
            0 => conn.read_closed = true,
            n if n > 0 => {
                conn.last_activity_ms = now_ms;
                if let Some(buf) = &buf
                    && conn.closing.is_none()
                    && conn.phase != Phase::Linger
                {
                    let input = self.ring.bytes(buf);
                    conn.bytes_in += input.len() as u64;
                    if conn.unsent() > self.settings.output_cap || !conn.unread.is_empty() {
                        conn.unread.extend_from_slice(input);
                    } else {
                        failed = self.settings.answer(conn, input).err();
                    }
                }
            }
            e if -e == libc::ENOBUFS => self.starved.push(slot),
            e if -e == libc::ECANCELED => {}
            e => failed = Some(CloseReason::Error(io::Error::from_raw_os_error(-e))),
        }
        if let Some(buf) = buf {
            self.ring.recycle(buf);
        }
        if let Some(reason) = failed {
            self.begin_close(slot, reason);
        }
    }

    fn sent(&mut self, slot: usize, completion: &Completion, now_ms: u64) {
        let bytes = self.ring.take_send(completion);
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let Some((from, len)) = conn.sending.take() else {
            return;
        };
        let failure = match usize::try_from(completion.result) {
            Ok(0) if from < len => Some(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.bytes_out += n as u64;
                conn.last_activity_ms = now_ms;
                match bytes {
                    Some(bytes) if from + n < len && conn.closing.is_none() => {
                        // A short send: the rest goes next, before any newer answer.
                        let fd = conn.fd();
                        conn.sending = Some((from + n, len));
                        let sent = self.ring.send(fd, bytes, from + n, user_data(slot, SEND));
                        sent.err().inspect(|_| conn.sending = None)
                    }
                    Some(mut bytes) if conn.pending.is_empty() && len <= SEND_BUF_KEEP => {
                        bytes.clear();
                        conn.pending = bytes;
                        None
                    }
                    _ => None,
                }
            }
            Err(_) if -completion.result == libc::ECANCELED => None,
            Err(_) => Some(io::Error::from_raw_os_error(-completion.result)),
        };
        if let Some(e) = failure {
            self.begin_close(slot, CloseReason::Error(e));
        }
    }

    fn shut_down(&mut self, slot: usize, completion: &Completion) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        conn.shutdown_busy = false;
        if completion.result < 0 {
            let e = io::Error::from_raw_os_error(-completion.result);
            self.begin_close(slot, CloseReason::Error(e));
        } else {
            conn.phase = Phase::Linger;
        }
    }

    // ===== MESSAGES FROM THE ACCEPTOR =====
    fn woken(&mut self, now: Instant) {
        // Consume the waker's edge, so the next wake makes the epoll descriptor readable again.
        let mut events = Events::with_capacity(4);
        let _ = self.poll.poll(&mut events, Some(Duration::ZERO));
        loop {
            match try_recv(&self.rx) {
                Ok(LoopMsg::Conn(stream, peer)) => self.open(stream, peer, now),
                Ok(LoopMsg::Drain(deadline)) => {
                    self.draining = true;
                    self.drain_deadline = deadline;
                    for slot in self.conns.occupied() {
                        if let Some(conn) = self.conns.get(slot)
                            && conn.phase == Phase::Open
                        {
                            conn.phase = Phase::Draining;
                        }
                        self.touch(slot);
                    }
                }
                Ok(LoopMsg::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stop = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if let Err(e) = self.ring.poll_readable(self.poll.as_raw_fd(), WAKE) {
            tracing::error!(event_loop = self.id, error = %e, "cannot re-arm the uring loop's waker");
            self.stop = true;
        }
    }

    fn open(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let phase = if self.draining {
            Phase::Draining
        } else {
            Phase::Open
        };
        let slot = self.conns.add(UConn {
            stream,
            peer: Peer::from(peer),
            id,
            last_activity_ms: self.millis(now),
            bytes_in: 0,
            bytes_out: 0,
            phase,
            recv: Recv::Idle,
            read_closed: false,
            drain_read_done: false,
            pending: Vec::new(),
            unread: Vec::new(),
            sending: None,
            shutdown_busy: false,
            cancels: 0,
            closing: None,
            queued: false,
        });
        // A deadline past the clock's range is never reached: no timer.
        if let Some(at) = self
            .settings
            .idle_timeout
            .and_then(|t| deadline_after(now, t))
        {
            self.idle.push(Reverse((at, id, slot)));
        }
        self.touch(slot);
    }

    // ===== CONNECTIONS =====
    fn touch(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get(slot)
            && !conn.queued
        {
            conn.queued = true;
            self.touched.push(slot);
        }
    }

    /// `now` as milliseconds since the loop's epoch, rounded up (see the event model).
    fn millis(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        let ms = since.as_nanos().div_ceil(1_000_000);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// Moves a connection on after its completions: answers held input, reads a draining
    /// socket, queues a send, re-arms or cancels the receive, sends FIN, or closes.
    fn advance(&mut self, slot: usize, now_ms: u64) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        conn.queued = false;
        if conn.closing.is_some() {
            return self.finish_close(slot);
        }
        let step = self
            .answer_unread(slot)
            .and_then(|()| self.read_draining(slot, now_ms))
            .and_then(|()| self.queue_send(slot));
        if let Err(reason) = step {
            return self.begin_close(slot, reason);
        }
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let (unsent, cap) = (conn.unsent(), self.settings.output_cap);
        let idle_out = unsent == 0 && conn.unread.is_empty();
        if conn.read_closed && idle_out && !conn.shutdown_busy {
            let reason = match conn.phase {
                Phase::Open => CloseReason::PeerClosed,
                _ => CloseReason::Drained,
            };
            return self.begin_close(slot, reason);
        }
        let want_recv = !conn.read_closed
            && match conn.phase {
                Phase::Open => unsent <= cap && conn.unread.is_empty(),
                Phase::Draining => false,
                Phase::Linger => true,
            };
        let fd = conn.fd();
        let result = match (want_recv, conn.recv) {
            (true, Recv::Idle) => {
                conn.recv = Recv::Armed;
                self.ring.recv_multi(fd, user_data(slot, RECV))
            }
            (false, Recv::Armed) => {
                conn.recv = Recv::Cancelling;
                conn.cancels += 1;
                let cancel = user_data(slot, CANCEL);
                self.ring.cancel(user_data(slot, RECV), cancel)
            }
            _ if conn.phase == Phase::Draining
                && conn.drain_read_done
                && idle_out
                && !conn.shutdown_busy =>
            {
                conn.shutdown_busy = true;
                self.ring.shutdown_write(fd, user_data(slot, SHUTDOWN))
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.begin_close(slot, CloseReason::Error(e));
        }
    }

    /// Answers input held while the output was over the cap, while it is under the cap.
    fn answer_unread(&mut self, slot: usize) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get(slot) else {
            return Ok(());
        };
        while !conn.unread.is_empty() && conn.unsent() <= self.settings.output_cap {
            let n = conn.unread.len().min(BUF_SIZE);
            let unread = std::mem::take(&mut conn.unread);
            let answered = self.settings.answer(conn, &unread[..n]);
            conn.unread = unread;
            answered?;
            conn.unread.drain(..n);
            if conn.unread.is_empty() {
                conn.unread = Vec::new();
            }
        }
        Ok(())
    }

    /// Draining, once the receive has stopped: reads the socket until it would block,
    /// answering as it goes, while the output is under the cap.
    fn read_draining(&mut self, slot: usize, now_ms: u64) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get(slot) else {
            return Ok(());
        };
        if conn.phase != Phase::Draining || conn.recv != Recv::Idle || conn.read_closed {
            return Ok(());
        }
        while !conn.drain_read_done && conn.unsent() <= self.settings.output_cap {
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    conn.read_closed = true;
                    break;
                }
                Ok(n) => {
                    conn.last_activity_ms = now_ms;
                    conn.bytes_in += n as u64;
                    self.settings.answer(conn, &self.scratch[..n])?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.drain_read_done = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::Error(e)),
            }
        }
        Ok(())
    }

    /// Hands the pending answers to the ring when no send is in flight.
    fn queue_send(&mut self, slot: usize) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get(slot) else {
            return Ok(());
        };
        let unsent = conn.unsent();
        if unsent > self.peak {
            self.peak = unsent;
            self.settings
                .shared
                .peak_output
                .fetch_max(unsent, Ordering::Relaxed);
        }
        if conn.sending.is_some() || conn.pending.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut conn.pending);
        conn.sending = Some((0, bytes.len()));
        let fd = conn.fd();
        self.ring
            .send(fd, bytes, 0, user_data(slot, SEND))
            .map_err(|e| {
                conn.sending = None;
                CloseReason::Error(e)
            })
    }

    /// Starts closing: cancels what is in flight; the connection is released once nothing is.
    fn begin_close(&mut self, slot: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        conn.closing = Some(reason);
        let mut targets = Vec::new();
        if conn.recv == Recv::Armed {
            conn.recv = Recv::Cancelling;
            targets.push(user_data(slot, RECV));
        }
        if conn.sending.is_some() {
            targets.push(user_data(slot, SEND));
        }
        for target in targets {
            if self.ring.cancel(target, user_data(slot, CANCEL)).is_ok()
                && let Some(conn) = self.conns.get(slot)
            {
                conn.cancels += 1;
            }
        }
        self.finish_close(slot);
    }

    /// Releases a closing connection once no operation of it is in flight.
    fn finish_close(&mut self, slot: usize) {
        match self.conns.get(slot) {
            Some(conn) if conn.closing.is_some() && !conn.has_ops() => {}
            _ => return,
        }
        let Some(conn) = self.conns.take(slot) else {
            return;
        };
        let UConn {
            stream,
            peer,
            bytes_in,
            bytes_out,
            closing,
            ..
        } = conn;
        let reason = closing.unwrap_or(CloseReason::Forced);
        log_closed(&peer, &reason, bytes_in, bytes_out);
        // The descriptor goes first: the acceptor may be waiting for one.
        drop(stream);
        self.settings
            .shared
            .connection_closed(bytes_in, bytes_out, &reason);
    }

    fn close_all(&mut self) {
        self.closing_all = true;
        for slot in self.conns.occupied() {
            self.begin_close(slot, CloseReason::Forced);
        }
    }

    fn expire_idle(&mut self, now: Instant) {
        let Some(timeout) = self.settings.idle_timeout else {
            return;
        };
        while let Some(Reverse((at, id, slot))) = self.idle.peek().copied()
            && at <= now
        {
            self.idle.pop();
            let (epoch, conn) = (self.epoch, self.conns.get(slot));
            let last = match conn {
                Some(conn) if conn.id == id && conn.closing.is_none() => conn.last_activity_ms,
                _ => continue, // closed, or the slot now holds another connection
            };
            let due = deadline_after(epoch, Duration::from_millis(last))
                .and_then(|active| deadline_after(active, timeout));
            match due {
                Some(due) if due > now => self.idle.push(Reverse((due, id, slot))),
                Some(_) => self.begin_close(slot, CloseReason::IdleTimeout),
                None => {} // never reached: no timer
            }
        }
    }
}

#[cfg(test)]
mod tests;
