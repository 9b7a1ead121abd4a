//! What the event and uring models share: the acceptor's messages to a loop and its handle on
//! each loop, starting a loop thread, dealing connections and draining ([`run_loops`]), the
//! guard that turns a loop's death into a server stop, and [`LoopCore`], the part of a loop
//! that is the same in both (its messages, its idle timers, what it has been told to do).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Poll, Token, Waker};

use super::acceptor::{Acceptor, WaitEnd};
use super::idle::IdleTimers;
use super::state::{RunState, Shared};
use super::{RunContext, ServerError, deadline_after, panic_message};

/// The token of a loop's `Waker` in its poll.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// What the acceptor tells a loop.
pub(crate) enum LoopMsg {
    /// Every thread of the server is up: a loop that accepts on its own may start. (Before
    /// that, connections wait in its listener's queue: a loop accepting early could take
    /// descriptors the rest of the start-up needs, and a start-up failure would reset
    /// connections it had accepted.)
    Start,
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
    tx: Sender<LoopMsg>,
    rx: Arc<Mutex<Receiver<LoopMsg>>>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
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

/// Starts a loop thread named `name`. It makes the loop's channel and the poll the loop's
/// `Waker` is registered in (under [`WAKER`]), counts the loop as running, and runs `body`
/// with the poll and the receiving end on the new thread; when `body` returns or unwinds, the
/// loop is counted out again (`Shared::loop_exited`), which the acceptor may be waiting for.
pub(crate) fn spawn_loop(
    shared: &Arc<Shared>,
    name: String,
    body: impl FnOnce(Poll, Arc<Mutex<Receiver<LoopMsg>>>) + Send + 'static,
) -> io::Result<LoopHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let loop_rx = Arc::clone(&rx);
    // ORDERING: SeqCst, see `all_exited` in `run_loops`.
    shared.running_loops.fetch_add(1, Ordering::SeqCst);
    let exited = Exited(Arc::clone(shared));
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let _exited = exited;
        body(poll, loop_rx);
    })?;
    Ok(LoopHandle {
        tx,
        rx,
        waker,
        thread: Some(thread),
    })
}

/// Counts a loop out when dropped: on its thread when the loop ends, or with the closure of a
/// thread that could not be started.
struct Exited(Arc<Shared>);

impl Drop for Exited {
    fn drop(&mut self) {
        self.0.loop_exited();
    }
}

/// Starts loop `id` of a model, with its own listener if the model has one per loop.
pub(crate) type SpawnLoop =
    dyn Fn(usize, &RunContext, Option<TcpListener>) -> Result<LoopHandle, ServerError>;

/// Starts `workers` loops with `spawn` (giving each its own listener, if the model has one per
/// loop), then accepts and deals connections to them until a shutdown (or, when the loops
/// accept on their own, waits for the shutdown request), and drains them.
pub(crate) fn run_loops(
    mut ctx: RunContext,
    ready: &mut dyn FnMut(),
    spawn: &SpawnLoop,
) -> Result<(), ServerError> {
    let shared = Arc::clone(&ctx.shared);
    let (listener, own) = ctx.take_listeners();
    let mut own = own.into_iter();
    let mut loops = Vec::new();
    for id in 0..ctx.config.workers() {
        match spawn(id, &ctx, own.next()) {
            Ok(handle) => loops.push(handle),
            Err(e) => {
                stop_and_join(loops, &shared);
                return Err(e);
            }
        }
    }
    let max_connections = ctx.config.max_connections();
    let mut acceptor = match Acceptor::new(listener, Arc::clone(&shared), max_connections) {
        Ok(acceptor) => acceptor,
        Err(e) => {
            stop_and_join(loops, &shared);
            return Err(ServerError::Setup(e));
        }
    };

    ready();
    broadcast(&loops, || LoopMsg::Start);
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
fn try_recv(rx: &Mutex<Receiver<LoopMsg>>) -> Result<LoopMsg, TryRecvError> {
    rx.lock().unwrap_or_else(PoisonError::into_inner).try_recv()
}

/// Runs a loop on its thread: a failure of `run` (`what` failed) or a panic stops the whole
/// server (see `Shared::thread_died`). After a panic `close_all` books the connections the
/// loop held; if that panics too, their count is lost but the server still stops.
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
    // ORDERING: SeqCst, see `all_exited` in `run_loops`.
    debug_assert_eq!(shared.running_loops.load(Ordering::SeqCst), 0);
}

/// Joins the loops, then closes the connections a loop left in its queue (a dead loop does).
fn join(loops: Vec<LoopHandle>, shared: &Shared) {
    for mut handle in loops {
        // A loop catches its own panics (see `guard_loop`), so this join cannot fail.
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

/// What the acceptor's next message asks of a loop (see [`LoopCore::next_order`]).
pub(crate) enum Order {
    /// Serve a new connection, with this id.
    Open(TcpStream, SocketAddr, u64),
    /// Drain every connection (`draining` and the deadline are set already).
    Drain,
    /// Nothing more for now; or stop, and `stop` is set.
    Wait,
}

/// What an event or uring loop keeps besides its connections: its number, the acceptor's
/// messages, the idle timers, and what it has been told to do.
pub(crate) struct LoopCore {
    pub(crate) id: usize,
    /// Shared with the acceptor's [`LoopHandle`], which only reads it after the loop ended.
    rx: Arc<Mutex<Receiver<LoopMsg>>>,
    pub(crate) idle: IdleTimers,
    /// The id of the next connection: unique per loop, it tells a reused slot apart.
    next_conn_id: u64,
    /// A drain was requested; it ends at `drain_deadline` (`None`: no deadline).
    pub(crate) draining: bool,
    pub(crate) drain_deadline: Option<Instant>,
    /// Everything must close now (or the acceptor is gone).
    pub(crate) stop: bool,
    /// The server is up (see [`LoopMsg::Start`]).
    pub(crate) started: bool,
}

impl LoopCore {
    pub(crate) fn new(id: usize, rx: Arc<Mutex<Receiver<LoopMsg>>>, idle: IdleTimers) -> Self {
        LoopCore {
            id,
            rx,
            idle,
            next_conn_id: 0,
            draining: false,
            drain_deadline: None,
            stop: false,
            started: false,
        }
    }

    /// Takes the acceptor's next message, notes a drain or a stop, and says what the loop
    /// must do with it.
    pub(crate) fn next_order(&mut self) -> Order {
        let mut msg = try_recv(&self.rx);
        while let Ok(LoopMsg::Start) = msg {
            self.started = true;
            msg = try_recv(&self.rx);
        }
        match msg {
            Ok(LoopMsg::Conn(stream, peer)) => Order::Open(stream, peer, self.new_conn_id()),
            Ok(LoopMsg::Drain(deadline)) => {
                self.draining = true;
                self.drain_deadline = deadline;
                Order::Drain
            }
            Ok(LoopMsg::Stop) | Err(TryRecvError::Disconnected) => {
                self.stop = true;
                Order::Wait
            }
            Ok(LoopMsg::Start) | Err(TryRecvError::Empty) => Order::Wait,
        }
    }

    /// An id for a new connection.
    pub(crate) fn new_conn_id(&mut self) -> u64 {
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        id
    }

    /// When the loop must wake at the latest: the next idle deadline or the drain deadline.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        [self.idle.next_deadline(), self.drain_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a drain deadline has passed at `now`.
    pub(crate) fn drain_overdue(&self, now: Instant) -> bool {
        self.drain_deadline.is_some_and(|deadline| now >= deadline)
    }
}
