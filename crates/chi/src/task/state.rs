//! The task's atomic state word: named bits, a snapshot type, and one read-modify-write per
//! transition, each returning a `#[must_use]` answer that tells the caller what to do next.
//!
//! ```text
//!   PENDING ──try_start──▶ RUNNING ──complete──▶ COMPLETE ──(callbacks ran)──▶ COMPLETE|RELEASED
//!      │                                            ▲
//!      └──────try_cancel──▶ CANCELLED ──complete────┘
//! ```
//!
//! `NOTIFY` is set (only before `COMPLETE`) by whoever parks a waiter or adds a callback, so that
//! the completing thread knows it must visit the slow part; a task nobody waits on completes
//! with a single `fetch_or`.

use crate::loom::sync::atomic::{AtomicUsize, Ordering};

/// A worker has taken the task and is running it; the closure belongs to that worker.
pub(crate) const RUNNING: usize = 1;
/// The task was cancelled before it started; the closure belongs to the canceller.
pub(crate) const CANCELLED: usize = 1 << 1;
/// The result slot is written and may be read through a shared reference.
pub(crate) const COMPLETE: usize = 1 << 2;
/// Someone registered a waiter or a callback before completion; the completer must visit them.
pub(crate) const NOTIFY: usize = 1 << 3;
/// The completer has finished reading the slot for callbacks; the owner may take the value.
pub(crate) const RELEASED: usize = 1 << 4;
/// A hint from the pool, not part of the state machine: when the task was queued, no worker
/// was awake to take it (one was woken from sleep, or started). A waiter that finds the task
/// still queued yields instead of spinning until a worker takes it: the thread being woken may
/// have been placed on the waiter's own CPU, and spinning there would only keep it off.
pub(crate) const COLD: usize = 1 << 5;

/// A copy of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(pub(crate) usize);

impl Snapshot {
    pub(crate) fn is_running(self) -> bool {
        self.0 & (RUNNING | COMPLETE) == RUNNING
    }
    pub(crate) fn is_cancelled(self) -> bool {
        self.0 & CANCELLED != 0
    }
    pub(crate) fn is_complete(self) -> bool {
        self.0 & COMPLETE != 0
    }
    pub(crate) fn has_notify(self) -> bool {
        self.0 & NOTIFY != 0
    }
    /// Queued behind a wake-up ([`COLD`]) and not yet taken by a worker: a waiter should yield
    /// rather than spin.
    pub(crate) fn is_cold_and_queued(self) -> bool {
        self.0 & (COLD | RUNNING | CANCELLED | COMPLETE) == COLD
    }
    /// Complete, and no completer is still reading the slot: the value may be moved out.
    pub(crate) fn is_takeable(self) -> bool {
        self.is_complete() && (self.0 & NOTIFY == 0 || self.0 & RELEASED != 0)
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot({:#07b})", self.0)
    }
}

/// Answer of [`State::try_start`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransitionToRunning {
    /// The caller now owns the closure and must complete the task.
    Success,
    /// The task was cancelled first; the caller must not touch the closure.
    Cancelled,
}

/// Answer of [`State::try_cancel`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransitionToCancelled {
    /// The caller now owns the closure, must drop it and complete the task with `Cancelled`.
    Success,
    /// The task had been cancelled already.
    AlreadyCancelled,
    /// The task is running or finished; nothing changed.
    TooLate,
}

/// Answer of [`State::try_set_notify`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TransitionToNotify {
    /// `NOTIFY` is set and the task is not complete: the completer will visit the slow part.
    Registered,
    /// The task completed first: handle the outcome here, do not register.
    Complete,
}

/// The state word.
#[derive(Debug)]
pub(crate) struct State(AtomicUsize);

impl State {
    pub(crate) fn new() -> Self {
        State(AtomicUsize::new(0))
    }

    /// ORDERING: Acquire pairs with the Release half of `set_complete`/`set_released`, so a
    /// reader that sees `COMPLETE` (or `RELEASED`) also sees the slot write (or the end of the
    /// completer's reads of it).
    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.0.load(Ordering::Acquire))
    }

    /// PENDING → RUNNING, unless cancelled.
    pub(crate) fn try_start(&self) -> TransitionToRunning {
        // ORDERING: Acquire on success so the runner sees the closure as the submitter wrote
        // it (the queue already orders this; the Acquire keeps the claim self-contained), and
        // Acquire on failure so a runner that loses to a cancel sees the canceller's claim.
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            if cur & CANCELLED != 0 {
                return TransitionToRunning::Cancelled;
            }
            debug_assert!(cur & (RUNNING | COMPLETE) == 0, "task started twice");
            match self.0.compare_exchange_weak(
                cur,
                cur | RUNNING,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return TransitionToRunning::Success,
                Err(actual) => cur = actual,
            }
        }
    }

    /// PENDING → CANCELLED.
    pub(crate) fn try_cancel(&self) -> TransitionToCancelled {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            if cur & CANCELLED != 0 {
                return TransitionToCancelled::AlreadyCancelled;
            }
            if cur & (RUNNING | COMPLETE) != 0 {
                return TransitionToCancelled::TooLate;
            }
            // ORDERING: Acquire: the canceller takes ownership of the closure and must see it
            // fully written; the runner's CAS fails on our bit, so exactly one of us owns it.
            match self.0.compare_exchange_weak(
                cur,
                cur | CANCELLED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return TransitionToCancelled::Success,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Sets the [`COLD`] hint. Every transition is a read-modify-write that keeps bits it
    /// does not own, so the hint never changes what a transition decides.
    pub(crate) fn set_cold(&self) {
        // ORDERING: Relaxed: a hint that orders no data; a waiter that misses it only spins.
        self.0.fetch_or(COLD, Ordering::Relaxed);
    }

    /// Sets `COMPLETE`; returns the state before, so the caller knows whether `NOTIFY` was set.
    pub(crate) fn set_complete(&self) -> Snapshot {
        // ORDERING: Release publishes the slot write to every Acquire load that sees COMPLETE;
        // Acquire lets the completer see the waiter/callback a registrant stored before it set
        // NOTIFY (the registrant also holds the slow-path mutex, which orders the data itself).
        let prev = Snapshot(self.0.fetch_or(COMPLETE, Ordering::AcqRel));
        debug_assert!(!prev.is_complete(), "task completed twice");
        prev
    }

    /// Sets `RELEASED` after the completer's last read of the slot.
    pub(crate) fn set_released(&self) {
        // ORDERING: Release: the callbacks' reads of the slot happen-before the owner's take,
        // which loads with Acquire before moving the value out.
        self.0.fetch_or(RELEASED, Ordering::Release);
    }

    /// Sets `NOTIFY` unless the task is already complete. Called with the slow-path lock held.
    pub(crate) fn try_set_notify(&self) -> TransitionToNotify {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if cur & COMPLETE != 0 {
                return TransitionToNotify::Complete;
            }
            if cur & NOTIFY != 0 {
                return TransitionToNotify::Registered;
            }
            // ORDERING: AcqRel: Release so the completer's fetch_or that sees NOTIFY also sees
            // our registration; Acquire so a failure that reveals COMPLETE shows the slot.
            match self.0.compare_exchange_weak(
                cur,
                cur | NOTIFY,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return TransitionToNotify::Registered,
                Err(actual) => cur = actual,
            }
        }
    }
}
