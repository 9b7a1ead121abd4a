//! [`ProcessMap`]: `ProcessPool::map`, ordered and lazy, one message per chunk.

use super::ProcessPool;
use super::cell::{self, ChunkOut, Job, JobCell, ProcCell};
use super::protocol::{self, ARG, ARG_FAILED, FnRef, Items};
use super::registry;
use crate::TaskError;
use crate::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// A chunk in flight: its task, its cell (to cancel it on drop without killing anything) and
/// its size.
struct Chunk {
    task: Task<ChunkOut>,
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
                    Some(Err(e)) => Err(TaskError::Codec(e.to_string())),
                    None => Err(TaskError::Codec(
                        "the worker sent fewer results than items".into(),
                    )),
                };
                *pos = bytes.len() - items.remaining();
                Some(out)
            }
        }
    }
}

/// The iterator [`ProcessPool::map`] returns: `Ok(result)` or the item's error, in input
/// order.
///
/// It pulls `chunksize` items from the input at a time and keeps at most
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
///     let total: u32 = pool.map(double, 0..1000, 100).lookahead(4).map(Result::unwrap).sum();
///     assert_eq!(total, 999_000);
/// }
/// ```
pub struct ProcessMap<'p, I, A, R> {
    pool: &'p ProcessPool,
    input: I,
    func: Result<FnRef, String>,
    chunksize: usize,
    lookahead: usize,
    in_flight: VecDeque<Chunk>,
    current: Option<Cursor>,
    input_done: bool,
    _types: PhantomData<fn(A) -> R>,
}

impl<I, A, R> fmt::Debug for ProcessMap<'_, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessMap")
            .field("chunksize", &self.chunksize)
            .field("lookahead", &self.lookahead)
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl<'p, I, A, R> ProcessMap<'p, I, A, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(pool: &'p ProcessPool, f: fn(A) -> R, input: I, chunksize: usize) -> Self {
        ProcessMap {
            pool,
            input,
            func: registry::fn_ref(f),
            chunksize: chunksize.clamp(1, u32::MAX as usize),
            lookahead: 2 * pool.workers() + 1,
            in_flight: VecDeque::new(),
            current: None,
            input_done: false,
            _types: PhantomData,
        }
    }

    /// How many chunks may be in flight ahead of the consumer (at least 1). Default: twice
    /// the number of workers, plus one.
    pub fn lookahead(mut self, chunks: usize) -> Self {
        self.lookahead = chunks.max(1);
        self
    }

    /// Encodes and queues the next chunk; false when the input is exhausted.
    fn submit_chunk(&mut self) -> bool {
        let mut items = Vec::new();
        let mut count = 0u32;
        while (count as usize) < self.chunksize {
            let Some(a) = self.input.next() else {
                self.input_done = true;
                break;
            };
            protocol::push_encoded_item(&mut items, ARG, ARG_FAILED, &a);
            count += 1;
        }
        if count == 0 {
            return false;
        }
        let failed = |err| Chunk {
            task: Task::ready(Err(err)),
            cell: Arc::new(ProcCell::new(cell::keep_chunk)),
            count,
        };
        let func = match &self.func {
            Ok(f) => *f,
            Err(msg) => {
                self.in_flight
                    .push_back(failed(TaskError::PoolFailed(msg.clone())));
                return true;
            }
        };
        let max = self.pool.max_message();
        if items.len() + 64 > max {
            let msg = format!(
                "a chunk of {count} arguments is {} bytes, over the pool's maximum message size of {max} bytes; use a smaller chunksize",
                items.len()
            );
            self.in_flight.push_back(failed(TaskError::Codec(msg)));
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
            self.in_flight.push_back(Chunk { task, cell, count });
        } else {
            self.in_flight.push_back(failed(TaskError::PoolFailed(
                "the pool was shut down".into(),
            )));
            self.input_done = true;
        }
        true
    }

    fn fill(&mut self) {
        while !self.input_done && self.in_flight.len() < self.lookahead {
            if !self.submit_chunk() {
                break;
            }
        }
    }
}

impl<I, A, R> Iterator for ProcessMap<'_, I, A, R>
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
            let chunk = self.in_flight.pop_front()?;
            // Keep the workers busy while this thread waits for (and then decodes) the chunk.
            self.fill();
            let count = chunk.count;
            self.current = Some(match chunk.task.result() {
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

impl<I, A, R> Drop for ProcessMap<'_, I, A, R> {
    fn drop(&mut self) {
        for c in self.in_flight.drain(..) {
            c.cell.cancel_unstarted();
        }
    }
}
