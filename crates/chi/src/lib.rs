//! chi (池, "pool"): bounded, fast, fault-tolerant thread and process pools with a futures API.
//!
//! The classic example (Python's `ThreadPoolExecutor(5)`, ten tasks, a done-callback on each):
//!
//! ```
//! use chi::ThreadPool;
//!
//! fn task(n: u32, m: u32) -> String {
//!     format!("task({n}, {m}) ran on {}", std::thread::current().name().unwrap())
//! }
//!
//! let pool = ThreadPool::new(5).unwrap();
//! let mut tasks = Vec::new();
//! for i in 0..10 {
//!     let t = pool.submit(move || task(i, 3)).unwrap();
//!     t.add_done_callback(|outcome| println!("{}", outcome.as_ref().unwrap()));
//!     tasks.push(t);
//! }
//! for t in tasks {
//!     assert!(t.result().unwrap().starts_with("task("));
//! }
//! pool.shutdown(); // waits for the work; dropping the pool does the same
//! ```
//!
//! # From `concurrent.futures` to chi
//!
//! | Python | chi |
//! |---|---|
//! | `ThreadPoolExecutor(5)` | [`ThreadPool::new(5)`](ThreadPool::new), [`ThreadPool::builder()`](ThreadPool::builder) |
//! | `pool.submit(fn, *args)` | `pool.submit(move \|\| f(a, b))` → [`Task<T>`] |
//! | `future.result(timeout)` | [`Task::result`], [`Task::result_timeout`] |
//! | `done()`, `running()`, `cancelled()`, `exception()` | [`Task::done`], [`Task::running`], [`Task::cancelled`], [`Task::error`] |
//! | `future.cancel()` | [`Task::cancel_pending`] (never stops a running task); [`Task::cancel`] also stops a running process-pool task |
//! | `add_done_callback(cb)` | [`Task::add_done_callback`] (gets `&Result<T, TaskError>`) |
//! | `shutdown(wait=True)`, `shutdown(cancel_futures=True)` | [`ThreadPool::shutdown`], [`ThreadPool::shutdown_now`]; `Drop` = `shutdown` |
//! | `pool.map(fn, iterable)` | [`ThreadPool::map`]: ordered, **lazy**, bounded look-ahead |
//! | `Pool.imap_unordered(fn, iterable)` | [`ThreadPool::map_unordered`]: as they finish |
//! | `Future()`, `set_result`, `set_exception` | [`Completer::new`], [`Completer::set_result`], [`Completer::set_error`] |
//! | `shutdown(wait=False)`; the threadpool crate's `join` | [`ThreadPool::shutdown_background`]; [`ThreadPool::wait_idle`] |
//! | `as_completed(fs, timeout)`, `wait(fs, timeout, return_when)` | [`as_completed`], [`as_completed_timeout`], [`wait`] |
//! | `await asyncio.wrap_future(f)` | `task.await` ([`Task`] is a `Future`) |
//!
//! # Guarantees
//!
//! - Everything a task did happens-before its outcome is observed through its handle
//!   (`result`, `done`, callbacks, `.await`).
//! - Every closure and every result is dropped exactly once, on every path: run, cancelled,
//!   `shutdown_now`, panicked, handle dropped early.
//! - A done-callback runs exactly once: on the thread that completes the task, or at once on
//!   the caller if the task is already done.
//! - Dropping a [`Task`] does not cancel it.
//! - A submission either is refused with the work handed back ([`SubmitError`] and friends),
//!   or its task eventually finishes or is cancelled: a shut-down or failed pool never leaves
//!   a handle waiting forever.
//!
//! # Blocking and async
//!
//! [`Task::result`] parks the calling thread (after a short spin). On a worker of the same
//! pool it runs other queued work instead, so tasks may wait for tasks they submitted. In async
//! code, `task.await` registers a `Waker` and never blocks the executor.
//!
//! # Panics
//!
//! A panic in a task is caught and becomes [`TaskError::Panicked`] with its message and its
//! payload ([`TaskError::into_panic`] hands the payload back for `std::panic::resume_unwind`;
//! a panicking scoped task makes `scope` re-raise it, as `std::thread::scope` does); the
//! worker lives on. A panic in a done-callback is caught and logged (with `tracing`); other
//! callbacks still run. A panicking worker initializer fails the pool: its tasks end with
//! [`TaskError::PoolFailed`].
//!
//! # Shutdown
//!
//! [`ThreadPool::shutdown`] stops accepting work, runs everything queued, and joins every
//! worker; [`ThreadPool::shutdown_now`] cancels what has not started. Dropping the pool is
//! `shutdown`: no worker thread outlives it.
//!
//! # Features and platforms
//!
//! | feature | default | what it adds | where it builds |
//! |---|---|---|---|
//! | (none) | | [`Task`], [`Completer`], [`ThreadPool`], `scope`, `map`, [`as_completed`], [`wait`] | wherever std does (std + crossbeam only) |
//! | `process-pool` | yes | [`process_pool`]: `ProcessPool`, worker entry, serde-encoded tasks (pulls in serde, postcard, libc) | Linux only; elsewhere a clear `compile_error!` |
//!
//! A library that wants to stay portable depends on
//! `chi = { version = "0.1", default-features = false }`.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(feature = "process-pool", not(target_os = "linux")))]
compile_error!(
    "chi's `process-pool` feature works on Linux only; on other systems depend on chi with \
     `default-features = false` (the thread pool, tasks, scope, map, as_completed and wait \
     build wherever std does)"
);

mod admit;
mod bulk;
mod error;
mod help;
pub mod limits;
mod loom;
#[cfg(all(feature = "process-pool", target_os = "linux"))]
pub mod process_pool;
mod task;
pub mod thread_pool;
mod unwind;
mod window;

pub use bulk::{
    AsCompleted, AsCompletedTimeout, ReturnWhen, WaitTimeout, as_completed, as_completed_timeout,
    wait,
};
pub use error::{
    BuildError, BuildErrorKind, Cause, ExitReason, PanicPayload, ResultTimeoutError, SubmitError,
    SubmitTimeoutError, TaskError, TrySubmitError,
};
#[cfg(all(feature = "process-pool", target_os = "linux"))]
pub use process_pool::{ProcessPool, ProcessPoolBuilder};
pub use task::{Completer, Task};
pub use thread_pool::{ThreadPool, ThreadPoolBuilder};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[cfg_attr(feature = "process-pool", doc = include_str!("../README.md"))]
mod readme_doctest {}
