//! `ThreadPool` and its `Task` handles through the public API: building, worker threads,
//! the bounded queue, task states, cancellation, callbacks, panics, drops, shutdown, metrics,
//! idleness and scopes. One module per area; tests read as `<subject>_<condition>`.
//!
//! No test sleeps to synchronise or asserts on a duration: tasks are held by a [`Gate`], waits
//! have a bound that must never fire, and states that appear eventually (a worker exiting
//! after its keep-alive, a thread going to sleep) are polled with a generous deadline.
// Integration tests are not loom models; they use std's synchronisation types directly.
#![allow(clippy::disallowed_types)]

#[path = "../common/mod.rs"]
mod common;

use chi::{ResultTimeoutError, SubmitTimeoutError, Task, TaskError, ThreadPool, TrySubmitError};
use common::{DropCounter, Gate, bounded, poll_until, recv, run_alone};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

/// A timeout that is what a test checks (the task is held, so it must expire).
const SHORT: Duration = Duration::from_millis(20);

fn thread_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

// One file per area; each file's first line says which.
mod bound;
mod build;
mod callback;
mod drops;
mod idle;
mod initializer;
mod metrics;
mod nested;
mod panics;
mod scope;
mod shutdown;
mod task;
mod task_error;
mod wait_idle;
mod workers;
