//! The acceptor: the thread that called `Server::run`. It accepts connections and hands them
//! to a model, enforces `max_connections`, backs off when out of descriptors, and during a
//! shutdown waits for the model to finish. In the uring model, whose loops accept on their
//! own listeners, it has no listener and only waits for a shutdown request, then for the
//! loops.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::deadline_after;
use super::listener::{AcceptFailure, Backoff, classify};
use super::state::{RunState, Shared};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Accepts (or skipped failures) per readiness event before polling again; bounds the loop.
const ACCEPTS_PER_TURN: usize = 4096;
/// Longest single wait while draining: a safety net, since every close wakes the acceptor.
const WAIT_SLICE: Duration = Duration::from_secs(1);

/// How [`Acceptor::wait_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// The condition became true.
    Done,
    /// The deadline passed first.
    Deadline,
    /// `shutdown_now` was requested while waiting.
    StopNow,
}

pub(crate) struct Acceptor {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    max_connections: usize,
    backoff: Backoff,
    /// While backing off: when to try accepting again.
    retry_at: Option<Instant>,
    /// Whether the last accepted connection was rejected for `max_connections` (to warn once).
    at_limit: bool,
}

impl Acceptor {
    /// An acceptor on `listener`; without one it only waits (see the module doc).
    pub(crate) fn new(
        listener: Option<std::net::TcpListener>,
        shared: Arc<Shared>,
        max_connections: usize,
    ) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        let mut listener = listener.map(TcpListener::from_std);
        if let Some(listener) = &mut listener {
            poll.registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        shared.set_waker(Arc::new(Waker::new(poll.registry(), WAKER)?));
        Ok(Acceptor {
            poll,
            events: Events::with_capacity(64),
            listener,
            shared,
            max_connections,
            backoff: Backoff::default(),
            retry_at: None,
            at_limit: false,
        })
    }

    /// Accepts connections and hands each to `dispatch` (already counted as open) until a
    /// shutdown is requested.
    pub(crate) fn accept_until_shutdown(
        &mut self,
        dispatch: &mut dyn FnMut(TcpStream, SocketAddr),
    ) -> io::Result<()> {
        // The listener is edge-triggered: connections queued before registration still raise
        // an event, and after a back-off we try again without waiting for a new one.
        let mut try_now = true;
        loop {
            if self.shared.state() != RunState::Running {
                return Ok(());
            }
            if try_now {
                self.accept_ready(dispatch);
            }
            let timeout = self
                .retry_at
                .map(|at| at.saturating_duration_since(Instant::now()));
            let woken = self.poll_once(timeout)?;
            #[cfg(test)]
            self.shared
                .maybe_inject_fault(super::state::Fault::Acceptor);
            try_now = match self.retry_at {
                // Backing off: retry when due, or early when a closing connection woke us
                // (it freed a descriptor).
                Some(at) if !woken && Instant::now() < at => false,
                _ => {
                    self.retry_at = None;
                    true
                }
            };
        }
    }

    /// Accepts until the kernel has nothing more, a back-off starts, or the turn's budget ends.
    fn accept_ready(&mut self, dispatch: &mut dyn FnMut(TcpStream, SocketAddr)) {
        if let Some(listener) = self.listener.take() {
            self.accept_from(&listener, dispatch);
            self.listener = Some(listener);
        }
    }

    fn accept_from(
        &mut self,
        listener: &TcpListener,
        dispatch: &mut dyn FnMut(TcpStream, SocketAddr),
    ) {
        for _ in 0..ACCEPTS_PER_TURN {
            match listener.accept() {
                Ok((stream, peer)) => {
                    #[cfg(test)]
                    self.shared
                        .maybe_inject_fault(super::state::Fault::Acceptor);
                    if self.backoff.active() {
                        self.backoff.reset();
                        // ORDERING: SeqCst, as the `swap` below (see there).
                        self.shared.backing_off.store(false, Ordering::SeqCst);
                        tracing::info!("accepting connections again");
                    }
                    self.admit(stream, peer, dispatch);
                }
                Err(err) => match classify(&err) {
                    AcceptFailure::Drained => return,
                    AcceptFailure::Skip => {
                        tracing::debug!(error = %err, "accept failed for one connection; continuing");
                    }
                    AcceptFailure::BackOff => {
                        let delay = self.backoff.next_delay();
                        self.retry_at = deadline_after(Instant::now(), delay);
                        // ORDERING: Relaxed, a statistic.
                        self.shared.accept_backoffs.fetch_add(1, Ordering::Relaxed);
                        // ORDERING: SeqCst pairs with the SeqCst load in the server state's
                        // `Shared::connection_closed`: a close after this swap sees the flag and
                        // wakes us, so a freed descriptor never waits out the back-off.
                        let was_backing_off = self.shared.backing_off.swap(true, Ordering::SeqCst);
                        if !was_backing_off {
                            tracing::warn!(
                                error = %err,
                                "cannot accept connections; pausing until a connection closes \
                                 (they wait in the listen backlog)"
                            );
                        }
                        return;
                    }
                },
            }
        }
        // Budget spent with connections possibly left: come back without waiting for an event.
        self.retry_at = Some(Instant::now());
    }

    /// Counts the connection and hands it on, or closes it at once over `max_connections`.
    /// (`TCP_NODELAY` and `SO_OOBINLINE` come from the listener, see `listener::bind`.)
    fn admit(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        dispatch: &mut dyn FnMut(TcpStream, SocketAddr),
    ) {
        let admitted = self.shared.admit(self.max_connections);
        if at_limit(&mut self.at_limit, admitted, self.max_connections) {
            tracing::debug!(%peer, "connection rejected: too many open connections");
            drop(stream);
            return;
        }
        tracing::debug!(%peer, "connection opened");
        dispatch(stream, peer);
    }

    /// Stops listening; connections still in the backlog are reset by the kernel.
    pub(crate) fn close_listener(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
    }

    /// Waits until `done()`, the `deadline`, or (if `watch_stop`) a `shutdown_now` request.
    /// The model must wake the acceptor whenever `done()` may have become true.
    pub(crate) fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        watch_stop: bool,
        done: &dyn Fn() -> bool,
    ) -> io::Result<WaitEnd> {
        loop {
            if done() {
                return Ok(WaitEnd::Done);
            }
            if watch_stop && self.shared.state() == RunState::Stopping {
                return Ok(WaitEnd::StopNow);
            }
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if now >= d => return Ok(WaitEnd::Deadline),
                Some(d) => (d - now).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            self.poll_once(Some(slice))?;
        }
    }

    /// One poll; true when the waker fired.
    fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(self.events.iter().any(|e| e.token() == WAKER)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// After an admission: whether the connection was rejected for `max_connections`, warning
/// the first time in a row (`warned` remembers it until a connection is admitted again).
pub(crate) fn at_limit(warned: &mut bool, admitted: bool, max_connections: usize) -> bool {
    if admitted {
        *warned = false;
        return false;
    }
    if !*warned {
        *warned = true;
        tracing::warn!(
            max_connections,
            "connection limit reached: new connections are closed until one leaves"
        );
    }
    true
}
