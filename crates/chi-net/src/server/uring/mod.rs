//! The `uring` model: one io_uring event loop per worker, each accepting on its own listener
//! (see [`accept`]); the acceptor thread of the other models only passes on drain and stop
//! requests, and waits for the loops.
//!
//! Each loop keeps a multishot receive armed per connection, into a ring of provided buffers
//! (so an idle connection holds no receive buffer), runs the handler on every received chunk,
//! and queues one send per connection at a time; every operation of a loop turn goes to the
//! kernel in the one `io_uring_enter` that also waits for the next completions. The acceptor
//! wakes a loop through a mio `Waker` whose epoll descriptor the ring polls. Idle timers,
//! the messages from the acceptor and the drain and stop orders are the event model's
//! (`loops::LoopCore`).
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

mod accept;
mod conns;
mod sys;

use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Poll};

use self::accept::{ACCEPT, ACCEPT_CANCEL, Accept};
use self::conns::{Phase, Recv, SendBufs, Settings, UConn};
use self::sys::{BUF_SIZE, Completion, Ring};
use super::acceptor::at_limit;
use super::chunk::{CloseReason, log_closed};
use super::conn::Peer;
use super::idle::IdleTimers;
use super::loops::{LoopCore, LoopHandle, Order, guard_loop, run_loops, spawn_loop};
use super::slab::Slab;
use super::{RunContext, ServerError};

/// User data of the poll on the waker's epoll descriptor, and of its cancel.
const WAKE: u64 = u64::MAX;
const WAKE_CANCEL: u64 = u64::MAX - 1;
/// Operation kinds, in the low bits of the user data (the slot is above them).
const RECV: u64 = 0;
const SEND: u64 = 1;
const CANCEL: u64 = 2;
const SHUTDOWN: u64 = 3;
const KIND_BITS: u32 = 2;
/// Turns spent waiting for the last completions when a loop ends.
const TEARDOWN_TURNS: usize = 50;

/// Receives the kernel ended for lack of provided buffers, for tests to check.
#[cfg(test)]
static STARVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
    run_loops(ctx, ready, &spawn)
}

/// Starts a loop thread; its ring is set up on that thread, and a setup failure is returned
/// here, so `run` fails at start where io_uring is unavailable.
fn spawn(
    id: usize,
    ctx: &RunContext,
    listener: Option<TcpListener>,
) -> Result<LoopHandle, ServerError> {
    let (setup_tx, setup_rx) = mpsc::sync_channel(1);
    let settings = Settings {
        handler: Arc::clone(&ctx.handler),
        shared: Arc::clone(&ctx.shared),
        output_cap: ctx.config.output_cap(),
        max_connections: ctx.config.max_connections(),
        log_messages: ctx.log_messages,
        // Looking a peer up costs a system call: only for the logs that show it.
        log_peers: ctx.log_messages || tracing::enabled!(tracing::Level::DEBUG),
    };
    let idle_timeout = ctx.config.idle_timeout();
    let name = format!("chi-net-uring-{id}");
    let handle = spawn_loop(&ctx.shared, name, move |poll, rx| {
        let ring = match Ring::new() {
            Ok(ring) => ring,
            Err(e) => {
                let _ = setup_tx.send(Err(e));
                return;
            }
        };
        let _ = setup_tx.send(Ok(()));
        let idle = IdleTimers::new(idle_timeout, Arc::clone(&settings.shared));
        let event_loop = UringLoop {
            core: LoopCore::new(id, rx, idle),
            ring,
            accept: Accept::new(listener),
            poll,
            conns: Slab::default(),
            touched: Vec::new(),
            completions: Vec::new(),
            scratch: vec![0; BUF_SIZE].into_boxed_slice(),
            bufs: SendBufs::default(),
            settings,
            peak: 0,
            closing_all: false,
        };
        event_loop.run_guarded();
    })
    .map_err(ServerError::Setup)?;
    // Dropping the handle of a loop that failed joins its thread.
    match setup_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(ServerError::Uring(e)),
        Err(_) => Err(ServerError::Setup(io::Error::other(
            "a uring loop ended during setup",
        ))),
    }
}

struct UringLoop {
    /// The acceptor's messages, the idle timers (entries of closed connections are compacted
    /// as they are released, see `finish_close`), the drain and stop orders.
    core: LoopCore,
    ring: Ring,
    /// This loop's listener and its multishot accept.
    accept: Accept,
    /// Only the acceptor's `Waker` is registered here; the ring polls its descriptor.
    poll: Poll,
    /// Connections by slot (the slot is in the user data of their operations). A slot is
    /// freed only after the last completion of its connection, so no completion names a
    /// reused slot.
    conns: Slab<UConn>,
    /// Connections to advance at the end of this turn (every connection a completion named:
    /// a receive that ended, for lack of buffers too, is re-armed there).
    touched: Vec<usize>,
    completions: Vec<Completion>,
    /// Where a draining connection is read into.
    scratch: Box<[u8]>,
    /// Buffers for answers, shared by the connections.
    bufs: SendBufs,
    settings: Settings,
    peak: usize,
    /// Every connection has been told to close (stop, drain deadline or teardown).
    closing_all: bool,
}

impl UringLoop {
    // ===== MAIN LOOP =====
    /// Runs the loop; a ring failure or a panic is reported as this thread's death, which
    /// stops the server (as an event loop's does).
    fn run_guarded(mut self) {
        let name = format!("uring loop {}", self.core.id);
        let shared = Arc::clone(&self.settings.shared);
        // After a panic, `teardown` reaps what is in flight and books the connections (a ring
        // it cannot reap leaks its buffers rather than free memory the kernel may touch).
        guard_loop(&mut self, &shared, &name, "ring", Self::run, Self::teardown);
    }

    fn run(&mut self) -> io::Result<()> {
        let result = self.serve();
        if let Err(e) = &result {
            tracing::error!(event_loop = self.core.id, error = %e, "uring loop failed; closing its connections");
        }
        self.teardown();
        result
    }

    /// Turns until stopped or drained: each turn submits what the last one queued, waits for
    /// completions, handles them, then moves the connections they named on.
    fn serve(&mut self) -> io::Result<()> {
        self.ring.poll_readable(self.poll.as_raw_fd(), WAKE)?;
        self.accept_turn(Instant::now())?;
        loop {
            let timeout = self.next_timeout(Instant::now());
            self.ring.submit_and_wait(timeout)?;
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
            self.accept_turn(now)?;
            let now_ms = self.core.idle.millis(now);
            while let Some(slot) = self.touched.pop() {
                self.advance(slot, now_ms);
            }
            self.expire_idle(now);
            if self.finished(now) {
                return Ok(());
            }
        }
    }

    /// Whether the loop is done: stopped or drained, with every connection released and the
    /// accept reaped.
    fn finished(&mut self, now: Instant) -> bool {
        let overdue = self.core.drain_overdue(now);
        if (self.core.stop || overdue) && !self.closing_all {
            if overdue && self.conns.len() > 0 {
                tracing::warn!(
                    event_loop = self.core.id,
                    open = self.conns.len(),
                    "drain timeout: closing the remaining connections"
                );
            }
            self.close_all();
        }
        // A draining loop takes its listener's backlog before it ends (see `accept_turn`).
        (self.core.stop || self.core.draining) && self.conns.len() == 0 && !self.accept.in_ring()
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let wake_at = [self.core.wake_at(), self.accept.wake_at(now)]
            .into_iter()
            .flatten()
            .min();
        wake_at.map(|at| at.saturating_duration_since(now))
    }

    /// Cancels the wake poll, waits (bounded) for the last completions, and releases every
    /// connection still open (only after a ring failure: otherwise there is none).
    fn teardown(&mut self) {
        self.close_all();
        let _ = self.accept.stop(&mut self.ring);
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
            let now_ms = self.core.idle.millis(now);
            while let Some(slot) = self.touched.pop() {
                self.advance(slot, now_ms);
            }
        }
        for slot in self.conns.keys() {
            if let Some(conn) = self.conns.get_mut(slot) {
                // The ring is gone or stuck: nothing will complete any more.
                conn.recv = Recv::Idle;
                let busy = conn.busy_mut();
                (busy.sending, busy.shutdown_busy, busy.cancels) = (None, false, 0);
                busy.closing.get_or_insert(CloseReason::Forced);
            }
            self.finish_close(slot);
        }
        // The accept is reaped or the ring is stuck: the listener goes either way.
        let _ = self.accept.close(false);
    }

    // ===== COMPLETIONS =====
    fn complete(&mut self, mut completion: Completion, now: Instant) {
        match completion.user_data() {
            // Cancelled at teardown: not re-armed. Once every connection was told to close
            // (stop, drain deadline, teardown) no message matters any more: not re-armed
            // either, and what is still queued is closed and counted by the acceptor's join.
            WAKE if completion.result() == -libc::ECANCELED || self.closing_all => return,
            WAKE => return self.woken(now),
            ACCEPT => return self.accepted(completion, now),
            WAKE_CANCEL | ACCEPT_CANCEL => return,
            _ => {}
        }
        let slot = (completion.user_data() >> KIND_BITS) as usize;
        let now_ms = self.core.idle.millis(now);
        match completion.user_data() & ((1 << KIND_BITS) - 1) {
            RECV => self.received(slot, &mut completion, now_ms),
            SEND => self.sent(slot, &completion, now_ms),
            CANCEL => {
                if let Some(conn) = self.conns.get_mut(slot) {
                    conn.busy_mut().cancels -= 1;
                }
            }
            _ => self.shut_down(slot, &completion),
        }
        self.touch(slot);
    }

    fn received(&mut self, slot: usize, completion: &mut Completion, now_ms: u64) {
        let buf = self.ring.take_buf(completion);
        let Some(conn) = self.conns.get_mut(slot) else {
            if let Some(buf) = buf {
                self.ring.recycle(buf);
            }
            return;
        };
        if !completion.more() {
            conn.recv = Recv::Idle;
        }
        let mut failed = None;
        match completion.result() {
            0 => conn.read_closed = true,
            n if n > 0 => {
                conn.last_activity_ms = now_ms;
                if let Some(buf) = &buf
                    && !conn.is_closing()
                    && conn.phase != Phase::Linger
                {
                    let input = self.ring.bytes(buf);
                    conn.bytes_in += input.len() as u64;
                    if conn.unsent() > self.settings.output_cap || conn.has_unread() {
                        conn.busy_mut().unread.extend_from_slice(input);
                    } else {
                        failed = self.settings.answer(conn, input, &mut self.bufs).err();
                    }
                }
            }
            e if -e == libc::ENOBUFS => {
                // Every provided buffer was in use: this receive ended (not `more`). The
                // buffers come back as this turn's completions are handled, and `advance`
                // re-arms it at the end of the turn; the data waits in the socket.
                // ORDERING: Relaxed: a test reads it after the server stopped.
                #[cfg(test)]
                STARVED.fetch_add(1, Ordering::Relaxed);
            }
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
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let Some((from, len)) = conn.busy_mut_if_any().and_then(|b| b.sending.take()) else {
            return;
        };
        let failure = match usize::try_from(completion.result()) {
            Ok(0) if from < len => Some(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.bytes_out += n as u64;
                conn.last_activity_ms = now_ms;
                match bytes {
                    Some(bytes) if from + n < len && !conn.is_closing() => {
                        // A short send: the rest goes next, before any newer answer.
                        let fd = conn.fd();
                        conn.busy_mut().sending = Some((from + n, len));
                        let sent = self.ring.send(fd, bytes, from + n, user_data(slot, SEND));
                        sent.err().inspect(|_| conn.busy_mut().sending = None)
                    }
                    Some(bytes) => {
                        self.bufs.put(bytes);
                        None
                    }
                    None => None,
                }
            }
            Err(_) if -completion.result() == libc::ECANCELED => None,
            Err(_) => Some(io::Error::from_raw_os_error(-completion.result())),
        };
        if let Some(e) = failure {
            self.begin_close(slot, CloseReason::Error(e));
        }
    }

    fn shut_down(&mut self, slot: usize, completion: &Completion) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.busy_mut().shutdown_busy = false;
        if completion.result() < 0 {
            let e = io::Error::from_raw_os_error(-completion.result());
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
            match self.core.next_order() {
                Order::Open(stream, peer, id) => self.open(stream, Peer::from(peer), id, now),
                Order::Drain => {
                    for slot in self.conns.keys() {
                        if let Some(conn) = self.conns.get_mut(slot)
                            && conn.phase == Phase::Open
                        {
                            conn.phase = Phase::Draining;
                        }
                        self.touch(slot);
                    }
                }
                Order::Wait => break,
            }
        }
        if let Err(e) = self.ring.poll_readable(self.poll.as_raw_fd(), WAKE) {
            tracing::error!(event_loop = self.core.id, error = %e, "cannot re-arm the uring loop's waker");
            self.core.stop = true;
        }
    }

    // ===== NEW CONNECTIONS =====
    /// Stops accepting once the loop drains or closes everything, closing the listener when
    /// the accept is reaped (a draining one hands its backlog over first); otherwise, once the
    /// server is up, arms the accept if it is not armed.
    fn accept_turn(&mut self, now: Instant) -> io::Result<()> {
        if !(self.core.draining || self.core.stop || self.closing_all) {
            if !self.core.started {
                return Ok(()); // not before the whole server is up (see `LoopMsg::Start`)
            }
            return self.accept.arm(&mut self.ring, now);
        }
        self.accept.stop(&mut self.ring)?;
        let drain = !(self.core.stop || self.closing_all);
        for stream in self.accept.close(drain) {
            self.admit(stream, now);
        }
        Ok(())
    }

    fn accepted(&mut self, completion: Completion, now: Instant) {
        let shared = &self.settings.shared;
        let Some(fd) = self.accept.completed(&self.ring, completion, now, shared) else {
            return;
        };
        let stream = TcpStream::from_std(std::net::TcpStream::from(fd));
        if self.closing_all {
            // Accepted as everything closes: as if the listener had been closed before it.
            return drop(stream);
        }
        self.admit(stream, now);
    }

    /// Serves a connection this loop accepted, or closes it at once over `max_connections`.
    fn admit(&mut self, stream: TcpStream, now: Instant) {
        let max = self.settings.max_connections;
        let admitted = self.settings.shared.admit(max);
        let peer = if self.settings.log_peers {
            stream.peer_addr().map_or(Peer::Unknown, Peer::from)
        } else {
            Peer::Unknown
        };
        if at_limit(&mut self.accept.at_limit, admitted, max) {
            tracing::debug!(%peer, "connection rejected: too many open connections");
            return drop(stream);
        }
        tracing::debug!(%peer, "connection opened");
        let id = self.core.new_conn_id();
        self.open(stream, peer, id, now);
    }

    fn open(&mut self, stream: TcpStream, peer: Peer, id: u64, now: Instant) {
        let phase = if self.core.draining {
            Phase::Draining
        } else {
            Phase::Open
        };
        let now_ms = self.core.idle.millis(now);
        let slot = self
            .conns
            .insert(UConn::new(stream, peer, id, now_ms, phase));
        self.core.idle.start(now, id, slot);
        self.touch(slot);
    }

    // ===== CONNECTIONS =====
    fn touch(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot)
            && !conn.queued
        {
            conn.queued = true;
            self.touched.push(slot);
        }
    }

    /// Moves a connection on after its completions: answers held input, reads a draining
    /// socket, queues a send, re-arms or cancels the receive, sends FIN, or closes.
    fn advance(&mut self, slot: usize, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.queued = false;
        if conn.is_closing() {
            return self.finish_close(slot);
        }
        let step = self
            .answer_unread(slot)
            .and_then(|()| self.read_draining(slot, now_ms))
            .and_then(|()| self.queue_send(slot));
        if let Err(reason) = step {
            return self.begin_close(slot, reason);
        }
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let (unsent, cap) = (conn.unsent(), self.settings.output_cap);
        let idle_out = unsent == 0 && !conn.has_unread();
        if conn.read_closed && idle_out && !conn.shutdown_busy() {
            let reason = match conn.phase {
                Phase::Open => CloseReason::PeerClosed,
                _ => CloseReason::Drained,
            };
            return self.begin_close(slot, reason);
        }
        let want_recv = !conn.read_closed
            && match conn.phase {
                Phase::Open => unsent <= cap && !conn.has_unread(),
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
                conn.busy_mut().cancels += 1;
                let cancel = user_data(slot, CANCEL);
                self.ring.cancel(user_data(slot, RECV), cancel)
            }
            _ if conn.phase == Phase::Draining
                && conn.drain_read_done()
                && idle_out
                && !conn.shutdown_busy() =>
            {
                conn.busy_mut().shutdown_busy = true;
                self.ring.shutdown_write(fd, user_data(slot, SHUTDOWN))
            }
            _ => Ok(()),
        };
        conn.tidy(&mut self.bufs);
        if let Err(e) = result {
            self.begin_close(slot, CloseReason::Error(e));
        }
    }

    /// Answers input held while the output was over the cap, while it is under the cap.
    fn answer_unread(&mut self, slot: usize) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get_mut(slot) else {
            return Ok(());
        };
        while conn.has_unread() && conn.unsent() <= self.settings.output_cap {
            let unread = std::mem::take(&mut conn.busy_mut().unread);
            let n = unread.len().min(BUF_SIZE);
            let answered = self.settings.answer(conn, &unread[..n], &mut self.bufs);
            let busy = conn.busy_mut();
            busy.unread = unread;
            answered?;
            busy.unread.drain(..n);
            if busy.unread.is_empty() {
                busy.unread = Vec::new();
            }
        }
        Ok(())
    }

    /// Draining, once the receive has stopped: reads the socket until it would block,
    /// answering as it goes, while the output is under the cap.
    fn read_draining(&mut self, slot: usize, now_ms: u64) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get_mut(slot) else {
            return Ok(());
        };
        if conn.phase != Phase::Draining || conn.recv != Recv::Idle || conn.read_closed {
            return Ok(());
        }
        while !conn.drain_read_done() && conn.unsent() <= self.settings.output_cap {
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    conn.read_closed = true;
                    break;
                }
                Ok(n) => {
                    conn.last_activity_ms = now_ms;
                    conn.bytes_in += n as u64;
                    let input = &self.scratch[..n];
                    self.settings.answer(conn, input, &mut self.bufs)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.busy_mut().drain_read_done = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::Error(e)),
            }
        }
        Ok(())
    }

    /// Hands the pending answers to the ring when no send is in flight.
    fn queue_send(&mut self, slot: usize) -> Result<(), CloseReason> {
        let Some(conn) = self.conns.get_mut(slot) else {
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
        let fd = conn.fd();
        let Some(busy) = conn.busy_mut_if_any() else {
            return Ok(());
        };
        if busy.sending.is_some() || busy.pending.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut busy.pending);
        busy.sending = Some((0, bytes.len()));
        self.ring
            .send(fd, bytes, 0, user_data(slot, SEND))
            .map_err(|e| {
                busy.sending = None;
                CloseReason::Error(e)
            })
    }

    /// Starts closing: cancels what is in flight; the connection is released once nothing is.
    fn begin_close(&mut self, slot: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        conn.busy_mut().closing = Some(reason);
        let mut targets = Vec::new();
        if conn.recv == Recv::Armed {
            conn.recv = Recv::Cancelling;
            targets.push(user_data(slot, RECV));
        }
        if conn.is_sending() {
            targets.push(user_data(slot, SEND));
        }
        for target in targets {
            if self.ring.cancel(target, user_data(slot, CANCEL)).is_ok()
                && let Some(conn) = self.conns.get_mut(slot)
            {
                conn.busy_mut().cancels += 1;
            }
        }
        self.finish_close(slot);
    }

    /// Releases a closing connection once no operation of it is in flight.
    fn finish_close(&mut self, slot: usize) {
        match self.conns.get_mut(slot) {
            Some(conn) if conn.is_closing() && !conn.has_ops() => {}
            _ => return,
        }
        let Some(conn) = self.conns.remove(slot) else {
            return;
        };
        let (stream, peer, bytes_in, bytes_out, reason) = conn.into_closed();
        log_closed(&peer, &reason, bytes_in, bytes_out);
        // The descriptor goes first: the acceptor (or this loop's accept) may be waiting for one.
        drop(stream);
        self.accept.descriptor_freed();
        self.settings
            .shared
            .connection_closed(bytes_in, bytes_out, &reason);
        let conns = &self.conns;
        let is_open = |slot, id| conns.get(slot).is_some_and(|c: &UConn| c.id == id);
        self.core.idle.compact(conns.len(), is_open);
    }

    fn close_all(&mut self) {
        self.closing_all = true;
        // No drain deadline to wake for any more.
        self.core.drain_deadline = None;
        for slot in self.conns.keys() {
            self.begin_close(slot, CloseReason::Forced);
        }
    }

    fn expire_idle(&mut self, now: Instant) {
        let conns = &self.conns;
        let last_active = |slot, id| {
            let conn: &UConn = conns.get(slot).filter(|c| c.id == id)?;
            (!conn.is_closing()).then_some(conn.last_activity_ms)
        };
        for slot in self.core.idle.expire(now, last_active) {
            self.begin_close(slot, CloseReason::IdleTimeout);
        }
    }
}

#[cfg(test)]
mod tests;
