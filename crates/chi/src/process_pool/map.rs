//! [`Map`]: `ProcessPool::map`, ordered and lazy, one message per chunk.

use super::ProcessPool;
use super::cell::{self, ChunkOut, Job, JobCell, ProcCell};
use super::func;
use super::protocol::{self, ARG, ARG_FAILED, FnRef, Items};
use crate::task::Task;
use crate::window::{Expired, Window};
use crate::{Cause, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the window keeps beside each chunk's task: its cell (to cancel it on drop without
/// killing anything) and its size.
struct Chunk {
    cell: Arc<ProcCell<ChunkOut>>,
    count: u32,
}

/// The results of one chunk, handed out item by item.
enum Cursor {
    Items {
        bytes: Vec<u8>,
        pos: usize,
        left: u32,
    },
    Failed {
        err: TaskError,
        left: u32,
    },
}

impl Cursor {
    fn next<R: DeserializeOwned>(&mut self) -> Option<Result<R, TaskError>> {
        match self {
            Cursor::Failed { err, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                Some(Err(err.clone()))
            }
            Cursor::Items { bytes, pos, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                let mut items = Items::new(&bytes[*pos..]);
                let out = match items.next() {
                    Some(Ok((tag, b))) => cell::decode_item::<R>(tag, b),
                    Some(Err(e)) => Err(TaskError::Codec(Cause::with_source(
                        "a malformed answer from the worker",
                        e,
                    ))),
                    None => Err(TaskError::codec("the worker sent fewer results than items")),
                };
                *pos = bytes.len() - items.remaining();
                Some(out)
            }
        }
    }
}

/// The iterator [`ProcessPool::map`] and [`ProcessPool::map_unordered`] return: `Ok(result)`
/// or the item's error, in input order (`map`) or as chunks finish (`map_unordered`).
///
/// It pulls [`chunksize`](Self::chunksize) items from the input at a time and keeps at most
/// [`lookahead`](Self::lookahead) chunks in flight, so an endless input works and memory
/// stays bounded. A panic, or an argument or result that does not encode or decode, fails
/// only its own item; a worker that dies fails the items of the chunk it was running.
/// Dropping the iterator cancels the chunks that have not started (it never kills a worker).
///
/// ```no_run
/// fn double(x: u32) -> u32 {
///     2 * x
/// }
///
/// fn main() {
///     chi::process_pool::init();
///     let pool = chi::ProcessPool::new(2).unwrap();
///     let total: u32 = pool.map(double, 0..1000).chunksize(100).lookahead(4).map(Result::unwrap).sum();
///     assert_eq!(total, 999_000);
/// }
/// ```
#[must_use = "a Map is lazy: it submits nothing until it is iterated"]
pub struct Map<'p, I, A, R> {
    pool: &'p ProcessPool,
    input: I,
    func: Result<FnRef, String>,
    chunksize: usize,
    lookahead: usize,
    window: Window<ChunkOut, Chunk>,
    current: Option<Cursor>,
    input_done: bool,
    deadline: Option<Instant>,
    timeout: Duration,
    _types: PhantomData<fn(A) -> R>,
}

impl<I, A, R> fmt::Debug for Map<'_, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("chunksize", &self.chunksize)
            .field("lookahead", &self.lookahead)
            .field("in_flight", &self.window.len())
            .finish()
    }
}

impl<'p, I, A, R> Map<'p, I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(pool: &'p ProcessPool, f: fn(A) -> R, input: I, unordered: bool) -> Self {
        Map {
            pool,
            input,
            func: func::fn_ref(f),
            chunksize: 1,
            lookahead: 2 * pool.max_workers() + 1,
            window: Window::new(unordered),
            current: None,
            input_done: false,
            deadline: None,
            timeout: Duration::ZERO,
            _types: PhantomData,
        }
    }

    /// How many items go to a worker in one message (Python's `chunksize`; 0 counts as 1).
    /// Default 1. Larger chunks amortise the round trip for small tasks; a failure (a panic,
    /// an item that does not encode) stays confined to its own item. When the input's length
    /// is known (an exact `size_hint`, as for ranges and vectors), the last chunks are
    /// smaller, so that the workers finish together.
    pub fn chunksize(mut self, items: usize) -> Self {
        self.chunksize = items.clamp(1, u32::MAX as usize);
        self
    }

    /// Gives up once `timeout` has passed from now: the next result not ready by then is
    /// `Err(TaskError::TimedOut)` and the iterator ends; the chunks still in flight that have
    /// not started are cancelled (one already running finishes in its worker; nothing is
    /// killed).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Instant::now().checked_add(timeout);
        self.timeout = timeout;
        self
    }

    /// How many chunks may be in flight ahead of the consumer (at least 1). Default: twice
    /// the number of workers, plus one.
    pub fn lookahead(mut self, chunks: usize) -> Self {
        self.lookahead = chunks.max(1);
        self
    }

    /// How many items the next chunk takes: `chunksize`, except near the end of an input
    /// whose length is known (an exact `size_hint`), where chunks shrink to a share of what
    /// is left (never under `chunksize / 8`, rounded down, nor under 1), so that the workers finish together
    /// instead of one running a whole last chunk alone (OpenMP's "guided" schedule).
    fn next_chunk_len(&self) -> usize {
        match self.input.size_hint() {
            (lo, Some(hi)) if lo == hi => {
                let share = lo.div_ceil(2 * self.pool.max_workers().max(1));
                self.chunksize.min(share.max(self.chunksize / 8).max(1))
            }
            _ => self.chunksize,
        }
    }

    /// Encodes and queues the next chunk; false when the input is exhausted.
    fn submit_chunk(&mut self) -> bool {
        let mut items = Vec::new();
        let mut count = 0u32;
        let len = self.next_chunk_len();
        while (count as usize) < len {
            let Some(a) = self.input.next() else {
                self.input_done = true;
                break;
            };
            protocol::push_encoded_item(&mut items, ARG, ARG_FAILED, &a);
            // Sent as bytes; a panicking `Drop` must not lose the items encoded so far.
            crate::unwind::drop_caught(a);
            count += 1;
        }
        if count == 0 {
            return false;
        }
        let failed = |window: &mut Window<ChunkOut, Chunk>, err| {
            let cell = Arc::new(ProcCell::new(cell::keep_chunk));
            window.push(Task::ready(Err(err)), Chunk { cell, count });
        };
        let func = match &self.func {
            Ok(f) => *f,
            Err(msg) => {
                failed(&mut self.window, TaskError::pool_failed(msg.clone()));
                return true;
            }
        };
        let max = self.pool.max_message();
        if items.len() + 64 > max {
            let msg = format!(
                "a chunk of {count} arguments is {} bytes, over the pool's maximum message size of {max} bytes; use a smaller chunksize",
                items.len()
            );
            failed(&mut self.window, TaskError::codec(msg));
            return true;
        }
        let cell = Arc::new(ProcCell::new(cell::keep_chunk));
        let job = Job {
            cell: cell.clone(),
            func,
            count,
            items,
            timeout: None,
        };
        if self.pool.enqueue_chunk(job) {
            let task = Task::from_cell(cell.clone());
            self.window.push(task, Chunk { cell, count });
        } else {
            failed(
                &mut self.window,
                TaskError::pool_failed("the pool was shut down"),
            );
            self.input_done = true;
        }
        true
    }

    fn fill(&mut self) {
        while !self.input_done && self.window.len() < self.lookahead {
            if !self.submit_chunk() {
                break;
            }
        }
    }
}

impl<I, A, R> Iterator for Map<'_, I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = &mut self.current {
                if let Some(item) = c.next::<R>() {
                    return Some(item);
                }
                self.current = None;
            }
            self.fill();
            let next = self.window.next(self.deadline)?;
            // Keep the workers busy while this thread decodes the chunk.
            self.fill();
            let (task, Chunk { count, .. }) = match next {
                Ok(entry) => entry,
                Err(Expired) => {
                    // As the thread pool's map: one `TimedOut`, then the iterator ends.
                    self.input_done = true;
                    self.cancel_in_flight();
                    return Some(Err(TaskError::TimedOut(self.timeout)));
                }
            };
            self.current = Some(match task.result() {
                Ok(ChunkOut(bytes)) => Cursor::Items {
                    bytes,
                    pos: 0,
                    left: count,
                },
                Err(err) => Cursor::Failed { err, left: count },
            });
        }
    }
}

impl<I, A, R> Map<'_, I, A, R> {
    /// Cancels the chunks in flight that have not started.
    fn cancel_in_flight(&mut self) {
        for (_, c) in self.window.drain() {
            c.cell.cancel_unstarted();
        }
    }
}

impl<I, A, R> Drop for Map<'_, I, A, R> {
    fn drop(&mut self) {
        self.cancel_in_flight();
    }
}
