//! [`ClusterMap`]: `Cluster::map`'s ordered, lazy iterator with a bounded look-ahead.

use crate::def::TaskDef;
use crate::shared::{Admit, Inner};
use chi::{Cause, Task, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// The iterator [`Cluster::map`](crate::Cluster::map) returns: one result per input, in input order.
///
/// It keeps at most `lookahead` tasks submitted and unread; refills go out as one pipeline of
/// `XADD`s (one by one when the queue is bounded, so that the bound is respected).
pub struct ClusterMap<'c, A, R, I> {
    inner: &'c Arc<Inner>,
    name: &'static str,
    func: fn(A) -> R,
    timeout: Option<std::time::Duration>,
    retry_on_panic: bool,
    args: I,
    window: VecDeque<Result<Task<R>, TaskError>>,
    lookahead: usize,
}

impl<A, R, I> fmt::Debug for ClusterMap<'_, A, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterMap")
            .field("task", &self.name)
            .field("in_flight", &self.window.len())
            .field("lookahead", &self.lookahead)
            .finish()
    }
}

impl<'c, A, R, I> ClusterMap<'c, A, R, I>
where
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
    I: Iterator<Item = A>,
{
    pub(crate) fn new(
        inner: &'c Arc<Inner>,
        def: &TaskDef<A, R>,
        args: I,
        lookahead: usize,
    ) -> Self {
        ClusterMap {
            inner,
            name: def.name(),
            func: def.func(),
            timeout: def.timeout(),
            retry_on_panic: def.retries_on_panic(),
            args,
            window: VecDeque::with_capacity(lookahead),
            lookahead,
        }
    }

    fn def(&self) -> TaskDef<A, R> {
        let d = TaskDef::new(self.name, self.func);
        let d = match self.timeout {
            Some(t) => d.with_timeout(t),
            None => d,
        };
        if self.retry_on_panic {
            d.retry_on_panic()
        } else {
            d
        }
    }

    /// Submits up to the look-ahead.
    fn refill(&mut self) {
        let room = self.lookahead - self.window.len();
        if room == 0 {
            return;
        }
        let def = self.def();
        let inner = self.inner;
        if inner.queue_bounded() {
            for arg in self.args.by_ref().take(room) {
                let r = inner.submit(&def, arg, Admit::Until(None));
                self.window
                    .push_back(r.map_err(|e| TaskError::PoolFailed(Cause::new(e.to_string()))));
            }
            return;
        }
        let mut batch = Vec::with_capacity(room);
        let mut slots = Vec::with_capacity(room);
        for arg in self.args.by_ref().take(room) {
            match inner.check_arg(&arg) {
                Ok(payload) => {
                    let (seq, task) = inner.register(&def);
                    batch.push(inner.fields(&def, seq, payload));
                    slots.push(Some(seq));
                    self.window.push_back(Ok(task));
                }
                Err(e) => {
                    slots.push(None);
                    self.window
                        .push_back(Err(TaskError::PoolFailed(Cause::new(e.to_string()))));
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let base = self.window.len() - slots.len();
        match inner.add_batch(&batch) {
            Ok((ids, server)) => {
                let mut ids = ids.into_iter();
                for seq in slots.into_iter().flatten() {
                    if let Some(id) = ids.next() {
                        inner.added(seq, id, &server);
                    }
                }
            }
            Err(reason) => {
                for (i, seq) in slots.into_iter().enumerate() {
                    if let Some(seq) = seq {
                        inner.unregister(seq);
                        let cause = Cause::new(format!("Redis unavailable: {reason}"));
                        self.window[base + i] = Err(TaskError::PoolFailed(cause));
                    }
                }
            }
        }
    }
}

impl<A, R, I> Iterator for ClusterMap<'_, A, R, I>
where
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
    I: Iterator<Item = A>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Refill at half the window, so a batch is in flight while the front is read.
        if self.window.len() <= self.lookahead / 2 {
            self.refill();
        }
        let front = self.window.pop_front()?;
        Some(front.and_then(Task::result))
    }
}
