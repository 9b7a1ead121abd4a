//! Who to wake when a task completes: a parked thread or an async task's `Waker`.

use crate::loom::thread::Thread;
use std::task::Waker;

/// One party waiting for a task.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A thread blocked in `result`/`wait`; woken with `unpark`.
    Thread(Thread),
    /// An async task polling the `Task` future.
    Waker(Waker),
}

impl Waiter {
    /// Wakes the waiter. A wake-up it does not need is harmless: both kinds re-check the state.
    pub(crate) fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Waker(w) => w.wake(),
        }
    }

    /// True when `self` would wake the same party as `waker`.
    pub(crate) fn will_wake(&self, waker: &Waker) -> bool {
        matches!(self, Waiter::Waker(w) if w.will_wake(waker))
    }
}
