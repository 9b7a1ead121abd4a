//! [`Completer<T>`]: a [`Task<T>`] made without a pool, finished by whoever holds the completer
//! (Python's `Future()` with `set_result` / `set_exception`).
//!
//! Ownership of the outcome follows the task's state word, as for pool tasks: the completer
//! owns completion once it has moved the task out of PENDING (`set_running`, or implicitly in
//! `complete`); a `cancel` that wins the transition out of PENDING first owns it instead, and
//! the completer's later outcome is dropped.

use super::Task;
use super::cell::{Core, TaskCell};
use super::state::{TransitionToCancelled, TransitionToRunning};
use crate::{TaskError, unwind};
use std::fmt;
use std::sync::Arc;

/// What `Task::cancel` calls on a completable task (see [`Completer::with_cancel_hook`]), and
/// what `Task::cancel_pending` asks first (see [`Completer::with_cancel_hooks`]).
type CancelHook = Box<dyn Fn() -> bool + Send + Sync>;

/// The allocation behind a completable task: the core plus optional hooks.
struct HookCell<T> {
    core: Core<T>,
    hook: Option<CancelHook>,
    take_back: Option<CancelHook>,
}

impl<T> HookCell<T> {
    /// Calls the cancel hook; a panic in it counts as "could not cancel" and is logged.
    fn call_hook(&self) -> bool {
        call(self.hook.as_ref(), "cancel hook")
    }
}

/// Calls `hook` if there is one; a panic in it counts as false and is logged.
fn call(hook: Option<&CancelHook>, what: &str) -> bool {
    let Some(hook) = hook else {
        return false;
    };
    match unwind::catch(hook) {
        Ok(answer) => answer,
        Err(panic) => {
            tracing::error!(%panic, "a completable task's {what} panicked");
            false
        }
    }
}

impl<T: Send> TaskCell<T> for HookCell<T> {
    fn core(&self) -> &Core<T> {
        &self.core
    }

    fn cancel(&self) -> bool {
        self.cancel_unless(true)
    }

    fn cancel_pending(&self) -> bool {
        if self.take_back.is_some() {
            // The producer alone knows whether a pending task has started somewhere: ask it
            // to withdraw the task first, and leave the task alone if it cannot.
            let snap = self.core.snapshot();
            if snap.is_cancelled() {
                return true;
            }
            if snap.is_running() || snap.is_complete() {
                return false;
            }
            if !call(self.take_back.as_ref(), "take-back hook") {
                // A `cancel` on another thread may have won meanwhile.
                return self.core.snapshot().is_cancelled();
            }
        }
        self.cancel_unless(false)
    }
}

impl<T: Send> HookCell<T> {
    /// `cancel` (`stop_running`: the hook is also asked to stop a running task) or
    /// `cancel_pending` (false: a task marked running is left alone).
    fn cancel_unless(&self, stop_running: bool) -> bool {
        match self.core.try_cancel() {
            TransitionToCancelled::Success => {
                self.core.complete(Err(TaskError::Cancelled));
                // Tell whoever would have produced the value; the task is cancelled whatever
                // the hook answers.
                self.call_hook();
                true
            }
            TransitionToCancelled::AlreadyCancelled => true,
            TransitionToCancelled::TooLate => {
                stop_running && !self.core.snapshot().is_complete() && self.call_hook()
            }
        }
    }
}

/// The producer's side of a completable [`Task<T>`].
///
/// ```
/// use chi::{Completer, TaskError};
///
/// let (completer, task) = Completer::new();
/// std::thread::spawn(move || completer.set_result(6 * 7));
/// assert_eq!(task.result(), Ok(42));
///
/// // Works with everything that takes tasks: as_completed, wait, callbacks, `.await`.
/// let (c, t) = Completer::<u32>::new();
/// t.add_done_callback(|outcome| assert!(outcome.is_err()));
/// c.set_error(TaskError::Cancelled);
/// assert!(t.done());
/// ```
///
/// Dropping a completer that has not finished its task finishes it with
/// [`TaskError::Abandoned`], so no waiter hangs on a producer that went away.
#[must_use = "dropping a Completer finishes its task with TaskError::Abandoned"]
pub struct Completer<T: Send + 'static> {
    cell: Option<Arc<HookCell<T>>>,
}

impl<T: Send + 'static> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer")
            .field("finished", &self.cell.is_none())
            .finish()
    }
}

impl<T: Send + 'static> Completer<T> {
    /// A pending task and the completer that finishes it.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Completer<T>, Task<T>) {
        Self::make(None, None)
    }

    /// Like [`new`](Completer::new), with a hook that [`Task::cancel`] calls:
    ///
    /// - while the task is pending, `cancel` cancels it (it reports [`TaskError::Cancelled`]
    ///   and the completer's outcome will be dropped), then calls the hook so the producer can
    ///   stop work it has not started; `cancel` returns true whatever the hook answers;
    /// - once the completer has called [`set_running`](Completer::set_running), `cancel`
    ///   returns the hook's answer: true means "stop requested, the producer will finish the
    ///   task with `Cancelled`" (the process pool's contract for a running task).
    ///
    /// A panic in the hook is caught and logged, and counts as false.
    pub fn with_cancel_hook(
        hook: impl Fn() -> bool + Send + Sync + 'static,
    ) -> (Completer<T>, Task<T>) {
        Self::make(Some(Box::new(hook)), None)
    }

    /// Like [`with_cancel_hook`](Completer::with_cancel_hook), for a producer that may start
    /// the task without being able to say so first (on another machine, say), but can try to
    /// withdraw it. [`Task::cancel_pending`] on the pending task calls `take_back` first:
    ///
    /// - true means "withdrawn: it will never start"; the task is then cancelled as by
    ///   `cancel` (it reports [`TaskError::Cancelled`] and `hook` is called), and
    ///   `cancel_pending` returns true;
    /// - false means "it may have started"; `cancel_pending` returns false and the task is
    ///   left alone, to finish with whatever the producer sends.
    ///
    /// `take_back` is not called once the task is running, finished or cancelled, nor by
    /// `cancel`. A panic in it is caught and logged, and counts as false. If the producer
    /// finishes the task between a true answer and the cancel, the task keeps that outcome
    /// and `cancel_pending` returns false.
    ///
    /// ```
    /// use chi::{Completer, TaskError};
    ///
    /// let (_completer, task) = Completer::<u32>::with_cancel_hooks(|| true, || false);
    /// assert!(!task.cancel_pending()); // the producer could not withdraw it
    /// assert!(!task.done());
    /// assert!(task.cancel()); // a plain cancel does not ask
    /// assert_eq!(task.result(), Err(TaskError::Cancelled));
    /// ```
    pub fn with_cancel_hooks(
        hook: impl Fn() -> bool + Send + Sync + 'static,
        take_back: impl Fn() -> bool + Send + Sync + 'static,
    ) -> (Completer<T>, Task<T>) {
        Self::make(Some(Box::new(hook)), Some(Box::new(take_back)))
    }

    fn make(hook: Option<CancelHook>, take_back: Option<CancelHook>) -> (Completer<T>, Task<T>) {
        let cell = Arc::new(HookCell {
            core: Core::new(),
            hook,
            take_back,
        });
        let task = Task::from_cell(cell.clone());
        (Completer { cell: Some(cell) }, task)
    }

    fn cell(&self) -> &HookCell<T> {
        self.cell
            .as_deref()
            .expect("a Completer holds its cell until it is consumed")
    }

    /// Marks the task running (Python's `set_running_or_notify_cancel`): from now on a plain
    /// `cancel` cannot stop it. False if it was cancelled first. Calling it twice is harmless.
    pub fn set_running(&self) -> bool {
        let core = &self.cell().core;
        if core.snapshot().is_running() {
            return true;
        }
        match core.try_start() {
            TransitionToRunning::Success => true,
            TransitionToRunning::Cancelled => false,
        }
    }

    /// True once the task was cancelled through its handle (before it was marked running).
    pub fn is_cancelled(&self) -> bool {
        self.cell().core.snapshot().is_cancelled()
    }

    /// Finishes the task with `outcome`. Returns false if the task was cancelled first; the
    /// outcome is then dropped (a panic in its `Drop` is caught and logged).
    pub fn complete(mut self, outcome: Result<T, TaskError>) -> bool {
        let cell = self.cell.take().expect("a Completer is consumed once");
        finish(&cell, outcome)
    }

    /// Finishes the task with a value (`complete(Ok(value))`).
    pub fn set_result(self, value: T) -> bool {
        self.complete(Ok(value))
    }

    /// Finishes the task with an error (`complete(Err(err))`).
    pub fn set_error(self, err: TaskError) -> bool {
        self.complete(Err(err))
    }
}

/// Completes `cell` unless a canceller owns it.
fn finish<T: Send>(cell: &HookCell<T>, outcome: Result<T, TaskError>) -> bool {
    let snap = cell.core.snapshot();
    let owned = snap.is_running() && !snap.is_complete()
        || cell.core.try_start() == TransitionToRunning::Success;
    if owned {
        cell.core.complete(outcome);
        true
    } else {
        if let Err(panic) = unwind::catch(move || drop(outcome)) {
            tracing::error!(%panic, "dropping a cancelled task's outcome panicked");
        }
        false
    }
}

impl<T: Send + 'static> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            finish(&cell, Err(TaskError::Abandoned));
        }
    }
}
