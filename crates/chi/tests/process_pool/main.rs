//! The process pool's public behaviour, above all the fault matrix of issue 4: every way a
//! task or a worker can fail gives that task one exact error, and the same pool then runs the
//! next task correctly. Waits are bounded (`result_timeout(NEVER)`, `poll_until`); no test
//! sleeps to synchronise or asserts on a duration. Tasks that must hold still wait for a file
//! the test creates; tasks report that they started by writing a file the test waits for.
//!
//! Process-wide checks (descriptor counts, zombies) run alone in a fresh copy of this binary.
//!
//! One file per area: `basics` (submit, callbacks, output, shutdown, bounded queue), `map`,
//! `cancel`, `fault` (the fault matrix, cases 1-11), `lifecycle` (shutdown, drop and parent
//! death: cases 12-13); `tasks` holds the functions the workers run, this file the helpers.

chi::process_pool_test_entry!();

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/proc.rs"]
mod proc;

mod basics;
mod cancel;
mod fault;
mod lifecycle;
mod map;
mod tasks;

use chi::{ExitReason, ProcessPool, Task, TaskError};
use proc::{NEVER, poll_until, temp_path, wait_for_file};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::Path;
use std::time::Duration;
use tasks::*;

// ===== helpers =====

#[track_caller]
pub(crate) fn get<T: std::fmt::Debug>(t: Task<T>) -> Result<T, TaskError> {
    match t.result_timeout(NEVER) {
        Ok(v) => Ok(v),
        Err(chi::ResultTimeoutError::Failed(e)) => Err(e),
        Err(chi::ResultTimeoutError::Timeout(_)) => panic!("hang: no result within {NEVER:?}"),
    }
}

/// The pool still works: a fresh task gives the right answer.
#[track_caller]
pub(crate) fn assert_serves(pool: &ProcessPool) {
    assert_eq!(
        get(pool.submit(square, 12).unwrap()),
        Ok(144),
        "the pool serves the next task"
    );
}

pub(crate) fn worker_pid(pool: &ProcessPool) -> u32 {
    get(pool.submit(pid, ()).unwrap()).expect("a pid")
}

pub(crate) fn pool(workers: usize) -> ProcessPool {
    ProcessPool::new(workers).expect("a process pool")
}

pub(crate) struct Holder {
    started: std::path::PathBuf,
    release: std::path::PathBuf,
    /// Released, or the held task ended without being released (killed): nothing to do on
    /// drop.
    gone: std::sync::atomic::AtomicBool,
}

impl Holder {
    fn new() -> Self {
        Holder {
            started: temp_path("started"),
            release: temp_path("release"),
            gone: std::sync::atomic::AtomicBool::new(false),
        }
    }
    fn arg(&self) -> Hold {
        Hold {
            started: self.started.display().to_string(),
            release: self.release.display().to_string(),
        }
    }
    /// Waits until the holding task runs and returns its worker's pid.
    fn wait_started(&self) -> u32 {
        wait_for_file(&self.started)
            .trim()
            .parse()
            .expect("a pid in the start marker")
    }
    fn release(&self) {
        std::fs::write(&self.release, "go").expect("write the release marker");
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    /// The held task was killed: it will never read the release marker.
    fn gone(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // A held task still running (a failed assertion) must end, or the pool's drop waits
        // for it; it removes the marker when it sees it.
        if !self.gone.load(std::sync::atomic::Ordering::Relaxed) {
            self.release();
        }
        let _ = std::fs::remove_file(&self.started);
    }
}
