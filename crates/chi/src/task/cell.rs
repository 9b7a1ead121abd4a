//! The one allocation behind each task: state word, result slot, slow part (waiters and
//! callbacks) and, for thread-pool tasks, the closure itself.
//!
//! Field access rules (the state word in `state.rs` decides who may touch what):
//! - `FnCell::func` is touched only by the thread whose transition out of PENDING succeeded:
//!   the runner (`try_start`) takes and calls it, or the canceller (`try_cancel`) drops it.
//! - `Core::slot` is written once, by that same thread, before `COMPLETE` is set. After
//!   `COMPLETE` it is read through shared references only (callbacks). It is moved out only by
//!   the unique `Task` owner, and only once the state is "takeable" (`COMPLETE` and, if anyone
//!   registered, `RELEASED`), so no callback can still be reading it.
//! - `Core::slow` is guarded by its mutex; `NOTIFY` in the state word says it is non-empty.

use super::state::{
    Snapshot, State, TransitionToCancelled, TransitionToNotify, TransitionToRunning,
};
use super::waiter::Waiter;
use crate::TaskError;
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::{Mutex, MutexGuard};
use crate::unwind;
use std::task::{Context, Poll};
use std::time::Instant;

/// Rounds of spinning before a waiter parks (one under loom, where each round is a branch).
const SPIN_ROUNDS: u32 = if cfg!(chi_loom) { 1 } else { 64 };
/// Most yields while a cold task waits for its woken worker to take it (about as long as a
/// slow cross-CPU wake-up on a virtual machine); the waiter then spins and parks as usual.
const COLD_YIELDS: u32 = if cfg!(chi_loom) { 1 } else { 200 };

/// What a task ended with.
pub(crate) type Outcome<T> = Result<T, TaskError>;
/// A done-callback, boxed.
pub(crate) type Callback<T> = Box<dyn FnOnce(&Outcome<T>) + Send>;

/// The slow part: only visited when somebody waits or registered a callback.
struct Slow<T> {
    waiters: Vec<Waiter>,
    callbacks: Vec<Callback<T>>,
}

/// The slow part behind `guard`, created on first use.
fn slow_part<T>(guard: &mut Option<Box<Slow<T>>>) -> &mut Slow<T> {
    guard.get_or_insert_with(|| {
        Box::new(Slow {
            waiters: Vec::new(),
            callbacks: Vec::new(),
        })
    })
}

/// State, result slot and slow part of one task.
pub(crate) struct Core<T> {
    state: State,
    slot: UnsafeCell<Caught<Outcome<T>>>,
    /// Boxed on first use: most tasks never have a waiter or a callback, and a smaller cell
    /// means fewer pages touched when many tasks are in flight.
    slow: Mutex<Option<Box<Slow<T>>>>,
}

// SAFETY: `slot` is the only field that is not already Sync. Per the access rules above it is
// written once by a single thread before COMPLETE is published (Release/Acquire), moved out by
// the single owner after RELEASED, and otherwise only read through `&` by callbacks, which
// `Task::add_done_callback` allows only for `T: Sync`. Values move between threads, so `T: Send`.
unsafe impl<T: Send> Sync for Core<T> {}

impl<T> std::fmt::Debug for Core<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("state", &self.state.load())
            .finish()
    }
}

impl<T> Core<T> {
    pub(crate) fn new() -> Self {
        Core {
            state: State::new(),
            slot: UnsafeCell::new(Caught(None)),
            slow: Mutex::new(None),
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.state.load()
    }

    /// Marks the task as queued behind a wake-up (see [`super::state::COLD`]).
    pub(crate) fn mark_cold(&self) {
        self.state.set_cold();
    }

    fn lock_slow(&self) -> MutexGuard<'_, Option<Box<Slow<T>>>> {
        // Nothing panics while the lock is held (callbacks and wakes run after it is dropped),
        // so a poisoned lock still holds consistent data.
        self.slow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the outcome and wakes everybody. The caller must own the task: it won
    /// `try_start` or `try_cancel`, or (process pool) it is the one supervisor entry for it.
    pub(crate) fn complete(&self, outcome: Outcome<T>) {
        // SAFETY: the caller won the transition out of PENDING, so no other thread writes the
        // slot, and nobody reads it before COMPLETE, which is set just below.
        self.slot.with_mut(|p| unsafe { (*p).0 = Some(outcome) });
        let prev = self.state.set_complete();
        if prev.has_notify() {
            self.finish_slow();
        }
    }

    /// Runs the registered callbacks, then releases the slot and wakes the waiters.
    #[cold]
    fn finish_slow(&self) {
        loop {
            let callbacks = self
                .lock_slow()
                .as_mut()
                .map(|s| std::mem::take(&mut s.callbacks))
                .unwrap_or_default();
            if callbacks.is_empty() {
                break;
            }
            for cb in callbacks {
                self.run_callback(cb);
            }
        }
        // Late registrants saw COMPLETE and ran their callback themselves; from here on
        // nothing of ours reads the slot.
        self.state.set_released();
        let waiters = self
            .lock_slow()
            .as_mut()
            .map(|s| std::mem::take(&mut s.waiters))
            .unwrap_or_default();
        for w in waiters {
            w.wake();
        }
    }

    fn run_callback(&self, cb: Callback<T>) {
        // SAFETY: COMPLETE is set (we are the completer, or the registrant saw it), so the slot
        // is written and is not moved out while a `&Task` (held by the registrant) or the
        // completer's pre-RELEASED phase is alive.
        let outcome = self.slot.with(|p| unsafe { (*p).0.as_ref() });
        let Some(outcome) = outcome else {
            debug_assert!(false, "callback ran before the outcome was written");
            return;
        };
        if let Err(msg) = unwind::catch(|| cb(outcome)) {
            tracing::error!(panic = %msg, "a task's done-callback panicked; other callbacks still run");
        }
    }

    /// Registers `cb`, or runs it now if the task is already complete.
    pub(crate) fn add_callback(&self, cb: Callback<T>) {
        if !self.snapshot().is_complete() {
            let mut slow = self.lock_slow();
            if self.state.try_set_notify() == TransitionToNotify::Registered {
                slow_part(&mut slow).callbacks.push(cb);
                return;
            }
        }
        self.run_callback(cb);
    }

    /// Registers `waiter` unless the value is already takeable. Returns true when registered.
    fn register(&self, waiter: impl FnOnce(&mut Vec<Waiter>)) -> bool {
        let mut slow = self.lock_slow();
        let snap = self.snapshot();
        if snap.is_takeable() {
            return false;
        }
        // Complete but not released means NOTIFY is set and the completer will still look at
        // the waiters; otherwise set NOTIFY ourselves.
        if !snap.is_complete() && self.state.try_set_notify() == TransitionToNotify::Complete {
            // Completed just now. If nobody had registered (no NOTIFY), it is takeable at once.
            if self.snapshot().is_takeable() {
                return false;
            }
        }
        waiter(&mut slow_part(&mut slow).waiters);
        true
    }

    /// Blocks until the outcome can be taken, or until `deadline`. Returns true when done.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        // Spin briefly first: results that are a few microseconds away are common, and a
        // park/unpark pair costs a cross-core wake-up on both sides. While the task waits for
        // a worker that is still being woken (COLD), yield instead of spinning: the woken
        // worker may have been placed on this CPU, and a spin would keep it off. Once the
        // worker has taken the task, spin as usual, so the result is caught without a park
        // and the caller's next submit still finds that worker awake.
        for _ in 0..COLD_YIELDS {
            if !self.snapshot().is_cold_and_queued() {
                break;
            }
            crate::loom::thread::yield_now();
        }
        let spin = SPIN_ROUNDS;
        for i in 0..spin {
            if self.snapshot().is_takeable() {
                return true;
            }
            if i < 48 {
                for _ in 0..(1u32 << (i / 8).min(6)) {
                    crate::loom::spin_hint();
                }
            } else {
                crate::loom::thread::yield_now();
            }
        }
        let me = crate::loom::thread::current();
        let registered = self.register(|ws| {
            if !ws
                .iter()
                .any(|w| matches!(w, Waiter::Thread(t) if t.id() == me.id()))
            {
                ws.push(Waiter::Thread(me.clone()));
            }
        });
        if !registered {
            return true;
        }
        loop {
            if self.snapshot().is_takeable() {
                return true;
            }
            match deadline {
                None => crate::loom::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return self.snapshot().is_takeable();
                    }
                    crate::loom::thread::park_timeout(d - now);
                }
            }
        }
    }

    /// The async form of `wait`: ready once the outcome can be taken.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.snapshot().is_takeable() {
            return Poll::Ready(());
        }
        let registered = self.register(|ws| {
            if let Some(w) = ws.iter_mut().find(|w| matches!(w, Waiter::Waker(_))) {
                if !w.will_wake(cx.waker()) {
                    *w = Waiter::Waker(cx.waker().clone());
                }
            } else {
                ws.push(Waiter::Waker(cx.waker().clone()));
            }
        });
        if registered {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Moves the outcome out. The caller must be the unique owner and have seen `is_takeable`.
    pub(crate) fn take(&self) -> Outcome<T> {
        debug_assert!(self.snapshot().is_takeable());
        // SAFETY: takeable means COMPLETE (the slot is written) and no completer still reads it;
        // the caller is the unique owning handle, so no other `take` or callback-from-handle
        // runs at the same time.
        let v = self.slot.with_mut(|p| unsafe { (*p).0.take() });
        v.unwrap_or(Err(TaskError::ResultTaken))
    }

    /// The error the task ended with, if it is complete and failed.
    pub(crate) fn error(&self) -> Option<TaskError> {
        if !self.snapshot().is_complete() {
            return None;
        }
        // SAFETY: COMPLETE: the slot is written; we only read the error half, and the owner
        // (who alone may move the value out) is the caller, holding `&Task`.
        self.slot
            .with(|p| unsafe { (*p).0.as_ref().and_then(|o| o.as_ref().err().cloned()) })
    }

    /// Drops the outcome if it is still in the slot, on the caller's thread (a `Task` handle
    /// that is dropped once the task is takeable). The caller must be the unique owner and
    /// have seen `is_takeable`, as for `take`.
    pub(crate) fn drop_outcome(&self) {
        // SAFETY: as in `take`.
        let v = self.slot.with_mut(|p| unsafe { (*p).0.take() });
        drop(v);
    }

    /// PENDING → CANCELLED. On success the caller must drop the work and complete.
    pub(crate) fn try_cancel(&self) -> TransitionToCancelled {
        self.state.try_cancel()
    }

    /// PENDING → RUNNING.
    pub(crate) fn try_start(&self) -> TransitionToRunning {
        self.state.try_start()
    }
}

impl<T> Drop for Core<T> {
    /// Callbacks that never ran (and the wakers) are user values: dropped under
    /// `catch_unwind`. (The slot drops itself the same way: see [`Caught`].)
    fn drop(&mut self) {
        // The slow part exists only if someone set NOTIFY: most tasks skip the lock.
        if !self.snapshot().has_notify() {
            return;
        }
        let slow = self.lock_slow().take();
        if slow.is_some() {
            unwind::drop_caught(slow);
        }
    }
}

/// An optional user value (a closure, an outcome) that chi drops with `catch_unwind` when
/// its allocation goes: the last holder is chi (a worker, a queue, a supervisor) whenever the
/// handle went first, and a panicking `Drop` must not unwind into chi's threads. (A handle
/// dropped after completion drops its value itself, on the user's thread: see `Task`'s
/// `Drop`.)
struct Caught<V>(Option<V>);

impl<V> Drop for Caught<V> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            unwind::drop_caught(v);
        }
    }
}

/// What a `Task` handle needs from the allocation behind it.
pub(crate) trait TaskCell<T>: Send + Sync {
    /// The shared state and result.
    fn core(&self) -> &Core<T>;
    /// Cancels the task if possible; true if it is (now or already) cancelled.
    fn cancel(&self) -> bool;
    /// Cancels the task only if it has not started, never stopping a running one; true if it
    /// is (now or already) cancelled and will never run.
    fn cancel_pending(&self) -> bool;
}

/// A task completed from outside (for example by a process-pool supervisor): no closure.
impl<T: Send> TaskCell<T> for Core<T> {
    fn core(&self) -> &Core<T> {
        self
    }
    fn cancel(&self) -> bool {
        match self.try_cancel() {
            TransitionToCancelled::Success => {
                self.complete(Err(TaskError::Cancelled));
                true
            }
            TransitionToCancelled::AlreadyCancelled => true,
            TransitionToCancelled::TooLate => false,
        }
    }
    fn cancel_pending(&self) -> bool {
        TaskCell::cancel(self) // nothing runs here to stop
    }
}

/// How a queued job ended, for the pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunResult {
    /// The closure returned.
    Completed,
    /// The closure panicked; the panic is stored in the task.
    Panicked,
    /// The task had been cancelled; nothing ran.
    Skipped,
}

/// Type-erased runnable work, as the pool's queues hold it.
pub(crate) trait Runnable: Send + Sync {
    /// Runs the task (or skips it if it was cancelled) and completes it.
    fn run(&self) -> RunResult;
    /// Cancels the task if it has not started (shutdown_now, failed pool).
    fn cancel_with(&self, err: TaskError) -> bool;
}

/// A thread-pool task: the core plus the closure, in one allocation.
pub(crate) struct FnCell<F, T> {
    core: Core<T>,
    func: UnsafeCell<Caught<F>>,
}

// SAFETY: `func` is touched by exactly one thread, the winner of the transition out of PENDING
// (see the access rules), and moving `F: Send` to that thread is allowed; `core` is Sync for
// `T: Send` on its own.
unsafe impl<F: Send, T: Send> Sync for FnCell<F, T> {}

impl<F, T> FnCell<F, T> {
    pub(crate) fn new(f: F) -> Self {
        FnCell {
            core: Core::new(),
            func: UnsafeCell::new(Caught(Some(f))),
        }
    }

    /// Marks the task as queued behind a wake-up (see [`super::state::COLD`]).
    pub(crate) fn mark_cold(&self) {
        self.core.mark_cold();
    }

    fn take_func(&self) -> Option<F> {
        // SAFETY: only called by the winner of try_start/try_cancel, the closure's one owner.
        self.func.with_mut(|p| unsafe { (*p).0.take() })
    }

    fn cancel_as(&self, err: TaskError) -> TransitionToCancelled {
        let t = self.core.try_cancel();
        if t == TransitionToCancelled::Success {
            // The closure's captures are user code: a panicking `Drop` must not stop the
            // handle from completing (nor escape into `cancel` / `shutdown_now`).
            unwind::drop_caught(self.take_func());
            self.core.complete(Err(err));
        }
        t
    }
}

impl<F: FnOnce() -> T + Send, T: Send> TaskCell<T> for FnCell<F, T> {
    fn core(&self) -> &Core<T> {
        &self.core
    }
    fn cancel(&self) -> bool {
        self.cancel_as(TaskError::Cancelled) != TransitionToCancelled::TooLate
    }
    fn cancel_pending(&self) -> bool {
        TaskCell::cancel(self) // a running closure is never stopped anyway
    }
}

impl<F: FnOnce() -> T + Send, T: Send> Runnable for FnCell<F, T> {
    fn run(&self) -> RunResult {
        match self.core.try_start() {
            TransitionToRunning::Cancelled => RunResult::Skipped,
            TransitionToRunning::Success => {
                let Some(f) = self.take_func() else {
                    debug_assert!(false, "a started task has no closure");
                    return RunResult::Skipped;
                };
                match unwind::catch_payload(f) {
                    Ok(v) => {
                        self.core.complete(Ok(v));
                        RunResult::Completed
                    }
                    Err(payload) => {
                        self.core.complete(Err(TaskError::from_panic(payload)));
                        RunResult::Panicked
                    }
                }
            }
        }
    }

    fn cancel_with(&self, err: TaskError) -> bool {
        self.cancel_as(err) == TransitionToCancelled::Success
    }
}
