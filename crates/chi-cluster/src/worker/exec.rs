//! The worker's task registry and local pool: a [`TaskDef`] erased to "decode the argument,
//! run it in the local pool, encode the outcome".

use crate::codec::{self, Outcome, WireError};
use crate::def::TaskDef;
use chi::{ProcessPool, ThreadPool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// Where a worker runs tasks.
pub(crate) enum LocalPool {
    /// Worker processes: crash isolation, timeouts and cancel of a running task.
    Process(ProcessPool),
    /// Threads of the worker itself: cheaper, but a crash takes the worker down and a
    /// running task cannot be stopped.
    Thread(ThreadPool),
}

impl fmt::Debug for LocalPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalPool::Process(p) => write!(f, "Process({})", p.max_workers()),
            LocalPool::Thread(p) => write!(f, "Thread({})", p.max_workers()),
        }
    }
}

impl LocalPool {
    pub(crate) fn shutdown(&self) {
        match self {
            LocalPool::Process(p) => p.shutdown(),
            LocalPool::Thread(p) => p.shutdown(),
        }
    }
}

/// Called once with the task's outcome.
pub(crate) type Done = Box<dyn FnOnce(Outcome) + Send>;

/// The worker's hold on a task it started in its local pool (a `chi::Task` of any type).
pub(crate) trait LocalTask: Send {
    /// Cancels it: one that has not started never will; a running process-pool task is
    /// killed. True if it will not finish normally.
    fn cancel(&self) -> bool;
    /// Cancels it only if it has not started (never stops a running one); true if it will
    /// never run.
    fn cancel_pending(&self) -> bool;
    /// True while it runs.
    fn running(&self) -> bool;
    /// True if it was cancelled before it started.
    fn cancelled(&self) -> bool;
}

impl<T: Send> LocalTask for chi::Task<T> {
    fn cancel(&self) -> bool {
        chi::Task::cancel(self)
    }
    fn cancel_pending(&self) -> bool {
        chi::Task::cancel_pending(self)
    }
    fn running(&self) -> bool {
        chi::Task::running(self)
    }
    fn cancelled(&self) -> bool {
        chi::Task::cancelled(self)
    }
}

/// A started task.
pub(crate) type Local = Box<dyn LocalTask>;

type RunFn =
    dyn Fn(&LocalPool, &[u8], Option<Duration>, Done) -> Result<Local, WireError> + Send + Sync;

/// One task a worker knows.
pub(crate) struct Registered {
    pub(crate) signature: u64,
    /// The definition asks for runs that panicked to be retried.
    pub(crate) retry_on_panic: bool,
    run: Box<RunFn>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Registered({:016x})", self.signature)
    }
}

impl Registered {
    /// Starts the task; `done` gets its outcome. `Err` when it could not start (then `done`
    /// is not called).
    pub(crate) fn start(
        &self,
        pool: &LocalPool,
        payload: &[u8],
        timeout: Option<Duration>,
        done: Done,
    ) -> Result<Local, WireError> {
        (self.run)(pool, payload, timeout, done)
    }
}

/// Erases `def` into a [`Registered`] whose results are limited to `max_payload` bytes.
pub(crate) fn register<A, R>(def: &'static TaskDef<A, R>, max_payload: usize) -> Registered
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let f = def.func();
    let default_timeout = def.timeout();
    let run = move |pool: &LocalPool, payload: &[u8], timeout: Option<Duration>, done: Done| {
        let arg: A = codec::decode(payload)
            .map_err(|e| WireError::Codec(format!("the argument did not decode: {e}")))?;
        fn shut<E>(_: E) -> WireError {
            WireError::Failed("the worker's local pool is shut down".into())
        }
        let task = match (pool, timeout.or(default_timeout)) {
            (LocalPool::Process(p), Some(t)) => p.submit_with_timeout(f, arg, t).map_err(shut)?,
            (LocalPool::Process(p), None) => p.submit(f, arg).map_err(shut)?,
            (LocalPool::Thread(p), _) => p.submit(move || f(arg)).map_err(shut)?,
        };
        task.add_done_callback(move |r| {
            done(match r {
                Ok(v) => encode_result(v, max_payload),
                Err(e) => Err(WireError::from(e)),
            })
        });
        Ok(Box::new(task) as Local)
    };
    Registered {
        signature: def.signature(),
        retry_on_panic: def.retries_on_panic(),
        run: Box::new(run),
    }
}

fn encode_result<R: Serialize>(v: &R, max: usize) -> Outcome {
    let bytes = codec::encode(v)
        .map_err(|e| WireError::Codec(format!("the result did not encode: {e}")))?;
    if bytes.len() > max {
        return Err(WireError::Codec(format!(
            "the result is {} bytes encoded, over the {max}-byte limit",
            bytes.len()
        )));
    }
    Ok(bytes)
}
