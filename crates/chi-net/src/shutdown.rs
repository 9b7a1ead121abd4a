//! Stopping a server: the [`ServerHandle`] (graceful drain or stop-now, from any thread), the
//! state every part of the server reads, and SIGINT/SIGTERM turned into a drain.
//!
//! A request only flips the state and wakes the acceptor through its mio `Waker`; the acceptor
//! stops listening and tells the event loops (through their own wakers) or the pooled workers
//! (by shutting down the read side of their sockets) to drain.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::{fmt, io};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::server::ServerStats;

/// Where the server is in its life. Only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum RunState {
    /// Accepting and serving.
    Running = 0,
    /// Not accepting; answering what was already received, then closing, until the deadline.
    Draining = 1,
    /// Closing every connection at once.
    Stopping = 2,
}

/// State and counters shared by the acceptor, the event loops or pool workers, and handles.
///
/// Counters are statistics: `Relaxed` is enough, except `open` and `state`, which the acceptor
/// and the connection threads use to decide whether to wake each other (see `connection_closed`).
#[derive(Default)]
pub(crate) struct Shared {
    state: AtomicU8,
    waker: Mutex<Option<Arc<mio::Waker>>>,
    /// Connections accepted and not yet closed (pooled: waiting or served).
    pub(crate) open: AtomicUsize,
    /// Pooled model: connections accepted and waiting for a worker.
    pub(crate) waiting: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) forced: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) accept_backoffs: AtomicU64,
    pub(crate) peak_output: AtomicUsize,
    /// The acceptor stopped accepting after EMFILE & co.; a closing connection should wake it.
    pub(crate) backing_off: AtomicBool,
    /// Event loops still running; each one wakes the acceptor when it exits.
    pub(crate) running_loops: AtomicUsize,
}

impl Shared {
    pub(crate) fn state(&self) -> RunState {
        // ORDERING: SeqCst pairs with the SeqCst store in `request` and the SeqCst `open`
        // decrement in `connection_closed`: of "acceptor sets state then reads open" and
        // "closer decrements open then reads state", at least one sees the other's write.
        match self.state.load(Ordering::SeqCst) {
            0 => RunState::Running,
            1 => RunState::Draining,
            _ => RunState::Stopping,
        }
    }

    /// Moves the state forward to `to` (never back) and wakes the acceptor.
    pub(crate) fn request(&self, to: RunState) {
        // ORDERING: see `state`.
        self.state.fetch_max(to as u8, Ordering::SeqCst);
        self.wake_acceptor();
    }

    /// Installs the acceptor's waker. Call before checking `state` for the first time, so a
    /// request made concurrently either sees the waker or is seen by that check.
    pub(crate) fn set_waker(&self, waker: Arc<mio::Waker>) {
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker);
    }

    pub(crate) fn wake_acceptor(&self) {
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(waker) = waker
            && let Err(e) = waker.wake()
        {
            tracing::warn!(error = %e, "cannot wake the acceptor");
        }
    }

    /// Books a connection that was just closed (its descriptor already released) and wakes
    /// the acceptor if it waits for descriptors or for the drain to finish.
    pub(crate) fn connection_closed(&self, bytes_in: u64, bytes_out: u64, forced: bool) {
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        self.closed.fetch_add(1, Ordering::Relaxed);
        if forced {
            self.forced.fetch_add(1, Ordering::Relaxed);
        }
        // ORDERING: SeqCst, see `state`.
        self.open.fetch_sub(1, Ordering::SeqCst);
        if self.state() != RunState::Running || self.backing_off.load(Ordering::SeqCst) {
            self.wake_acceptor();
        }
    }

    /// An event loop ended; the acceptor may be waiting for the last one.
    pub(crate) fn loop_exited(&self) {
        self.running_loops.fetch_sub(1, Ordering::SeqCst);
        self.wake_acceptor();
    }

    pub(crate) fn stats(&self) -> ServerStats {
        let r = Ordering::Relaxed;
        ServerStats {
            open: self.open.load(r),
            waiting: self.waiting.load(r),
            accepted: self.accepted.load(r),
            rejected: self.rejected.load(r),
            closed: self.closed.load(r),
            forced: self.forced.load(r),
            bytes_in: self.bytes_in.load(r),
            bytes_out: self.bytes_out.load(r),
            accept_backoffs: self.accept_backoffs.load(r),
            peak_output_buffer: self.peak_output.load(r),
        }
    }
}

/// Controls a server from any thread: ask it to stop, read its counters.
///
/// Get one from `Server::handle` before calling `Server::run` (which blocks). Requests made
/// before `run` starts are honoured as soon as it does.
///
/// ```
/// use chi_net::{Server, ServerConfig};
///
/// let config = ServerConfig::builder().addr("127.0.0.1:0".parse().unwrap()).build().unwrap();
/// let server = Server::bind(config).unwrap();
/// let handle = server.handle();
/// let thread = std::thread::spawn(move || server.run());
/// handle.shutdown(); // stop accepting, answer what was received, close, return
/// let stats = thread.join().unwrap().unwrap();
/// assert_eq!(stats.open, 0);
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ServerHandle {
    /// Graceful shutdown: stop accepting, answer the data already received, send all pending
    /// output, close each connection, and let `run` return — at the latest after the drain
    /// timeout, when the remaining connections are closed.
    pub fn shutdown(&self) {
        self.shared.request(RunState::Draining);
    }

    /// Immediate shutdown: stop accepting and close every connection now, unsent output lost.
    pub fn shutdown_now(&self) {
        self.shared.request(RunState::Stopping);
    }

    /// True once `shutdown` or `shutdown_now` was called (or a signal asked for it).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.state() != RunState::Running
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("state", &self.shared.state())
            .finish_non_exhaustive()
    }
}

/// A thread that turns SIGINT/SIGTERM into `shutdown` (the first) and `shutdown_now` (any
/// later one). Dropping it stops the thread; the signals stay caught by signal-hook, so a
/// signal arriving after that is ignored rather than killing the process mid-cleanup.
pub(crate) struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalThread {
    pub(crate) fn spawn(server: ServerHandle) -> io::Result<SignalThread> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("chi-net-signals".into())
            .spawn(move || {
                for (n, signal) in signals.forever().enumerate() {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    if n == 0 {
                        tracing::info!("{name} received: draining (send it again to stop at once)");
                        server.shutdown();
                    } else {
                        tracing::warn!("{name} received again: closing every connection now");
                        server.shutdown_now();
                    }
                }
            })?;
        Ok(SignalThread {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
