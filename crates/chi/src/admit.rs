//! Admission of new work, shared by both pools: how long a submission may wait for room in a
//! bounded queue ([`Admit`]), why it was turned away ([`Refused`]), and how each of the
//! `submit` / `try_submit` / `submit_timeout` triad reports a refusal.
//!
//! Each pool has one internal `submit_with(work, Admit)` that returns `Refused` with the work;
//! the public triad only picks the `Admit` and the error mapping below, so the three agree on
//! both pools.

use crate::error::{SubmitError, SubmitTimeoutError, TrySubmitError};
use std::time::{Duration, Instant};

/// How long a submission may wait for room in a bounded queue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Admit {
    /// Only if there is room now (`try_submit`).
    Now,
    /// Until the deadline; `None` waits as long as it takes (`submit`).
    Until(Option<Instant>),
}

impl Admit {
    /// Waits at most `timeout` (`submit_timeout`); a timeout past the clock's range waits as
    /// long as it takes.
    pub(crate) fn within(timeout: Duration) -> Admit {
        Admit::Until(crate::limits::deadline_after(timeout))
    }
}

/// Why a submission was not queued, with the work handed back.
pub(crate) enum Refused<W> {
    /// The bounded queue had no room (in time).
    Full(W),
    /// The pool is shut down.
    ShutDown(W),
}

impl<W> Refused<W> {
    /// `submit`'s error: it waits for room, so only a shutdown refuses it.
    pub(crate) fn into_submit(self) -> SubmitError<W> {
        match self {
            Refused::Full(w) | Refused::ShutDown(w) => SubmitError(w),
        }
    }

    /// `try_submit`'s error: full now, or shut down.
    pub(crate) fn into_try_submit(self) -> TrySubmitError<W> {
        match self {
            Refused::Full(w) => TrySubmitError::Full(w),
            Refused::ShutDown(w) => TrySubmitError::ShutDown(w),
        }
    }

    /// `submit_timeout`'s error: still full at the deadline, or shut down.
    pub(crate) fn into_submit_timeout(self) -> SubmitTimeoutError<W> {
        match self {
            Refused::Full(w) => SubmitTimeoutError::Timeout(w),
            Refused::ShutDown(w) => SubmitTimeoutError::ShutDown(w),
        }
    }
}
