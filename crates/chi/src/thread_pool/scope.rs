//! Scoped tasks: closures that borrow from the caller's stack, all finished before
//! [`ThreadPool::scope`] returns.
//!
//! The pool's queues hold `'static` jobs, so a scoped closure's lifetime is erased when it is
//! queued. That is sound only because `scope` does not return (nor unwind past its frame)
//! until every job it queued has been run or dropped: each job carries a guard that counts
//! down *after* the closure and its borrows are gone, and `scope` waits for the count to
//! reach zero from a drop guard, so even a panic in the scope body waits.

use super::ThreadPool;
use super::shared::help_while;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex};
use crate::task::Task;
use crate::{SubmitError, TaskError};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Counts the scope's unfinished jobs and remembers the first panic.
#[derive(Default)]
struct ScopeState {
    pending: AtomicUsize,
    lock: Mutex<Option<TaskError>>,
    cv: Condvar,
}

impl ScopeState {
    fn finish_one(&self) {
        // ORDERING: AcqRel: the job's effects (and the end of its borrows) happen-before the
        // waiter's Acquire load that sees zero.
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }

    fn is_done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    fn wait_all(&self) {
        help_while(|| self.is_done());
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_done() {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A scoped job: drops the closure first, then counts down.
struct ScopedJob<F> {
    f: Option<F>,
    state: Arc<ScopeState>,
}

impl<F> Drop for ScopedJob<F> {
    fn drop(&mut self) {
        // Caught: a closure that panics in `Drop` must still count down, or `scope` would
        // wait forever.
        if let Some(f) = self.f.take() {
            crate::unwind::drop_caught(f);
        }
        self.state.finish_one();
    }
}

/// The handle passed to the closure of [`ThreadPool::scope`]; spawns tasks that may borrow
/// anything that outlives the scope.
pub struct Scope<'scope, 'env: 'scope> {
    pool: &'scope ThreadPool,
    state: Arc<ScopeState>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.state.pending.load(Ordering::Relaxed))
            .finish()
    }
}

/// The handle of a scoped task; see [`Scope::spawn`].
#[derive(Debug)]
pub struct ScopedTask<'scope, T> {
    task: Task<T>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedTask<'_, T> {
    /// Blocks until the task finishes and returns its outcome.
    pub fn result(self) -> Result<T, TaskError> {
        self.task.result()
    }
    /// True once the task has finished.
    pub fn done(&self) -> bool {
        self.task.done()
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Runs `f` on the pool. `f` may borrow from outside the scope; the scope waits for it.
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedTask<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'static,
    {
        self.state.pending.fetch_add(1, Ordering::Relaxed);
        let job = ScopedJob {
            f: Some(f),
            state: self.state.clone(),
        };
        let state = self.state.clone();
        let boxed: Box<dyn FnOnce() -> T + Send + 'scope> = Box::new(move || {
            let mut job = job;
            let f = job.f.take().expect("a scoped job runs once");
            match crate::unwind::catch_payload(f) {
                Ok(v) => v,
                Err(payload) => {
                    // The task's error and the scope share one payload: whoever raises it
                    // first (the scope, or a caller of `into_panic`) gets the original.
                    let err = TaskError::from_panic(payload);
                    let mut first = state.lock.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert_with(|| err.clone());
                    drop(first);
                    std::panic::resume_unwind(err.into_shared_payload());
                }
            }
        });
        // Why erasing 'scope is sound: `pending` reaches zero for this job only after the
        // closure and its borrows were dropped (the `ScopedJob` guard), whether it ran, was
        // cancelled, or was never queued.
        // SAFETY: only the lifetime changes ('scope → 'static); `ThreadPool::scope` neither
        // returns nor unwinds past its frame before `pending` is zero (see above).
        let boxed: Box<dyn FnOnce() -> T + Send + 'static> = unsafe { std::mem::transmute(boxed) };
        let task = match self.pool.submit(boxed) {
            Ok(t) => t,
            Err(SubmitError(job)) => {
                drop(job);
                Task::ready(Err(TaskError::Cancelled))
            }
        };
        ScopedTask {
            task,
            _scope: PhantomData,
        }
    }
}

/// Waits for the scope's jobs when dropped, so a panicking scope body still waits.
struct WaitOnDrop(Arc<ScopeState>);

impl Drop for WaitOnDrop {
    fn drop(&mut self) {
        self.0.wait_all();
    }
}

impl ThreadPool {
    /// Runs `f` with a [`Scope`] whose tasks may borrow from the caller's stack, and returns
    /// once all of them have finished. If any scoped task panicked, `scope` panics (after
    /// every task has finished) with the first panic's original payload, as
    /// `std::thread::scope` does.
    ///
    /// ```
    /// let pool = chi::ThreadPool::new(2).unwrap();
    /// let mut totals = [0u64; 2];
    /// let data = vec![1u64, 2, 3, 4];
    /// pool.scope(|s| {
    ///     let (a, b) = totals.split_at_mut(1);
    ///     let (left, right) = data.split_at(2);
    ///     s.spawn(move || a[0] = left.iter().sum());
    ///     s.spawn(move || b[0] = right.iter().sum());
    /// });
    /// assert_eq!(totals, [3, 7]);
    /// ```
    ///
    /// A borrow cannot escape the scope:
    ///
    /// ```compile_fail
    /// let pool = chi::ThreadPool::new(1).unwrap();
    /// let mut escaped = None;
    /// pool.scope(|s| {
    ///     let local = String::from("dies with the scope body");
    ///     escaped = Some(s.spawn(|| local.len()));
    /// });
    /// ```
    ///
    /// And, as with `submit`, a closure that is not `Send` is rejected:
    ///
    /// ```compile_fail
    /// let pool = chi::ThreadPool::new(1).unwrap();
    /// let rc = std::rc::Rc::new(5);
    /// pool.scope(|s| { s.spawn(move || *rc + 1); });
    /// ```
    pub fn scope<'env, F, R>(&self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        let state = Arc::new(ScopeState::default());
        let scope = Scope {
            pool: self,
            state: state.clone(),
            _scope: PhantomData,
            _env: PhantomData,
        };
        let out = {
            let _wait = WaitOnDrop(state.clone());
            f(&scope)
        };
        let first_panic = state.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(err) = first_panic {
            // As `std::thread::scope`: the original payload, so `catch_unwind` around the
            // scope sees what the task panicked with.
            match err.into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(other) => panic!("a scoped task failed: {other}"),
            }
        }
        out
    }
}
