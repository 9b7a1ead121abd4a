//! The state every part of a running server reads: where it is in its life ([`RunState`]),
//! the acceptor's waker, the counters behind [`ServerStats`], and the first failure of a
//! server thread.
//!
//! A shutdown request only moves the state forward and wakes the acceptor through its mio
//! `Waker`; the acceptor stops listening and tells the event loops (through their own wakers)
//! or the pooled workers (through theirs) to drain. A server thread that dies records why and
//! asks for a stop the same way, so `Server::run` returns with the cause instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::chunk::CloseReason;

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

/// Tests only: where `Shared::maybe_inject_fault` may panic.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fault {
    /// An event loop or a pooled worker.
    Worker = 1,
    /// The acceptor (the thread in `Server::run`).
    Acceptor = 2,
}

/// A server's counters: a snapshot from `ServerHandle::stats`, or the final ones from
/// `Server::run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now: being served, or (pooled) waiting for a worker.
    pub open: usize,
    /// Pooled model: connections accepted and waiting for a free worker.
    pub waiting: usize,
    /// Connections accepted and served (not counting rejected ones).
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub rejected: u64,
    /// Served connections that have closed.
    pub closed: u64,
    /// Connections a graceful shutdown closed cleanly: every answer sent, then FIN, then the
    /// client's FIN.
    pub drained: u64,
    /// Connections closed by the drain deadline or `shutdown_now` rather than by finishing.
    pub forced: u64,
    /// Bytes received, counted when each connection closes.
    pub bytes_in: u64,
    /// Bytes sent, counted when each connection closes.
    pub bytes_out: u64,
    /// Times accepting paused because the process or system ran out of descriptors or memory.
    pub accept_backoffs: u64,
    /// The most unsent output any one connection held. Event model: what the socket did not
    /// take at once, queued on the connection (0 while every answer is written whole), at most
    /// the output cap plus one chunk's answer. Pooled: the answer to one chunk, held while its
    /// worker writes it.
    pub peak_output_buffer: usize,
    /// Event and uring models with an idle timeout: idle-timer entries the loops hold. Entries
    /// of closed connections are dropped in batches, so this stays at most twice the open
    /// connections (and is 0 once none is open). Always 0 in the pooled model.
    pub idle_timers: usize,
}

/// State and counters shared by the acceptor, the event loops or pool workers, and handles.
///
/// Counters are statistics: `Relaxed` is enough, except `open`, `state` and `backing_off`,
/// which the acceptor and the connection threads use to decide whether to wake each other
/// (see `connection_closed`), and `running_loops`, which the acceptor waits on.
#[derive(Default)]
pub(crate) struct Shared {
    state: AtomicU8,
    waker: Mutex<Option<Arc<mio::Waker>>>,
    /// The first server thread that died, and why; `Server::run` returns it as an error.
    failure: Mutex<Option<String>>,
    /// Connections accepted and not yet closed (pooled: waiting or served).
    pub(crate) open: AtomicUsize,
    /// Pooled model: connections accepted and waiting for a worker.
    pub(crate) waiting: AtomicUsize,
    accepted: AtomicU64,
    rejected: AtomicU64,
    closed: AtomicU64,
    drained: AtomicU64,
    forced: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    pub(crate) accept_backoffs: AtomicU64,
    pub(crate) peak_output: AtomicUsize,
    /// Idle-timer entries held by the event and uring loops (see [`ServerStats::idle_timers`]).
    pub(crate) idle_timers: AtomicUsize,
    /// The acceptor stopped accepting after EMFILE & co.; a closing connection should wake it.
    pub(crate) backing_off: AtomicBool,
    /// Event loops still running; each one wakes the acceptor when it exits.
    pub(crate) running_loops: AtomicUsize,
    /// Tests only: the next server thread of this kind (`Fault`) to call `maybe_inject_fault`
    /// panics; 0 for none.
    #[cfg(test)]
    pub(crate) inject_fault: AtomicU8,
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
        // ORDERING: SeqCst, see `state`.
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

    /// A server thread died (a panic, or a poll that failed): remember the first cause and
    /// stop the server, so `run` returns it instead of waiting for a thread that is gone.
    pub(crate) fn thread_died(&self, thread: &str, cause: &str) {
        tracing::error!(thread, cause, "a server thread died; stopping the server");
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            *failure = Some(format!("{thread} died: {cause}"));
        }
        drop(failure);
        self.request(RunState::Stopping);
    }

    /// The first thread death recorded by [`thread_died`](Shared::thread_died).
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts a new connection as open if fewer than `max` are, else as rejected; says which.
    /// Exact with several callers at once (each uring loop admits its own connections).
    pub(crate) fn admit(&self, max: usize) -> bool {
        // ORDERING: SeqCst, as every access to `open` (see `state`).
        let admitted = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < max).then_some(open + 1)
            })
            .is_ok();
        let counter = if admitted {
            &self.accepted
        } else {
            &self.rejected
        };
        // ORDERING: Relaxed, a statistic.
        counter.fetch_add(1, Ordering::Relaxed);
        admitted
    }

    /// Books a connection that was just closed (its descriptor already released) and wakes
    /// the acceptor if it waits for descriptors or for the drain to finish.
    pub(crate) fn connection_closed(&self, bytes_in: u64, bytes_out: u64, reason: &CloseReason) {
        // ORDERING: Relaxed, statistics only.
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        // ORDERING: Relaxed, statistics only.
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        // ORDERING: Relaxed, statistics only.
        self.closed.fetch_add(1, Ordering::Relaxed);
        match reason {
            // ORDERING: Relaxed, statistics only.
            CloseReason::Forced => self.forced.fetch_add(1, Ordering::Relaxed),
            // ORDERING: Relaxed, statistics only.
            CloseReason::Drained => self.drained.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        // ORDERING: SeqCst, see `state`.
        self.open.fetch_sub(1, Ordering::SeqCst);
        // ORDERING: SeqCst pairs with the acceptor's SeqCst `backing_off.swap(true)` before
        // it waits: either it sees this close's `open` decrement (and retries), or this load
        // sees its flag and wakes it.
        if self.state() != RunState::Running || self.backing_off.load(Ordering::SeqCst) {
            self.wake_acceptor();
        }
    }

    /// A connection the acceptor counted as open was closed before any model took it.
    pub(crate) fn connection_dropped(&self) {
        self.connection_closed(0, 0, &CloseReason::Forced);
    }

    /// An event loop ended; the acceptor may be waiting for the last one.
    pub(crate) fn loop_exited(&self) {
        // ORDERING: SeqCst, read by the acceptor's SeqCst load in its wait for all loops.
        self.running_loops.fetch_sub(1, Ordering::SeqCst);
        self.wake_acceptor();
    }

    /// Tests only: panics once after `inject_fault` was set, as a server thread with a bug
    /// would (handler panics are caught per connection, so they cannot serve to kill one).
    #[cfg(test)]
    pub(crate) fn maybe_inject_fault(&self, here: Fault) {
        let here = here as u8;
        // ORDERING: SeqCst, so exactly one thread takes the fault; tests only.
        if self
            .inject_fault
            .compare_exchange(here, 0, Ordering::SeqCst, Ordering::SeqCst)
            == Ok(here)
        {
            panic!("injected fault");
        }
    }

    pub(crate) fn stats(&self) -> ServerStats {
        // ORDERING: Relaxed for every counter: a snapshot of statistics, not a consistent cut.
        let r = Ordering::Relaxed;
        ServerStats {
            open: self.open.load(r),
            waiting: self.waiting.load(r),
            accepted: self.accepted.load(r),
            rejected: self.rejected.load(r),
            closed: self.closed.load(r),
            drained: self.drained.load(r),
            forced: self.forced.load(r),
            bytes_in: self.bytes_in.load(r),
            bytes_out: self.bytes_out.load(r),
            accept_backoffs: self.accept_backoffs.load(r),
            peak_output_buffer: self.peak_output.load(r),
            idle_timers: self.idle_timers.load(r),
        }
    }
}
