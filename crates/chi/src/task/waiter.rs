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
            // A `Waker` is user code (the async runtime's): its panic must not unwind into
            // the thread that completes the task.
            Waiter::Waker(w) => {
                if let Err(msg) = crate::unwind::catch(|| w.wake()) {
                    tracing::error!(panic = %msg, "an async waker panicked while waking");
                }
            }
        }
    }

    /// True when `self` would wake the same party as `waker`.
    pub(crate) fn will_wake(&self, waker: &Waker) -> bool {
        matches!(self, Waiter::Waker(w) if w.will_wake(waker))
    }
}
