//! A uring loop's own listener: one multishot accept armed on it, and the back-off when the
//! process runs out of descriptors.
//!
//! The loops' listeners share the port through `SO_REUSEPORT` (see `listener::bind_group`):
//! the kernel spreads new connections over them, and each loop accepts its share in the same
//! `io_uring_enter` as everything else, with no thread in between. A connection inherits
//! `TCP_NODELAY` and `SO_OOBINLINE` from the listener, so accepting one costs no system call
//! of its own.
//!
//! An accept error of one connection is skipped; running out of descriptors or memory ends
//! the multishot accept, and it is armed again after a back-off (1 ms doubling to 200 ms), or
//! at the end of the turn in which one of this loop's connections closed. On a drain the
//! accept is cancelled, and once it is reaped the connections already in the listener's
//! backlog are accepted (they are served as draining) before the listener closes: closing it
//! with connections queued would make the kernel reset them. A stop closes it at once.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};

use super::sys::{Completion, Ring};
use crate::server::deadline_after;
use crate::server::listener::{AcceptFailure, Backoff, classify};
use crate::server::state::Shared;

/// User data of the multishot accept, and of its cancel.
pub(super) const ACCEPT: u64 = u64::MAX - 2;
pub(super) const ACCEPT_CANCEL: u64 = u64::MAX - 3;
/// The most connections taken from a draining listener's backlog.
const BACKLOG_ACCEPTS: usize = 4096;

/// The multishot accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not in the ring.
    Idle,
    Armed,
    /// A cancel is on its way; the accept's last completion has not come back yet.
    Cancelling,
}

/// A loop's listener and its accept (a loop without a listener accepts nothing).
pub(super) struct Accept {
    listener: Option<TcpListener>,
    state: State,
    backoff: Backoff,
    /// Backing off: when to arm the accept again.
    retry_at: Option<Instant>,
    /// A connection of this loop closed while backing off: arm again without waiting.
    freed: bool,
    /// Accepting has stopped for good; the listener closes once the accept is reaped.
    stopped: bool,
    /// The last connection was rejected for `max_connections` (see `acceptor::at_limit`).
    pub(super) at_limit: bool,
}

impl Accept {
    pub(super) fn new(listener: Option<std::net::TcpListener>) -> Accept {
        Accept {
            listener: listener.map(TcpListener::from_std),
            state: State::Idle,
            backoff: Backoff::default(),
            retry_at: None,
            freed: false,
            stopped: false,
            at_limit: false,
        }
    }

    /// Whether the multishot accept is in the ring (its cancel included).
    pub(super) fn in_ring(&self) -> bool {
        self.state != State::Idle
    }

    /// When the loop must wake to arm the accept again: at the end of the back-off, or at
    /// once when a descriptor was freed meanwhile.
    pub(super) fn wake_at(&self, now: Instant) -> Option<Instant> {
        let retry_at = self.retry_at.filter(|_| !self.stopped)?;
        Some(if self.freed { now } else { retry_at })
    }

    /// Arms the accept unless it is armed already, backing off, or stopped.
    pub(super) fn arm(&mut self, ring: &mut Ring, now: Instant) -> io::Result<()> {
        let Some(listener) = &self.listener else {
            return Ok(());
        };
        let backing_off = self.retry_at.is_some_and(|at| now < at) && !self.freed;
        if self.stopped || self.state != State::Idle || backing_off {
            return Ok(());
        }
        (self.retry_at, self.freed) = (None, false);
        ring.accept_multi(listener.as_raw_fd(), ACCEPT)?;
        self.state = State::Armed;
        Ok(())
    }

    /// Handles a completion of the accept: returns the new connection it carries, if any (not
    /// admitted yet); skips an error of one connection; backs off from a lack of descriptors.
    pub(super) fn completed(
        &mut self,
        ring: &Ring,
        completion: Completion,
        now: Instant,
        shared: &Shared,
    ) -> Option<OwnedFd> {
        if !completion.more() {
            self.state = State::Idle;
        }
        let result = completion.result();
        if result >= 0 {
            if self.backoff.active() {
                self.backoff.reset();
                tracing::info!("accepting connections again");
            }
            return ring.take_accepted(completion);
        }
        let err = io::Error::from_raw_os_error(-result);
        match classify(&err) {
            _ if -result == libc::ECANCELED => {}
            AcceptFailure::Drained | AcceptFailure::Skip => {
                tracing::debug!(error = %err, "accept failed for one connection; continuing");
            }
            AcceptFailure::BackOff => {
                if !self.backoff.active() {
                    tracing::warn!(
                        error = %err,
                        "cannot accept connections; pausing until a connection closes \
                         (they wait in the listen backlog)"
                    );
                }
                self.retry_at = deadline_after(now, self.backoff.next_delay());
                self.freed = false;
                // ORDERING: Relaxed, a statistic.
                shared
                    .accept_backoffs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        None
    }

    /// One of this loop's connections closed: a descriptor is free.
    pub(super) fn descriptor_freed(&mut self) {
        self.freed = true;
    }

    /// Stops accepting for good: cancels the accept if it is armed.
    pub(super) fn stop(&mut self, ring: &mut Ring) -> io::Result<()> {
        self.stopped = true;
        if self.state == State::Armed {
            self.state = State::Cancelling;
            ring.cancel(ACCEPT, ACCEPT_CANCEL)?;
        }
        Ok(())
    }

    /// Once stopped and reaped, closes the listener; with `drain`, first accepts what waits in
    /// its backlog and returns it (to be served as draining) instead of letting it be reset.
    pub(super) fn close(&mut self, drain: bool) -> Vec<TcpStream> {
        let mut backlog = Vec::new();
        if !self.stopped || self.state != State::Idle {
            return backlog;
        }
        let Some(listener) = self.listener.take() else {
            return backlog;
        };
        // Bounded: connections go on arriving until the listener is closed.
        for _ in 0..if drain { BACKLOG_ACCEPTS } else { 0 } {
            match listener.accept() {
                Ok((stream, _)) => backlog.push(stream),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::debug!(error = %e, "cannot accept the backlog of a draining listener");
                    }
                    break;
                }
            }
        }
        backlog
    }
}
