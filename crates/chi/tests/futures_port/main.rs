//! CPython's `concurrent.futures` conformance cases that apply to a thread executor, rewritten
//! in Rust against `chi::ThreadPool` and `chi::Task`.
//!
//! # Provenance
//!
//! Source: the CPython repository (<https://github.com/python/cpython>), directory
//! `Lib/test/test_concurrent_futures/`, as of the 3.14 development line:
//!
//! | CPython file          | classes ported                                      | module here          |
//! |-----------------------|-----------------------------------------------------|----------------------|
//! | `util.py`             | `create_future` and the `*_FUTURE` fixtures          | `util`               |
//! | `test_future.py`      | `FutureTests`                                       | `future_tests`       |
//! | `test_wait.py`        | `WaitTests`, `ThreadPoolWaitTests`                  | `wait_tests`         |
//! | `test_as_completed.py`| `AsCompletedTests`                                  | `as_completed_tests` |
//! | `executor.py`         | `ExecutorTest`                                      | `executor_tests`     |
//! | `test_thread_pool.py` | `ThreadPoolExecutorTest`                            | `executor_tests`     |
//! | `test_shutdown.py`    | `ExecutorShutdownTest`, `ThreadPoolShutdownTest`     | `shutdown_tests`     |
//! | `test_init.py`        | `InitializerMixin`, `FailingInitializerMixin`        | `initializer_tests`  |
//!
//! The original tests are Copyright © Python Software Foundation and distributed under the
//! Python Software Foundation License Version 2 (PSF-2.0). This file is a rewrite, not a
//! copy: each case keeps its source's name (without the `test_` prefix) and its structure
//! (same inputs, same expected split of done / not done, same order of steps), in Rust.
//!
//! # What changed, and why
//!
//! - **Fixtures** (`util.py`): CPython builds futures in any state with `create_future`; chi
//!   has no public way to set a task's state, so `util::Futures` makes each state for real: a
//!   task held by a gate (RUNNING), one queued behind it (PENDING), one cancelled from the
//!   queue (CANCELLED), one that panicked (EXCEPTION), one that returned 42 (SUCCESSFUL).
//! - **`CANCELLED` vs `CANCELLED_AND_NOTIFIED`**: chi completes a cancellation at once (the
//!   task is done and its callbacks ran when `cancel` returns), so both fixtures are the same
//!   state. Where CPython expects a not-yet-notified cancelled future in `not_done`
//!   (`wait_tests::first_completed`, `first_exception_some_already_complete`) the port
//!   expects it in `done`, or leaves it out, and says so at the case.
//! - **Exceptions** are panics: `raise Exception('doh!')` is `panic!("doh!")`, and
//!   `divmod(x, 0)` is an integer division by zero. `exception()` is `Task::error()`, which
//!   never blocks, so the `exception(timeout=...)` cases wait with `wait_timeout` first.
//! - **Identity**: Python compares sets of futures. `chi::wait` returns tasks in the order
//!   given and tasks are not comparable, so the port compares their outcomes in input order.
//! - **Timing**: every `time.sleep` used to make a task slow is a gate instead; the only short
//!   timeouts are the ones a case tests, on tasks that are held and so cannot finish in time.
//! - **`map`** is lazy in chi: it submits nothing until the first result is asked for, and
//!   keeps at most `lookahead` (CPython's `buffersize`) tasks in flight. So
//!   `map_submits_without_iteration` is ported with the opposite expectation,
//!   `map_buffersize_when_buffer_is_full` counts one consumed result, and `map_close` (drop in
//!   Rust) does not cancel the tasks already in flight, as dropping a `Task` never cancels.
//! - **Logging**: chi reports a panicking callback or a failed initializer through `tracing`;
//!   the dev-dependencies have no subscriber to capture it, so the assertions on logged text
//!   (`done_callback_raises*`, `FailingInitializerMixin._assert_logged`) check the behaviour
//!   only (the other callbacks run, the caller does not panic, the pool fails).
//! - **Broken executor**: after an initializer fails, CPython's `submit` raises
//!   `BrokenExecutor`; chi's `submit` returns a task that is already finished with
//!   `TaskError::PoolFailed`, which the port checks.
//! - **Idle thread reuse**: CPython's case is flaky without the GIL because the worker marks
//!   itself idle after the result is delivered. chi has the same window (a worker that stops
//!   searching is briefly counted neither searching nor sleeping), so the port waits until
//!   the worker thread is asleep in the kernel before each submit (polling `/proc`, not
//!   sleeping), and names the pool's threads so other tests' workers are not counted.
//!
//! # What was left out, and why
//!
//! - `test_future.py`: `test_class_str` (Python class names), `test_multiple_set_result`,
//!   `test_multiple_set_exception` (only a pool completes a chi task; there is no
//!   `set_result`), `test_get_snapshot` (a private helper).
//! - `test_wait.py` `test_20369` and `test_as_completed.py` `test_duplicate_futures`: passing
//!   the same future twice. A `Task` is a unique owning handle (not `Clone`), so a duplicate
//!   cannot be written in Rust.
//! - `executor.py`: `test_submit_keyword` (keyword arguments: a closure captures its inputs),
//!   `test_map_buffersize_type_validation` (typed parameter), `test_map_buffersize_without_iterable`
//!   (`map` takes exactly one iterable; several are zipped, see `map_buffersize_on_multiple_iterables`),
//!   and the `chunksize=` variants (a process-pool setting).
//! - `test_thread_pool.py`: `test_hang_global_shutdown_lock`, `test_process_fork_from_a_threadpool`
//!   (fork-specific).
//! - `test_shutdown.py`: `test_interpreter_shutdown`, `test_submit_after_interpreter_shutdown`,
//!   `test_hang_gh83386`, `test_shutdown_no_wait`, `test_cancel_futures_wait_false` (interpreter
//!   exit hooks and `shutdown(wait=False)`, which chi does not have: `shutdown` and drop always
//!   join), and everything of `ProcessPoolShutdownTest`.
//! - `test_deadlock.py`, `test_process_pool.py`, `test_interpreter_pool.py`, `test_pool.py`:
//!   process and interpreter executors (the process pool has its own tests).
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

#[path = "../common/mod.rs"]
mod common;

use chi::{ResultTimeoutError, ReturnWhen, Task, TaskError, ThreadPool};
use common::{DropCounter, Gate, bounded, poll_until, recv};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

// One file per area; each file's first line says which.
mod as_completed_tests;
mod executor_tests;
mod future_tests;
mod initializer_tests;
mod shutdown_tests;
mod util;
mod wait_tests;

use util::{Futures, describe, divmod, executor, mul, outcomes, sorted};
