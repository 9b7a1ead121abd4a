//! [`Map`]: [`ThreadPool::map`] and [`ThreadPool::map_unordered`], lazy with bounded
//! look-ahead, over the shared window of tasks in flight (`crate::window`).

use super::ThreadPool;
use crate::TaskError;
use crate::task::Task;
use crate::window::{Expired, Window};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The iterator [`ThreadPool::map`] and [`ThreadPool::map_unordered`] return.
///
/// It pulls from the input only as results are consumed, keeping at most `lookahead` tasks
/// in flight, so an endless input works and memory stays bounded (Python's
/// `Executor.map` submits everything at once: cpython issue 74028). `map` yields results in
/// input order, `map_unordered` as they finish.
#[must_use = "a Map is lazy: it submits nothing until it is iterated"]
pub struct Map<'p, I: Iterator, F, T> {
    pool: &'p ThreadPool,
    input: I,
    f: Arc<F>,
    window: Window<T, ()>,
    lookahead: usize,
    deadline: Option<Instant>,
    timeout: Duration,
    input_done: bool,
}

impl<I: Iterator, F, T> fmt::Debug for Map<'_, I, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("in_flight", &self.window.len())
            .field("lookahead", &self.lookahead)
            .finish()
    }
}

impl<'p, I, F, T> Map<'p, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    pub(crate) fn new(pool: &'p ThreadPool, input: I, f: F, unordered: bool) -> Self {
        Map {
            pool,
            input,
            f: Arc::new(f),
            window: Window::new(unordered),
            lookahead: 2 * pool.max_workers(),
            deadline: None,
            timeout: Duration::ZERO,
            input_done: false,
        }
    }

    /// How many tasks may be in flight ahead of the consumer (at least 1). Default: twice the
    /// pool's `max_workers`.
    pub fn lookahead(mut self, n: usize) -> Self {
        self.lookahead = n.max(1);
        self
    }

    /// Gives up once `timeout` has passed from now: the next result not ready by then is
    /// `Err(TaskError::TimedOut)`, and the tasks still in flight are cancelled if not started.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Instant::now().checked_add(timeout);
        self.timeout = timeout;
        self
    }

    fn fill(&mut self) {
        while !self.input_done && self.window.len() < self.lookahead {
            match self.input.next() {
                Some(item) => {
                    let f = self.f.clone();
                    match self.pool.submit(move || f(item)) {
                        Ok(t) => self.window.push(t, ()),
                        Err(_) => {
                            self.window.push(Task::ready(Err(TaskError::Cancelled)), ());
                            self.input_done = true;
                        }
                    }
                }
                None => self.input_done = true,
            }
        }
    }

    fn cancel_in_flight(&mut self) {
        for (t, ()) in self.window.drain() {
            t.cancel();
            // A finished look-ahead value was never handed out: chi drops it, catching a
            // panic from its `Drop` (neither `next` nor the iterator's drop may unwind).
            crate::unwind::drop_caught(t);
        }
    }
}

impl<I, F, T> Iterator for Map<'_, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    type Item = Result<T, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.fill();
        let out = match self.window.next(self.deadline)? {
            Ok((task, ())) => task.result(),
            Err(Expired) => {
                self.cancel_in_flight();
                self.input_done = true;
                Err(TaskError::TimedOut(self.timeout))
            }
        };
        // Refill before handing the value out, so workers stay busy while the caller works.
        self.fill();
        Some(out)
    }
}

impl<I: Iterator, F, T> Drop for Map<'_, I, F, T> {
    /// Cancels the tasks still in flight that have not started (as CPython's `map` does when
    /// its generator is closed); running ones finish and their results are dropped.
    fn drop(&mut self) {
        for (t, ()) in self.window.drain() {
            t.cancel();
            // Never handed out: chi drops it, catching a panic from its value's `Drop`.
            crate::unwind::drop_caught(t);
        }
    }
}

impl ThreadPool {
    /// Applies `f` to every item of `input` on the pool and yields the results in input order.
    /// Lazy, with bounded look-ahead (see [`Map`]). Dropping the iterator early cancels the
    /// tasks it had submitted that have not started.
    ///
    /// ```
    /// let pool = chi::ThreadPool::new(2).unwrap();
    /// let squares: Vec<u64> = pool.map(|x: u64| x * x, 1..=5).map(Result::unwrap).collect();
    /// assert_eq!(squares, [1, 4, 9, 16, 25]);
    ///
    /// // An endless input is fine: only `lookahead` items are pulled ahead of the consumer.
    /// let first: Vec<u64> = pool.map(|x: u64| x + 1, 0..).take(3).map(Result::unwrap).collect();
    /// assert_eq!(first, [1, 2, 3]);
    /// ```
    pub fn map<I, F, T>(&self, f: F, input: I) -> Map<'_, I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        Map::new(self, input.into_iter(), f, false)
    }

    /// Like [`map`](Self::map), but yields each result as soon as it is ready, in finishing
    /// order (Python's `Pool.imap_unordered`), with the same bound on what is in flight. A
    /// slow item does not hold back the results behind it.
    ///
    /// ```
    /// let pool = chi::ThreadPool::new(2).unwrap();
    /// let mut got: Vec<u64> = pool.map_unordered(|x: u64| x * x, 1..=5).map(Result::unwrap).collect();
    /// got.sort();
    /// assert_eq!(got, [1, 4, 9, 16, 25]);
    /// ```
    pub fn map_unordered<I, F, T>(&self, f: F, input: I) -> Map<'_, I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        Map::new(self, input.into_iter(), f, true)
    }
}
