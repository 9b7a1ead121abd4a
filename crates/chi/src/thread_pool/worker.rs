//! The worker thread: claim a slot, run the initializer, then the main loop — find work, run
//! it under `catch_unwind`, search, sleep, exit on keep-alive or shutdown.
//!
//! Layering: this file depends on `shared.rs` (the pool's state, the per-thread worker
//! context, `run_job`, `help_while`), never the other way: `Shared` starts threads through the
//! entry point the pool hands it ([`run`]).

use super::queue::Job;
use super::shared::{Shared, WorkerCtx, help_while, with_current};
use super::sleep::Wake;
use crate::unwind;
use crossbeam_deque::Worker;
use std::sync::Arc;

/// Entry point of a worker thread that holds slot `index`.
pub(crate) fn run(shared: Arc<Shared>, index: usize, local: Worker<Job>) {
    if let Some(init) = shared.initializer()
        && let Err(msg) = unwind::catch(|| init())
    {
        let _ = shared.sleep.stop_searching();
        shared.fail(format!("worker initializer panicked: {msg}"));
        shared.worker_exit(index, local);
        return;
    }
    WorkerCtx {
        shared: shared.clone(),
        index,
        local,
    }
    .enter();
    // While it runs, a wait on any task from this thread runs queued work of this pool.
    let hook = crate::help::install(|done| help_while(done));
    // A new thread was counted as a searcher by whoever started it.
    main_loop(&shared, index, true);
    drop(hook);
    let ctx = WorkerCtx::leave();
    if let Some(ctx) = ctx {
        shared.worker_exit(ctx.index, ctx.local);
    }
}

fn main_loop(shared: &Arc<Shared>, index: usize, started_searching: bool) {
    // True when we already count as a searcher (just started, or woken by a submitter).
    let mut woken = started_searching;
    loop {
        // BUSY
        if !woken && let Some(job) = find(shared, index) {
            shared.run_job(index, job);
            continue;
        }
        // SEARCHING: spin a little before parking, so bursts of short tasks do not pay a
        // park/unpark per task.
        if woken || shared.sleep.start_searching(shared.alive()) {
            let after_wake = std::mem::take(&mut woken);
            let found = search(shared, index);
            let last = shared.sleep.stop_searching();
            if last && shared.queues.has_work() {
                // More work is queued and nobody else is looking: pass the baton.
                shared.notify();
            }
            if let Some(job) = found {
                shared.run_job(index, job);
                if after_wake {
                    // The job that woke this thread usually has its submitter waiting for it,
                    // often on this very CPU (the scheduler placed the woken thread there).
                    // Give the CPU away once before searching again, or the search's spin
                    // keeps the waiter from seeing its result.
                    crate::loom::thread::yield_now();
                }
                continue;
            }
        }
        // IDLE
        match shared.sleep.sleep(
            shared.keep_alive(),
            || shared.queues.has_work(),
            || shared.is_shut_down(),
        ) {
            Wake::Work => continue,
            Wake::Searching => woken = true,
            Wake::Shutdown => return,
            Wake::KeepAliveExpired => {
                if shared.queues.has_work() {
                    continue;
                }
                return;
            }
        }
    }
}

fn find(shared: &Shared, index: usize) -> Option<Job> {
    with_current(|ctx| ctx.and_then(|c| shared.queues.find(index, &c.local)))
}

fn search(shared: &Shared, index: usize) -> Option<Job> {
    let backoff = crossbeam_utils::Backoff::new();
    while !backoff.is_completed() {
        if let Some(job) = find(shared, index) {
            return Some(job);
        }
        backoff.snooze();
    }
    find(shared, index)
}
