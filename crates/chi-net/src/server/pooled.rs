//! The `pooled` model, the classic thread-pool server design: one pool worker per client. The
//! acceptor queues each connection and submits a task to a `chi::ThreadPool`; each task takes
//! the *oldest* waiting connection (so clients are served in arrival order, whatever order the
//! pool runs its tasks in) and serves it for its whole life. With W workers, W clients are
//! served at once; the next ones wait, connected, until a served client leaves or, with an
//! idle timeout, falls silent.
//!
//! A worker serves its connection one message at a time, as a blocking server would, but its
//! socket is non-blocking and it waits in a mio poll of its own (one per worker, made before
//! the server is ready) together with a waker, so a shutdown reaches it at once:
//! - draining: it answers what has arrived, sends FIN, then reads and drops input until the
//!   client's FIN — never closing with unread input, which would make the kernel reset the
//!   connection and destroy answers the client has not read yet; connections still waiting
//!   get the same treatment when their turn comes;
//! - at the drain deadline or on `shutdown_now`: it closes at once, and the acceptor closes
//!   the connections still waiting.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::acceptor::{Acceptor, WaitEnd};
use super::chunk::{CloseReason, handle_chunk, log_closed};
use super::state::{RunState, Shared};
use super::{READ_CHUNK, RunContext, ServerError, deadline_after, panic_message};
use crate::handler::Handler;

const CONN: Token = Token(0);
const WAKER: Token = Token(1);

/// A worker's poll, its waker, and its buffers; one per pool worker, reused across
/// connections.
struct Poller {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    buf: Box<[u8]>,
    out: Vec<u8>,
}

impl Poller {
    fn new() -> io::Result<Poller> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Poller {
            poll,
            events: Events::with_capacity(4),
            waker,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::new(),
        })
    }
}

/// A connection accepted and not yet taken by a worker.
struct Waiting {
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
}

/// The waiting connections (oldest first), the wakers of the workers serving the others, and
/// the idle pollers.
#[derive(Default)]
struct Registry {
    queue: VecDeque<Waiting>,
    active: HashMap<u64, Arc<Waker>>,
    pollers: Vec<Poller>,
}

/// What every connection task shares.
struct ConnCtx {
    handler: Arc<dyn Handler>,
    shared: Arc<Shared>,
    registry: Mutex<Registry>,
    idle_timeout: Option<Duration>,
    log_messages: bool,
}

impl ConnCtx {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every worker serving a connection, so it sees the new state.
    fn wake_workers(&self) {
        for waker in self.registry().active.values() {
            if let Err(e) = waker.wake() {
                tracing::warn!(error = %e, "cannot wake a pooled worker");
            }
        }
    }

    /// Stopping: closes the waiting connections (unanswered) and wakes the workers.
    fn close_waiting(&self) {
        let waiting = std::mem::take(&mut self.registry().queue);
        for conn in waiting {
            drop(conn.stream);
            // ORDERING: Relaxed, a statistic.
            self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
            self.shared.connection_dropped();
        }
        self.wake_workers();
    }
}

pub(crate) fn run(mut ctx: RunContext, ready: &mut dyn FnMut()) -> Result<(), ServerError> {
    let shared = Arc::clone(&ctx.shared);
    let workers = ctx.config.workers();
    let pool = chi::ThreadPool::builder()
        .max_workers(workers)
        .thread_name("chi-conn")
        .build()
        .map_err(ServerError::Pool)?;
    let pollers = (0..workers)
        .map(|_| Poller::new())
        .collect::<io::Result<Vec<_>>>()
        .map_err(ServerError::Setup)?;
    let max_connections = ctx.config.max_connections();
    let (listener, _) = ctx.take_listeners();
    let mut acceptor = Acceptor::new(listener, Arc::clone(&shared), max_connections)
        .map_err(ServerError::Setup)?;
    let conn_ctx = Arc::new(ConnCtx {
        handler: ctx.handler,
        shared: Arc::clone(&shared),
        registry: Mutex::new(Registry {
            pollers,
            ..Registry::default()
        }),
        idle_timeout: ctx.config.idle_timeout(),
        log_messages: ctx.log_messages,
    });

    // Declared after the pool, so dropped before it: if the acceptor panics, the workers are
    // told to stop before the pool waits for them.
    let _stop_on_panic = StopOnPanic(&conn_ctx);
    ready();
    let mut next_id = 0u64;
    let accepted = acceptor.accept_until_shutdown(&mut |stream, peer| {
        let id = next_id;
        next_id += 1;
        conn_ctx
            .registry()
            .queue
            .push_back(Waiting { id, stream, peer });
        // ORDERING: Relaxed, a statistic.
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        let task_ctx = Arc::clone(&conn_ctx);
        // The task handle is dropped: the connection reports through `Shared`, and dropping
        // a handle does not cancel its task.
        if pool.submit(move || serve_next(&task_ctx)).is_err() {
            // Only possible after `pool.shutdown()`, which happens after this loop.
            tracing::error!(%peer, "the pool refused the connection");
            if conn_ctx.registry().queue.pop_back().is_some() {
                // ORDERING: Relaxed, a statistic.
                shared.waiting.fetch_sub(1, Ordering::Relaxed);
                shared.connection_dropped();
            }
        }
    });
    acceptor.close_listener();

    let result = finish(
        accepted,
        &mut acceptor,
        &conn_ctx,
        ctx.config.drain_timeout(),
    );
    // Every task has ended or is ending; this joins the workers.
    pool.shutdown();
    result
}

/// After accepting ended: drains (if asked to) until every connection is closed or the
/// deadline passes, then closes what is left.
fn finish(
    accepted: io::Result<()>,
    acceptor: &mut Acceptor,
    conn_ctx: &ConnCtx,
    drain_timeout: Duration,
) -> Result<(), ServerError> {
    let shared = &conn_ctx.shared;
    // ORDERING: SeqCst, as every access to `open` (see `Shared::state`).
    let all_closed = || shared.open.load(Ordering::SeqCst) == 0;
    let mut waited = accepted.map(|()| WaitEnd::StopNow);
    if waited.is_ok() && shared.state() == RunState::Draining {
        let deadline = deadline_after(Instant::now(), drain_timeout);
        let stats = shared.stats();
        tracing::info!(
            open = stats.open,
            waiting = stats.waiting,
            "draining connections"
        );
        conn_ctx.wake_workers();
        waited = acceptor.wait_until(deadline, true, &all_closed);
        if matches!(waited, Ok(WaitEnd::Deadline)) {
            tracing::warn!(
                open = shared.stats().open,
                "drain timeout: closing the remaining connections"
            );
        }
    }
    if !matches!(waited, Ok(WaitEnd::Done)) {
        shared.request(RunState::Stopping);
        conn_ctx.close_waiting();
        // Keep the first error, if any; otherwise wait for the workers to let go.
        let after = acceptor.wait_until(None, false, &all_closed);
        waited = waited.and(after);
    }
    waited.map(drop).map_err(ServerError::Setup)
}

/// Stops the workers if the acceptor unwinds (see `run`).
struct StopOnPanic<'a>(&'a ConnCtx);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.shared.request(RunState::Stopping);
            self.0.close_waiting();
        }
    }
}

/// A pool task: serves the oldest waiting connection. A panic outside the handler (which
/// `handle_chunk` contains) is a bug in the server: it stops the server.
fn serve_next(ctx: &ConnCtx) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| serve_oldest(ctx))) {
        ctx.shared
            .thread_died("a pooled worker", &panic_message(&*panic));
    }
}

fn serve_oldest(ctx: &ConnCtx) {
    let mut poller = match ctx.registry().pollers.pop() {
        Some(poller) => poller,
        // Never while at most `workers` tasks run at once; a fallback, not a path.
        None => match Poller::new() {
            Ok(poller) => poller,
            Err(e) => return ctx.shared.thread_died("a pooled worker", &e.to_string()),
        },
    };
    let taken = {
        let mut registry = ctx.registry();
        let taken = registry.queue.pop_front();
        if let Some(conn) = &taken {
            registry.active.insert(conn.id, Arc::clone(&poller.waker));
        }
        taken
    };
    if let Some(Waiting { id, stream, peer }) = taken {
        // ORDERING: Relaxed, a statistic.
        ctx.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut session = Session {
            ctx,
            id,
            stream: Some(stream),
            peer,
            reason: None,
            bytes_in: 0,
            bytes_out: 0,
            last_activity: Instant::now(),
            read_to_block: false,
        };
        let reason = session.serve(&mut poller);
        session.reason = Some(reason);
    }
    ctx.registry().pollers.push(poller);
}

/// One connection being served. Dropping it (also when serving panicked) closes the socket
/// and books the connection as closed.
struct Session<'a> {
    ctx: &'a ConnCtx,
    id: u64,
    stream: Option<TcpStream>,
    peer: SocketAddr,
    reason: Option<CloseReason>,
    bytes_in: u64,
    bytes_out: u64,
    last_activity: Instant,
    /// A poll reported the client's FIN, an error or urgent data: from then on a short read
    /// no longer means the receive queue is empty (see `converse`).
    read_to_block: bool,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.ctx.registry().active.remove(&self.id);
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| CloseReason::Error(io::Error::other("the worker panicked")));
        log_closed(&self.peer, &reason, self.bytes_in, self.bytes_out);
        // Close the descriptor before the acceptor (which may wait for a free one) hears of it.
        drop(self.stream.take());
        self.ctx
            .shared
            .connection_closed(self.bytes_in, self.bytes_out, &reason);
    }
}

impl Session<'_> {
    fn serve(&mut self, poller: &mut Poller) -> CloseReason {
        let Some(mut stream) = self.stream.take() else {
            return CloseReason::Forced;
        };
        // PRIORITY reports urgent data, at whose mark a read stops short (see `converse`).
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        let reason = match poller.poll.registry().register(&mut stream, CONN, interest) {
            Ok(()) => {
                let reason = self.converse(&mut stream, poller);
                let _ = poller.poll.registry().deregister(&mut stream);
                reason
            }
            Err(e) => CloseReason::Error(e),
        };
        self.stream = Some(stream);
        reason
    }

    /// Reads, answers and writes until the client leaves, falls idle, or a shutdown ends it.
    fn converse(&mut self, stream: &mut TcpStream, poller: &mut Poller) -> CloseReason {
        // FIN sent during a drain: input is read and dropped until the client's FIN.
        let mut lingering = false;
        // The last read was short while serving normally: the receive queue is empty, and
        // (edge-triggered epoll) the next arrival raises a new event, so wait for it instead
        // of spending a read on `WouldBlock` — as the event model does. Not after an event
        // reported FIN, an error or urgent data (`read_to_block`): a read also stops short at
        // an urgent mark with data queued behind it.
        let mut queue_empty = false;
        #[cfg(test)]
        self.ctx
            .shared
            .maybe_inject_fault(super::state::Fault::Worker);
        loop {
            let state = self.ctx.shared.state();
            if state == RunState::Stopping {
                return CloseReason::Forced;
            }
            if std::mem::take(&mut queue_empty) && state == RunState::Running {
                if let Err(reason) = self.wait(poller) {
                    return reason;
                }
                continue;
            }
            match stream.read(&mut poller.buf) {
                Ok(0) => {
                    // FIN after the last answer (the close would send it too; this keeps the
                    // order explicit while the client may still be reading).
                    let _ = stream.shutdown(Shutdown::Write);
                    return match state {
                        RunState::Running => CloseReason::PeerClosed,
                        _ => CloseReason::Drained,
                    };
                }
                Ok(n) => {
                    self.last_activity = Instant::now();
                    if lingering {
                        continue; // input after our FIN is dropped
                    }
                    self.bytes_in += n as u64;
                    if let Err(reason) = self.answer(stream, poller, n) {
                        return reason;
                    }
                    queue_empty = n < poller.buf.len() && !self.read_to_block;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if state == RunState::Draining && !lingering {
                        // Everything received is answered and sent: say goodbye.
                        if let Err(e) = stream.shutdown(Shutdown::Write) {
                            return CloseReason::Error(e);
                        }
                        lingering = true;
                        continue;
                    }
                    if let Err(reason) = self.wait(poller) {
                        return reason;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return CloseReason::Error(e),
            }
        }
    }

    /// Runs the handler on the first `n` bytes read and writes the whole answer.
    fn answer(
        &mut self,
        stream: &mut TcpStream,
        poller: &mut Poller,
        n: usize,
    ) -> Result<(), CloseReason> {
        let ctx = self.ctx;
        let mut out = std::mem::take(&mut poller.out);
        out.clear();
        handle_chunk(
            &*ctx.handler,
            &poller.buf[..n],
            &mut out,
            &self.peer,
            ctx.log_messages,
        )?;
        // ORDERING: Relaxed, a statistic.
        if out.len() > ctx.shared.peak_output.load(Ordering::Relaxed) {
            // ORDERING: Relaxed, a statistic.
            ctx.shared
                .peak_output
                .fetch_max(out.len(), Ordering::Relaxed);
        }
        let mut sent = 0;
        while sent < out.len() {
            if ctx.shared.state() == RunState::Stopping {
                return Err(CloseReason::Forced);
            }
            match stream.write(&out[sent..]) {
                Ok(0) => return Err(CloseReason::Error(io::ErrorKind::WriteZero.into())),
                Ok(k) => {
                    sent += k;
                    self.bytes_out += k as u64;
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(poller)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::Error(e)),
            }
        }
        // Keep the buffer unless one answer made it much larger than a chunk.
        if out.capacity() <= 4 * READ_CHUNK {
            poller.out = out;
        }
        Ok(())
    }

    /// Waits for the socket, the waker (a shutdown), or the idle deadline.
    fn wait(&mut self, poller: &mut Poller) -> Result<(), CloseReason> {
        let idle_at = self
            .ctx
            .idle_timeout
            .and_then(|idle| deadline_after(self.last_activity, idle));
        let now = Instant::now();
        if idle_at.is_some_and(|at| at <= now) {
            return Err(CloseReason::IdleTimeout);
        }
        let timeout = idle_at.map(|at| at.saturating_duration_since(now));
        match poller.poll.poll(&mut poller.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CloseReason::Error(e)),
        }
        let special = |e: &mio::event::Event| {
            e.token() == CONN && (e.is_read_closed() || e.is_error() || e.is_priority())
        };
        if poller.events.iter().any(special) {
            self.read_to_block = true;
        }
        Ok(())
    }
}
