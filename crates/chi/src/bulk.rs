//! Operations over many tasks of any pool (or none): [`as_completed`] and [`wait`]. They
//! depend on the task handle only; each pool's `map` lives with its pool.

use crate::loom::sync::{Condvar, Mutex};
use crate::task::Task;
use std::fmt;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ===== as_completed =====

/// The iterator [`as_completed`] returns: each task once it has finished, in finishing order.
#[must_use = "as_completed is lazy: iterate it to get the tasks as they finish"]
pub struct AsCompleted<T> {
    tasks: Vec<Option<Task<T>>>,
    rx: mpsc::Receiver<usize>,
    left: usize,
    deadline: Option<Instant>,
}

impl<T> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

/// Yields the tasks as they finish (successfully, with an error, or cancelled), whatever
/// order they were given in. Tasks already finished come first.
///
/// ```
/// let pool = chi::ThreadPool::new(2).unwrap();
/// let tasks: Vec<_> = (0..4u32).map(|i| pool.submit(move || i * 10).unwrap()).collect();
/// let mut got: Vec<u32> = chi::as_completed(tasks).map(|t| t.result().unwrap()).collect();
/// got.sort();
/// assert_eq!(got, [0, 10, 20, 30]);
/// ```
pub fn as_completed<T: Send + 'static>(tasks: impl IntoIterator<Item = Task<T>>) -> AsCompleted<T> {
    let tasks: Vec<Option<Task<T>>> = tasks.into_iter().map(Some).collect();
    let (tx, rx) = mpsc::channel();
    for (i, t) in tasks.iter().enumerate() {
        let tx = tx.clone();
        if let Some(t) = t {
            t.on_done(move || {
                let _ = tx.send(i);
            });
        }
    }
    let left = tasks.len();
    AsCompleted {
        tasks,
        rx,
        left,
        deadline: None,
    }
}

/// Like [`as_completed`], but each item is `Err(WaitTimeout)` once `timeout` has passed
/// from this call with tasks still unfinished; [`AsCompleted::remaining`] gives them back.
pub fn as_completed_timeout<T: Send + 'static>(
    tasks: impl IntoIterator<Item = Task<T>>,
    timeout: Duration,
) -> AsCompletedTimeout<T> {
    let mut inner = as_completed(tasks);
    inner.deadline = Instant::now().checked_add(timeout);
    AsCompletedTimeout {
        inner,
        timed_out: false,
    }
}

impl<T> AsCompleted<T> {
    /// The tasks not yielded yet.
    pub fn remaining(self) -> Vec<Task<T>> {
        self.tasks.into_iter().flatten().collect()
    }

    fn next_until(&mut self) -> Option<Result<Task<T>, WaitTimeout>> {
        if self.left == 0 {
            return None;
        }
        loop {
            let i = match self.deadline {
                None => self.rx.recv().ok()?,
                Some(d) => match self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                {
                    Ok(i) => i,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        return Some(Err(WaitTimeout { pending: self.left }));
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                },
            };
            if let Some(t) = self.tasks.get_mut(i).and_then(Option::take) {
                self.left -= 1;
                // The callback runs before the value is released to the owner; make sure the
                // caller can take it at once.
                t.wait();
                return Some(Ok(t));
            }
        }
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = Task<T>;
    fn next(&mut self) -> Option<Task<T>> {
        self.next_until().and_then(Result::ok)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The iterator [`as_completed_timeout`] returns.
#[derive(Debug)]
#[must_use = "as_completed_timeout is lazy: iterate it to get the tasks as they finish"]
pub struct AsCompletedTimeout<T> {
    inner: AsCompleted<T>,
    timed_out: bool,
}

impl<T> AsCompletedTimeout<T> {
    /// The tasks not yielded yet.
    pub fn remaining(self) -> Vec<Task<T>> {
        self.inner.remaining()
    }
}

impl<T> Iterator for AsCompletedTimeout<T> {
    type Item = Result<Task<T>, WaitTimeout>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.timed_out {
            return None;
        }
        let item = self.inner.next_until();
        if matches!(item, Some(Err(_))) {
            self.timed_out = true;
        }
        item
    }
}

/// `as_completed_timeout` ran out of time with tasks unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{pending} task(s) unfinished at the timeout")]
pub struct WaitTimeout {
    /// How many tasks had not finished.
    pub pending: usize,
}

// ===== wait =====

/// When [`wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any task finishes or is cancelled.
    FirstCompleted,
    /// As soon as any task fails (a panic or another error, not a cancellation); if none
    /// fails, when all have finished.
    FirstException,
    /// When every task has finished or been cancelled.
    AllCompleted,
}

#[derive(Default)]
struct WaitState {
    finished: usize,
}

/// Waits for the tasks as `when` says, at most `timeout` (forever when `None`), and returns
/// them split as `(done, not_done)`, each in the order given.
///
/// ```
/// use chi::ReturnWhen;
/// let pool = chi::ThreadPool::new(2).unwrap();
/// let tasks: Vec<_> = (0..3).map(|i| pool.submit(move || i).unwrap()).collect();
/// let (done, not_done) = chi::wait(tasks, ReturnWhen::AllCompleted, None);
/// assert_eq!((done.len(), not_done.len()), (3, 0));
/// ```
pub fn wait<T: Send + 'static>(
    tasks: impl IntoIterator<Item = Task<T>>,
    when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<Task<T>>, Vec<Task<T>>) {
    let tasks: Vec<Task<T>> = tasks.into_iter().collect();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let shared = Arc::new((Mutex::new(WaitState::default()), Condvar::new()));
    for t in &tasks {
        let shared = shared.clone();
        t.on_done(move || {
            let (m, cv) = &*shared;
            m.lock().unwrap_or_else(|e| e.into_inner()).finished += 1;
            cv.notify_all();
        });
    }
    let satisfied = |tasks: &[Task<T>]| -> bool {
        let done = tasks.iter().filter(|t| t.done()).count();
        match when {
            ReturnWhen::AllCompleted => done == tasks.len(),
            ReturnWhen::FirstCompleted => done > 0 || tasks.is_empty(),
            ReturnWhen::FirstException => {
                done == tasks.len()
                    || tasks
                        .iter()
                        .any(|t| t.error().is_some_and(|e| !e.is_cancelled()))
            }
        }
    };
    let (m, cv) = &*shared;
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    while !satisfied(&tasks) {
        match deadline {
            None => g = cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    break;
                }
                g = cv
                    .wait_timeout(g, d - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
    drop(g);
    let (mut done, mut not_done) = (Vec::new(), Vec::new());
    for t in tasks {
        if t.done() {
            t.wait();
            done.push(t);
        } else {
            not_done.push(t);
        }
    }
    (done, not_done)
}
