//! The `event` model: one mio event loop per worker (default: per core). The acceptor deals
//! connections round-robin to the loops over a channel plus the loop's `Waker`; each loop owns
//! its connections, runs the handler inline and keeps per connection only what is unsent.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::acceptor::{Acceptor, WaitEnd};
use super::chunk::{CloseReason, log_closed};
use super::conn::{Conn, DriveCtx, Progress};
use super::state::{RunState, Shared};
use super::{READ_CHUNK, RunContext, ServerError, deadline_after, panic_message};
use crate::handler::Handler;

const WAKER: Token = Token(usize::MAX);

/// What the acceptor tells a loop (of this model or the uring one).
pub(crate) enum LoopMsg {
    /// A new connection, already counted as open.
    Conn(TcpStream, SocketAddr),
    /// Drain every connection; close what is left at the deadline (`None`: never).
    Drain(Option<Instant>),
    /// Close everything now.
    Stop,
}

/// The acceptor's side of a loop. It shares the loop's receiver so that, after the loop has
/// ended (a dead loop ends early), connections still queued for it are closed and counted.
/// Dropping it unjoined (the acceptor panicked) stops the loop and joins it.
pub(crate) struct LoopHandle {
    pub(crate) tx: Sender<LoopMsg>,
    pub(crate) rx: Arc<Mutex<Receiver<LoopMsg>>>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.send(LoopMsg::Stop);
            // The loop closes its connections and exits at once; its own panics are caught.
            let _ = thread.join();
        }
    }
}

impl LoopHandle {
    /// Sends `msg`; gives the message back if the loop is gone.
    fn send(&self, msg: LoopMsg) -> Result<(), LoopMsg> {
        self.tx.send(msg).map_err(|e| e.0)?;
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "cannot wake an event loop");
        }
        Ok(())
    }
}

pub(crate) fn run(ctx: RunContext, ready: &mut dyn FnMut()) -> Result<(), ServerError> {
    run_loops(ctx, ready, &|id, ctx| {
        spawn_loop(id, ctx).map_err(ServerError::Setup)
    })
}

/// Starts `workers` loops with `spawn`, then accepts and deals connections to them until a
/// shutdown, and drains them. Shared by the event and uring models.
pub(crate) fn run_loops(
    ctx: RunContext,
    ready: &mut dyn FnMut(),
    spawn: &dyn Fn(usize, &RunContext) -> Result<LoopHandle, ServerError>,
) -> Result<(), ServerError> {
    let shared = Arc::clone(&ctx.shared);
    let mut loops = Vec::new();
    for id in 0..ctx.config.workers() {
        match spawn(id, &ctx) {
            Ok(handle) => loops.push(handle),
            Err(e) => {
                stop_and_join(loops, &shared);
                return Err(e);
            }
        }
    }
    let max_connections = ctx.config.max_connections();
    let mut acceptor = match Acceptor::new(ctx.listener, Arc::clone(&shared), max_connections) {
        Ok(acceptor) => acceptor,
        Err(e) => {
            stop_and_join(loops, &shared);
            return Err(ServerError::Setup(e));
        }
    };

    ready();
    let mut next = 0usize;
    let accepted = acceptor.accept_until_shutdown(&mut |stream, peer| {
        let handle = &loops[next % loops.len()];
        next = next.wrapping_add(1);
        if handle.send(LoopMsg::Conn(stream, peer)).is_err() {
            tracing::error!(%peer, "event loop is gone; closing the connection");
            shared.connection_dropped();
        }
    });
    acceptor.close_listener();

    // ORDERING: SeqCst pairs with the SeqCst decrement in `Shared::loop_exited`.
    let all_exited = || shared.running_loops.load(Ordering::SeqCst) == 0;
    let waited = match (accepted, shared.state()) {
        (Ok(()), RunState::Draining) => {
            let deadline = deadline_after(Instant::now(), ctx.config.drain_timeout());
            tracing::info!(open = shared.stats().open, "draining connections");
            broadcast(&loops, || LoopMsg::Drain(deadline));
            // The loops enforce the deadline themselves; here only a stop-now can intervene.
            acceptor.wait_until(None, true, &all_exited)
        }
        (accepted, _) => accepted.map(|()| WaitEnd::StopNow),
    };
    if !matches!(waited, Ok(WaitEnd::Done)) {
        broadcast(&loops, || LoopMsg::Stop);
    }
    let result = waited.and_then(|end| match end {
        WaitEnd::Done => Ok(WaitEnd::Done),
        _ => acceptor.wait_until(None, false, &all_exited),
    });
    join(loops, &shared);
    result.map(drop).map_err(ServerError::Setup)
}

/// A loop's next message, if one is queued. (The lock is contended only after the loop ended,
/// when the acceptor closes what is left.)
pub(crate) fn try_recv(rx: &Mutex<Receiver<LoopMsg>>) -> Result<LoopMsg, TryRecvError> {
    rx.lock().unwrap_or_else(PoisonError::into_inner).try_recv()
}

/// Runs a loop (of this model or the uring one) on its thread: a failure of `run` (`what`
/// failed) or a panic stops the whole server (see `Shared::thread_died`). After a panic
/// `close_all` books the connections the loop held; if that panics too, their count is lost
/// but the server still stops. Ends with `Shared::loop_exited`.
pub(crate) fn guard_loop<L>(
    event_loop: &mut L,
    shared: &Shared,
    name: &str,
    what: &str,
    run: fn(&mut L) -> io::Result<()>,
    close_all: fn(&mut L),
) {
    match catch_unwind(AssertUnwindSafe(|| run(event_loop))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.thread_died(name, &format!("{what} failed: {e}")),
        Err(panic) => {
            shared.thread_died(name, &panic_message(&*panic));
            let _ = catch_unwind(AssertUnwindSafe(|| close_all(event_loop)));
        }
    }
    shared.loop_exited();
}

fn broadcast(loops: &[LoopHandle], msg: impl Fn() -> LoopMsg) {
    for handle in loops {
        // A loop that is gone has nothing left to drain or stop.
        let _ = handle.send(msg());
    }
}

fn stop_and_join(loops: Vec<LoopHandle>, shared: &Shared) {
    broadcast(&loops, || LoopMsg::Stop);
    join(loops, shared);
    // ORDERING: SeqCst, see `all_exited` in `run`.
    debug_assert_eq!(shared.running_loops.load(Ordering::SeqCst), 0);
}

/// Joins the loops, then closes the connections a loop left in its queue (a dead loop does).
fn join(loops: Vec<LoopHandle>, shared: &Shared) {
    for mut handle in loops {
        // A loop catches its own panics (see `spawn_loop`), so this join cannot fail.
        if let Some(thread) = handle.thread.take() {
            let _ = thread.join();
        }
        let rx = handle.rx.lock().unwrap_or_else(PoisonError::into_inner);
        while let Ok(msg) = rx.try_recv() {
            if let LoopMsg::Conn(stream, _) = msg {
                drop(stream);
                shared.connection_dropped();
            }
        }
    }
}

fn spawn_loop(id: usize, ctx: &RunContext) -> io::Result<LoopHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let event_loop = EventLoop {
        id,
        poll,
        rx: Arc::clone(&rx),
        conns: Slab::default(),
        idle: BinaryHeap::new(),
        again: Vec::new(),
        buf: vec![0; READ_CHUNK].into_boxed_slice(),
        out: Vec::new(),
        epoch: Instant::now(),
        shared: Arc::clone(&ctx.shared),
        handler: Arc::clone(&ctx.handler),
        idle_timeout: ctx.config.idle_timeout(),
        output_cap: ctx.config.output_cap(),
        log_messages: ctx.log_messages,
        next_id: 0,
        peak: 0,
        draining: false,
        drain_deadline: None,
        stop: false,
    };
    // ORDERING: SeqCst, see `all_exited` in `run`.
    ctx.shared.running_loops.fetch_add(1, Ordering::SeqCst);
    let thread = std::thread::Builder::new()
        .name(format!("chi-net-loop-{id}"))
        .spawn(move || event_loop.run_guarded());
    match thread {
        Ok(thread) => Ok(LoopHandle {
            tx,
            rx,
            waker,
            thread: Some(thread),
        }),
        Err(e) => {
            // ORDERING: SeqCst, see `all_exited` in `run`.
            ctx.shared.running_loops.fetch_sub(1, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// Connections by slot; the slot is the mio token.
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Conn>>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    fn insert(&mut self, conn: Conn) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = Some(conn);
                key
            }
            None => {
                self.entries.push(Some(conn));
                self.entries.len() - 1
            }
        }
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        self.entries.get_mut(key).and_then(Option::as_mut)
    }

    fn remove(&mut self, key: usize) -> Option<Conn> {
        let conn = self.entries.get_mut(key)?.take()?;
        self.len -= 1;
        self.free.push(key);
        Some(conn)
    }

    fn keys(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&k| self.entries[k].is_some())
            .collect()
    }
}

struct EventLoop {
    id: usize,
    poll: Poll,
    /// Shared with the acceptor's [`LoopHandle`], which only reads it after the loop ended.
    rx: Arc<Mutex<Receiver<LoopMsg>>>,
    conns: Slab,
    /// Idle deadlines as (deadline, connection id, slot), earliest first; at most one per open
    /// connection, plus stale ones of connections closed since the last compaction (see
    /// `close`), so never more than twice the open connections. Entries go stale when their
    /// connection closes; a stale one is recognised by its id when popped.
    idle: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Connections whose read budget ran out; driven again before the next wait.
    again: Vec<usize>,
    buf: Box<[u8]>,
    /// Where answers are built (see `DriveCtx::out`).
    out: Vec<u8>,
    /// Connections keep their last activity as milliseconds since this instant.
    epoch: Instant,
    shared: Arc<Shared>,
    handler: Arc<dyn Handler>,
    idle_timeout: Option<Duration>,
    output_cap: usize,
    log_messages: bool,
    next_id: u64,
    peak: usize,
    /// A drain was requested; it ends at `drain_deadline` (`None`: no deadline).
    draining: bool,
    drain_deadline: Option<Instant>,
    stop: bool,
}

impl EventLoop {
    // ===== MAIN LOOP =====
    /// Runs the loop; a panic or a failed poll stops the whole server (see
    /// `Shared::thread_died`) after this loop's connections are closed and counted.
    fn run_guarded(mut self) {
        let name = format!("event loop {}", self.id);
        let shared = Arc::clone(&self.shared);
        guard_loop(
            &mut self,
            &shared,
            &name,
            "poll",
            Self::run,
            Self::close_all,
        );
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.close_all();
                return Err(e);
            }
            #[cfg(test)]
            self.shared.maybe_inject_fault(super::state::Fault::Worker);
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.receive(now),
                    Token(slot) => {
                        if (event.is_read_closed() || event.is_error() || event.is_priority())
                            && let Some(conn) = self.conns.get_mut(slot)
                        {
                            conn.read_to_block_from_now();
                        }
                        self.drive(slot, now)
                    }
                }
            }
            for slot in std::mem::take(&mut self.again) {
                self.drive(slot, now);
            }
            self.expire_idle(now);
            if self.stop {
                self.close_all();
                return Ok(());
            }
            if self.draining {
                if self.conns.len == 0 {
                    return Ok(());
                }
                if self.drain_deadline.is_some_and(|deadline| now >= deadline) {
                    tracing::warn!(
                        event_loop = self.id,
                        open = self.conns.len,
                        "drain timeout: closing the remaining connections"
                    );
                    self.close_all();
                    return Ok(());
                }
            }
        }
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let idle = self.idle.peek().map(|Reverse((at, _, _))| *at);
        let wake_at = match (idle, self.drain_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wake_at.map(|at| at.saturating_duration_since(now))
    }

    // ===== MESSAGES FROM THE ACCEPTOR =====
    fn receive(&mut self, now: Instant) {
        loop {
            match try_recv(&self.rx) {
                Ok(LoopMsg::Conn(stream, peer)) => self.open(stream, peer, now),
                Ok(LoopMsg::Drain(deadline)) => {
                    self.draining = true;
                    self.drain_deadline = deadline;
                    for slot in self.conns.keys() {
                        if let Some(conn) = self.conns.get_mut(slot) {
                            conn.start_drain();
                        }
                        self.drive(slot, now);
                    }
                }
                Ok(LoopMsg::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stop = true;
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn open(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        let slot = self.conns.next_key();
        // Every interest, edge-triggered: no re-registration as the connection changes phase.
        // PRIORITY reports urgent data, at whose mark a read stops short (see `Conn::drive`).
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(slot), interest)
        {
            tracing::warn!(%peer, error = %e, "cannot register a connection; closing it");
            drop(stream);
            self.shared.connection_closed(0, 0, &CloseReason::Error(e));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut conn = Conn::new(stream, peer, id, self.millis(now));
        if self.draining {
            conn.start_drain();
        }
        let inserted = self.conns.insert(conn);
        debug_assert_eq!(inserted, slot);
        // An idle deadline past what an `Instant` holds is "never": no entry.
        if let Some(at) = self.idle_timeout.and_then(|idle| deadline_after(now, idle)) {
            self.push_idle(at, id, slot);
        }
        // Registration reports the current readiness, so data already sent raises an event.
    }

    // ===== CONNECTIONS =====
    /// `now` as milliseconds since the loop's epoch, rounded up, so an idle deadline computed
    /// from it is never early.
    fn millis(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        let ms = since.as_millis() + u128::from(!since.subsec_nanos().is_multiple_of(1_000_000));
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    fn drive(&mut self, slot: usize, now: Instant) {
        let now_ms = self.millis(now);
        let Some(conn) = self.conns.get_mut(slot) else {
            return; // closed earlier in this turn
        };
        let mut ctx = DriveCtx {
            handler: &*self.handler,
            buf: &mut self.buf,
            out: &mut self.out,
            output_cap: self.output_cap,
            log_messages: self.log_messages,
            now_ms,
            peak: &mut self.peak,
            shared: &self.shared,
        };
        match conn.drive(&mut ctx) {
            Progress::Wait => {}
            Progress::Again => self.again.push(slot),
            Progress::Close(reason) => self.close(slot, reason),
        }
    }

    fn close(&mut self, slot: usize, reason: CloseReason) {
        let Some(mut conn) = self.conns.remove(slot) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        log_closed(&conn.peer, &reason, conn.bytes_in, conn.bytes_out);
        let (bytes_in, bytes_out) = (conn.bytes_in, conn.bytes_out);
        // Release the descriptor before telling the acceptor, which may be waiting for one.
        drop(conn);
        self.shared.connection_closed(bytes_in, bytes_out, &reason);
        self.compact_idle();
    }

    // ===== IDLE TIMERS =====
    fn push_idle(&mut self, at: Instant, id: u64, slot: usize) {
        self.idle.push(Reverse((at, id, slot)));
        // ORDERING: Relaxed, a statistic.
        self.shared.idle_timers.fetch_add(1, Ordering::Relaxed);
    }

    fn pop_idle(&mut self) {
        if self.idle.pop().is_some() {
            // ORDERING: Relaxed, a statistic.
            self.shared.idle_timers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Drops the entries of closed connections once they outnumber the open ones: each open
    /// connection has at most one entry, so after this the heap holds exactly the live ones,
    /// and the next compaction needs as many closes again (amortised O(log n) per close).
    fn compact_idle(&mut self) {
        if self.idle.len() <= 2 * self.conns.len {
            return;
        }
        let before = self.idle.len();
        let conns = &self.conns;
        self.idle.retain(|Reverse((_, id, slot))| {
            conns
                .entries
                .get(*slot)
                .and_then(Option::as_ref)
                .is_some_and(|conn| conn.id == *id)
        });
        // ORDERING: Relaxed, a statistic.
        self.shared
            .idle_timers
            .fetch_sub(before - self.idle.len(), Ordering::Relaxed);
    }

    fn close_all(&mut self) {
        for slot in self.conns.keys() {
            self.close(slot, CloseReason::Forced);
        }
    }

    fn expire_idle(&mut self, now: Instant) {
        let Some(timeout) = self.idle_timeout else {
            return;
        };
        while let Some(&Reverse((at, id, slot))) = self.idle.peek() {
            if at > now {
                break;
            }
            self.pop_idle();
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            if conn.id != id {
                continue; // the slot was reused; the new connection has its own entry
            }
            let due = self
                .epoch
                .checked_add(Duration::from_millis(conn.last_activity_ms))
                .and_then(|last| deadline_after(last, timeout));
            match due {
                Some(due) if due > now => self.push_idle(due, id, slot),
                Some(_) => self.close(slot, CloseReason::IdleTimeout),
                None => {} // never idle for long enough: no entry
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_state_stays_small() {
        // What one idle connection costs the loop (its output buffer is freed when empty);
        // the kernel's socket buffers come on top.
        // 64 bytes; mio's stream carries a selector id in debug builds, which adds 16.
        let debug_extra = if cfg!(debug_assertions) { 16 } else { 0 };
        assert!(std::mem::size_of::<Option<Conn>>() <= 64 + debug_extra);
        assert!(std::mem::size_of::<Reverse<(Instant, u64, usize)>>() <= 40);
    }

    #[test]
    fn slab_reuses_freed_slots() {
        let mut slab = Slab::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = || {
            let stream = TcpStream::from_std(std::net::TcpStream::connect(addr).unwrap());
            Conn::new(stream, addr, 0, 0)
        };
        let a = slab.insert(conn());
        let b = slab.insert(conn());
        assert_eq!((a, b, slab.len), (0, 1, 2));
        assert!(slab.remove(a).is_some());
        assert!(slab.remove(a).is_none());
        assert_eq!(slab.next_key(), a);
        assert_eq!(slab.insert(conn()), a);
        assert_eq!(slab.keys(), vec![0, 1]);
    }
}
