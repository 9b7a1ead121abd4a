//! The worker thread: claim a slot, run the initializer, then the main loop — find work, run
//! it under `catch_unwind`, search, sleep, exit on keep-alive or shutdown.

use super::queue::Job;
use super::shared::Shared;
use super::sleep::Wake;
use crate::task::RunResult;
use crate::unwind;
use crossbeam_deque::Worker;
use std::cell::RefCell;
use std::sync::Arc;

/// What a worker thread knows about itself; reachable from task code through `CURRENT`.
pub(crate) struct WorkerCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) local: Worker<Job>,
}

thread_local! {
    /// Set on pool worker threads for their whole life.
    static CURRENT: RefCell<Option<WorkerCtx>> = const { RefCell::new(None) };
}

/// Calls `f` with this thread's worker context, if it is a pool worker.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&WorkerCtx>) -> R) -> R {
    CURRENT.with(|c| match c.try_borrow() {
        Ok(g) => f(g.as_ref()),
        Err(_) => f(None),
    })
}

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
    CURRENT.with(|c| {
        *c.borrow_mut() = Some(WorkerCtx {
            shared: shared.clone(),
            index,
            local,
        })
    });
    // While it runs, a wait on any task from this thread runs queued work of this pool.
    let hook = crate::help::install(|done| help_while(done));
    // A new thread was counted as a searcher by whoever started it.
    main_loop(&shared, index, true);
    drop(hook);
    let ctx = CURRENT.with(|c| c.borrow_mut().take());
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
            run_job(shared, index, job);
            continue;
        }
        // SEARCHING: spin a little before parking, so bursts of short tasks do not pay a
        // park/unpark per task.
        if woken || shared.sleep.start_searching(shared.alive()) {
            woken = false;
            let found = search(shared, index);
            let last = shared.sleep.stop_searching();
            if last && shared.queues.has_work() {
                // More work is queued and nobody else is looking: pass the baton.
                shared.notify();
            }
            if let Some(job) = found {
                run_job(shared, index, job);
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

/// Runs one job and counts it.
pub(crate) fn run_job(shared: &Shared, index: usize, job: Job) {
    if let Some(b) = &shared.queues.bound {
        b.release();
    }
    // User code runs under catch_unwind inside `run`; anything unwinding out of it is a bug
    // in chi that would leave counters and queues half-updated.
    let guard = unwind::AbortOnUnwind;
    let result = job.run();
    drop(job);
    drop(guard);
    match result {
        RunResult::Completed => shared.stats(index).count_completed(),
        RunResult::Panicked => shared.stats(index).count_panicked(),
        RunResult::Skipped => shared.stats(index).count_skipped(),
    }
    shared.job_finished();
}

/// While `done()` is false and this thread is a worker, runs queued work of its own pool.
/// Returns when `done()` is true or no work is left to run.
pub(crate) fn help_while(done: impl Fn() -> bool) {
    loop {
        if done() {
            return;
        }
        let next = with_current(|ctx| {
            ctx.and_then(|c| {
                c.shared
                    .queues
                    .find(c.index, &c.local)
                    .map(|j| (c.shared.clone(), c.index, j))
            })
        });
        match next {
            Some((shared, index, job)) => run_job(&shared, index, job),
            None => return,
        }
    }
}
