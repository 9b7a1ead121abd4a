//! The state all handles and workers of one pool share: queues, sleep bookkeeping, counters,
//! the shutdown/failed status, and the worker threads' join handles.

use super::builder::{Initializer, ThreadPoolBuilder};
use super::counter::increment_if;
use super::queue::{Job, Queues};
use super::sleep::{Notified, Sleep};
use crate::TaskError;
use crate::loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use crate::loom::sync::{Condvar, Mutex};
use crate::task::RunResult;
use crate::unwind;
use crossbeam_deque::Worker;
use crossbeam_utils::CachePadded;
use std::cell::RefCell;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a `wait_idle` caller looks again by itself (the notification after each job
/// is read without a fence, so one may be missed; this bounds what that costs).
const IDLE_RECHECK: Duration = Duration::from_millis(10);

/// `status` bit: no new work is accepted.
const SHUT_DOWN: usize = 1;
/// `status` bit: a worker initializer failed; every task fails with the stored message.
const FAILED: usize = 2;

/// Per-worker-slot counters, written only by the thread holding the slot.
#[derive(Debug, Default)]
pub(crate) struct SlotStats {
    completed: AtomicU64,
    panicked: AtomicU64,
    /// Jobs finished in any way (completed, panicked, or skipped because cancelled).
    finished: AtomicU64,
    /// Jobs this slot's worker pushed onto its own deque (tasks submitting tasks).
    submitted: AtomicU64,
}

/// One more on a counter that only the slot's holder writes.
// ORDERING: load + store, not fetch_add: one writer per slot, so the Relaxed load reads the
// holder's own last store. Release on the store pairs with the Acquire loads in
// `Shared::balance`: a `wait_idle` caller that sees the count also sees what the job did.
// A Relaxed store would let `wait_idle` return before the job's writes are visible.
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Release);
}

impl SlotStats {
    pub(crate) fn count_completed(&self) {
        bump(&self.completed);
        bump(&self.finished);
    }
    pub(crate) fn count_panicked(&self) {
        bump(&self.panicked);
        bump(&self.finished);
    }
    pub(crate) fn count_skipped(&self) {
        bump(&self.finished);
    }
}

/// A worker thread's entry point: it runs the thread that holds slot `index` with that slot's
/// deque (the pool passes `worker::run`, so this file never depends on the worker loop).
pub(crate) type Entry = fn(Arc<Shared>, usize, Worker<Job>);

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

impl WorkerCtx {
    /// Makes this the calling thread's context (a worker thread, once initialized).
    pub(crate) fn enter(self) {
        CURRENT.with(|c| *c.borrow_mut() = Some(self));
    }

    /// Takes the calling thread's context back (a worker on its way out).
    pub(crate) fn leave() -> Option<WorkerCtx> {
        CURRENT.with(|c| c.borrow_mut().take())
    }
}

/// Calls `f` with this thread's worker context, if it is a pool worker.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&WorkerCtx>) -> R) -> R {
    CURRENT.with(|c| match c.try_borrow() {
        Ok(g) => f(g.as_ref()),
        Err(_) => f(None),
    })
}

pub(crate) struct Shared {
    pub(crate) queues: Queues,
    pub(crate) sleep: Sleep,
    status: AtomicUsize,
    failure: Mutex<Option<String>>,
    alive: AtomicUsize,
    max_workers: usize,
    stats: Box<[CachePadded<SlotStats>]>,
    /// Counters of slots whose threads exited are folded in here.
    spawned: AtomicUsize,
    handles: Mutex<Vec<JoinHandle<()>>>,
    config: ThreadPoolBuilder,
    entry: Entry,
    /// Jobs pushed from outside the pool's workers (workers count theirs per slot).
    submitted: CachePadded<AtomicU64>,
    /// Jobs taken out of the queues without running (`shutdown_now`, a failed pool).
    dropped: AtomicU64,
    /// Callers blocked in `wait_idle`, and where they wait.
    idle_waiters: AtomicUsize,
    idle_lock: Mutex<()>,
    idle_cv: Condvar,
}

impl Shared {
    pub(crate) fn new(config: ThreadPoolBuilder, entry: Entry) -> Self {
        let n = config.workers();
        Shared {
            queues: Queues::new(n, config.queue_bound),
            sleep: Sleep::new(),
            status: AtomicUsize::new(0),
            failure: Mutex::new(None),
            alive: AtomicUsize::new(0),
            max_workers: n,
            stats: (0..n)
                .map(|_| CachePadded::new(SlotStats::default()))
                .collect(),
            spawned: AtomicUsize::new(0),
            handles: Mutex::new(Vec::new()),
            config,
            entry,
            submitted: CachePadded::new(AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
            idle_waiters: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle_cv: Condvar::new(),
        }
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
    }

    pub(crate) fn initializer(&self) -> Option<&Initializer> {
        self.config.initializer.as_ref()
    }

    pub(crate) fn keep_alive(&self) -> Duration {
        self.config.keep_alive
    }

    pub(crate) fn stats(&self, index: usize) -> &SlotStats {
        &self.stats[index]
    }

    pub(crate) fn alive(&self) -> usize {
        // ORDERING: Relaxed: a count, read as a hint (the searcher limit, metrics, a log
        // line) or after a SeqCst fence that orders it (`rescue` via `worker_exit` and
        // `begin_shutdown`). It publishes nothing; the RMWs that change it keep it exact.
        self.alive.load(Ordering::Relaxed)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        // ORDERING: SeqCst pairs with the fence in `shutdown` / `rescue` (see `after_push`).
        self.status.load(Ordering::SeqCst) & SHUT_DOWN != 0
    }

    /// The failure message, if a worker initializer failed.
    pub(crate) fn failure(&self) -> Option<String> {
        // ORDERING: Acquire pairs with the Release half of `fail`'s fetch_or, which follows the
        // message's store: seeing FAILED means the message is there. With Relaxed, this lock
        // could be taken before `fail`'s and read no message for a failed pool.
        if self.status.load(Ordering::Acquire) & FAILED == 0 {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    // ===== running =====

    /// Runs one job and counts it.
    pub(crate) fn run_job(&self, index: usize, job: Job) {
        if let Some(b) = &self.queues.bound {
            b.release();
        }
        // User code runs under catch_unwind inside `run`; anything unwinding out of it is a bug
        // in chi that would leave counters and queues half-updated.
        let guard = unwind::AbortOnUnwind;
        let result = job.run();
        drop(job);
        drop(guard);
        match result {
            RunResult::Completed => self.stats(index).count_completed(),
            RunResult::Panicked => self.stats(index).count_panicked(),
            RunResult::Skipped => self.stats(index).count_skipped(),
        }
        self.job_finished();
    }

    // ===== submission =====

    /// Queues `job`: on this thread's own deque if it is a worker of this pool, else globally,
    /// then makes sure somebody will run it. True when no worker was awake to take it (one
    /// was woken or started), so the job waits for a scheduler wake-up.
    pub(crate) fn push(self: &Arc<Self>, job: Job) -> bool {
        let rejected = with_current(|ctx| match ctx {
            Some(c) if Arc::ptr_eq(&c.shared, self) => {
                bump(&self.stats[c.index].submitted);
                c.local.push(job);
                None
            }
            _ => Some(job),
        });
        if let Some(job) = rejected {
            // ORDERING: Relaxed: the queue's own push/pop orders this count before the job's
            // run, and so before its `finished` count (see `balance`).
            self.submitted.fetch_add(1, Ordering::Relaxed);
            self.queues.push_global(job);
        }
        self.after_push()
    }

    /// True when the calling thread is one of this pool's workers.
    pub(crate) fn is_own_worker(self: &Arc<Self>) -> bool {
        with_current(|ctx| ctx.is_some_and(|c| Arc::ptr_eq(&c.shared, self)))
    }

    /// Makes sure somebody will look at the queues: a searcher, a woken sleeper, or a new
    /// thread (up to the maximum). True when the work waits for a thread being woken or
    /// started; false when a searcher will see it, or every worker is busy and the first to
    /// finish will take it (no wake-up involved: a waiter may as well spin).
    pub(crate) fn notify(self: &Arc<Self>) -> bool {
        match self.sleep.notify_work() {
            Notified::Searcher => false,
            Notified::Woken => true,
            Notified::Nobody => self.maybe_spawn(),
        }
    }

    /// Makes sure somebody will run what was just pushed; true when that takes a wake-up.
    fn after_push(self: &Arc<Self>) -> bool {
        let cold = self.notify();
        // A shutdown or failure that raced this submission may have let every worker exit.
        // ORDERING: SeqCst, after the SeqCst fence in notify_work: either we see the status
        // bit, or the shutdown's final `rescue` sees our push.
        if self.status.load(Ordering::SeqCst) != 0 {
            self.rescue();
        }
        cold
    }

    /// Starts a worker if fewer than the maximum run. Spawn failures are not fatal while
    /// another worker lives (it will get to the work); with none alive they are logged and
    /// the next submission retries.
    /// True when a thread was started.
    fn maybe_spawn(self: &Arc<Self>) -> bool {
        // ORDERING: Acquire pairs with the RMWs in `begin_shutdown` / `fail`. Only a fast path:
        // a stale 0 starts a thread just as a submission a moment earlier would have, and
        // shutdown and failure deal with live threads anyway (`after_push`'s SeqCst load
        // decides about rescue). So Relaxed would be correct too; Acquire is kept as the
        // cheaper-to-reason-about choice and costs no fence on x86 or aarch64 loads.
        if self.status.load(Ordering::Acquire) != 0 {
            // Shut down or failed: no new threads; `rescue` takes care of queued work.
            return false;
        }
        // ORDERING: the RMW keeps `alive` exact (never above `max_workers`) under any ordering.
        // AcqRel pairs with the decrements in `worker_exit`: a new thread counted in after one
        // left comes after its exit, including the slot hand-back (which the slot's mutex
        // orders as well). The failed-exchange reads are Relaxed: they only feed the retry.
        if !increment_if(
            &self.alive,
            |cur| cur < self.max_workers,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            return false;
        }
        let Some(index) = self.queues.claim_slot() else {
            // An exiting thread has not handed its slot back yet; it still counts as alive.
            // ORDERING: AcqRel, the undo of the increment above (same pairing).
            self.alive.fetch_sub(1, Ordering::AcqRel);
            return false;
        };
        // The new thread starts as a searcher, like a woken sleeper: submitters until then
        // see someone looking, and once it finds work it passes the baton if more is queued,
        // so a burst grows the pool one thread at a time up to the maximum.
        self.sleep.begin_search_for_new_thread();
        if let Err(e) = self.spawn(index) {
            let _ = self.sleep.stop_searching();
            tracing::warn!(error = %e, alive = self.alive(), "could not start a worker thread");
            return false;
        }
        true
    }

    fn spawn(self: &Arc<Self>, index: usize) -> std::io::Result<()> {
        // ORDERING: Relaxed: only numbers thread names; the RMW makes each number unique.
        let n = self.spawned.fetch_add(1, Ordering::Relaxed) + 1;
        let mut b = std::thread::Builder::new().name(format!("{}-{n}", self.config.thread_name));
        if let Some(size) = self.config.stack_size {
            b = b.stack_size(size);
        }
        let shared = self.clone();
        let entry = self.entry;
        let result = b.spawn(move || {
            let local = shared.queues.take_deque(index);
            entry(shared, index, local);
        });
        match result {
            Ok(h) => {
                let mut hs = self.handles.lock().unwrap_or_else(|e| e.into_inner());
                hs.retain(|h| !h.is_finished());
                hs.push(h);
                Ok(())
            }
            Err(e) => {
                self.queues.release_slot(index, None);
                // ORDERING: AcqRel, the undo of `maybe_spawn`'s increment (same pairing).
                self.alive.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    /// Called by a worker thread on its way out.
    pub(crate) fn worker_exit(self: &Arc<Self>, index: usize, local: Worker<Job>) {
        self.queues.release_slot(index, Some(local));
        // ORDERING: AcqRel pairs with `maybe_spawn`'s increment (a replacement thread comes
        // after this exit). The race with submitters is ordered by the fence below, not here.
        self.alive.fetch_sub(1, Ordering::AcqRel);
        // A submitter that pushed just before we left may have seen us alive (so it did not
        // start a thread) but not idle (so it woke nobody). ORDERING: the SeqCst fence pairs
        // with the one in `notify_work`: either it sees our decrement, or we see its push.
        fence(Ordering::SeqCst);
        if self.queues.has_work() {
            // ORDERING: SeqCst pairs with `begin_shutdown`'s fetch_or and fence: either we see
            // the bit and rescue, or the shutdown's final `rescue` sees this exit. Weaker, both
            // could miss, and the queued work would wait for workers that never come.
            if self.status.load(Ordering::SeqCst) != 0 {
                self.rescue();
            } else {
                self.notify();
            }
        }
    }

    // ===== shutdown and failure =====

    /// Stops accepting work and wakes every worker so the idle ones exit.
    pub(crate) fn begin_shutdown(&self) {
        // ORDERING: SeqCst RMW then SeqCst fence, paired with the submitters' fence in
        // `notify_work` and their SeqCst status load in `after_push` (Dekker's pattern): either
        // a racing submitter sees the bit and rescues its job, or the `rescue` at the end of
        // this shutdown sees the job. A Release RMW without the fence lets both miss, and the
        // job is never run nor cancelled.
        self.status.fetch_or(SHUT_DOWN, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.sleep.wake_all();
        if let Some(b) = &self.queues.bound {
            b.wake_all();
        }
    }

    /// Joins every worker thread (except the caller, when a task shuts its own pool down).
    pub(crate) fn join_workers(&self) {
        loop {
            let hs = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
            if hs.is_empty() {
                break;
            }
            let me = std::thread::current().id();
            for h in hs {
                if h.thread().id() == me {
                    continue;
                }
                let _ = h.join();
            }
        }
        self.rescue();
    }

    /// Forgets the workers' join handles: they finish and exit on their own, and nobody joins
    /// them (`shutdown_background`).
    pub(crate) fn detach_workers(&self) {
        drop(std::mem::take(
            &mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        self.rescue();
    }

    /// After shutdown: work that no worker will run (because all exited) is cancelled, so no
    /// handle waits forever. With workers alive, they are woken to run it instead.
    pub(crate) fn rescue(&self) {
        if let Some(msg) = self.failure() {
            self.cancel_queued(TaskError::pool_failed(msg));
        } else if self.alive() == 0 {
            self.cancel_queued(TaskError::Cancelled);
        } else {
            self.sleep.wake_all();
        }
    }

    /// Cancels every queued task with `err`.
    pub(crate) fn cancel_queued(&self, err: TaskError) -> usize {
        let mut n = 0;
        let mut taken = 0;
        while let Some(job) = self.queues.pop_any() {
            if let Some(b) = &self.queues.bound {
                b.release();
            }
            if job.cancel_with(err.clone()) {
                n += 1;
            }
            taken += 1;
        }
        if taken > 0 {
            // ORDERING: Release, read by `balance`'s Acquire, as the per-slot counts: a
            // `wait_idle` caller that sees these jobs counted also sees their handles completed
            // (cancelled). Relaxed would let it return before the cancellations are visible.
            self.dropped.fetch_add(taken, Ordering::Release);
            self.wake_idle_waiters();
        }
        n
    }

    // ===== wait_idle =====

    /// Jobs submitted minus jobs finished (run, skipped or dropped), as one consistent reading
    /// could give it: 0 means every job submitted before this call had finished.
    ///
    /// The finished counts are read first (Acquire), then the submitted ones. A job counted
    /// finished was submitted before it finished, so its submission is counted too; a job
    /// submitted between the two readings only makes the difference larger. So 0 is never
    /// seen while a job submitted before the first reading is unfinished.
    fn balance(&self) -> u64 {
        // ORDERING: the Acquire loads of the finished counts pair with the Release stores in
        // `bump` and `cancel_queued` (the job's effects become visible) and keep the submitted
        // loads after them (the argument above needs that order). Relaxed finished loads could
        // be read after the submitted ones and give 0 with a job unfinished. The submitted
        // loads' Acquire pairs with `bump` on the per-slot counts; the global count is
        // Relaxed and ordered by the queue (see `push`).
        let finished = self.dropped.load(Ordering::Acquire)
            + self
                .stats
                .iter()
                .map(|s| s.finished.load(Ordering::Acquire))
                .sum::<u64>();
        let submitted = self.submitted.load(Ordering::Acquire)
            + self
                .stats
                .iter()
                .map(|s| s.submitted.load(Ordering::Acquire))
                .sum::<u64>();
        submitted.saturating_sub(finished)
    }

    /// Blocks until at most `own` jobs are unfinished (1 when the caller is itself a task of
    /// this pool). A worker that calls it runs queued work of the pool meanwhile.
    pub(crate) fn wait_idle(self: &Arc<Self>) {
        let own = u64::from(self.is_own_worker());
        // ORDERING: SeqCst pairs with the Relaxed check in `job_finished`; a missed wake-up
        // there costs at most one `IDLE_RECHECK` below, never a hang.
        self.idle_waiters.fetch_add(1, Ordering::SeqCst);
        loop {
            if own > 0 {
                help_while(|| self.balance() <= own);
            }
            let g = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
            if self.balance() <= own {
                break;
            }
            drop(
                self.idle_cv
                    .wait_timeout(g, IDLE_RECHECK)
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
        // ORDERING: SeqCst, as the increment. A stale non-zero seen by `job_finished` only
        // costs it a lock and a notify nobody waits for.
        self.idle_waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Called after each job: wakes `wait_idle` callers, if any.
    pub(crate) fn job_finished(&self) {
        // ORDERING: Relaxed: nearly always 0 and read on every job; see `wait_idle`.
        if self.idle_waiters.load(Ordering::Relaxed) > 0 {
            self.wake_idle_waiters();
        }
    }

    fn wake_idle_waiters(&self) {
        let _g = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.idle_cv.notify_all();
    }

    /// Marks the pool failed (an initializer panicked) and fails the queued work with `msg`.
    pub(crate) fn fail(&self, msg: String) {
        tracing::error!(%msg, "thread pool failed");
        {
            let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            if f.is_none() {
                *f = Some(msg.clone());
            }
        }
        // ORDERING: Release publishes the message stored above to `failure`'s Acquire load;
        // Acquire orders the cancellations below after any earlier status change. With
        // Relaxed, a submitter could see FAILED and find no message.
        self.status.fetch_or(FAILED, Ordering::AcqRel);
        self.cancel_queued(TaskError::pool_failed(msg));
        self.sleep.wake_all();
        if let Some(b) = &self.queues.bound {
            b.wake_all();
        }
    }

    /// Counters for `metrics()`.
    pub(crate) fn totals(&self) -> (u64, u64) {
        // ORDERING: Relaxed: a metrics snapshot of monotonic counters; it orders nothing, and
        // each counter on its own is read coherently.
        self.stats.iter().fold((0, 0), |(c, p), s| {
            (
                c + s.completed.load(Ordering::Relaxed),
                p + s.panicked.load(Ordering::Relaxed),
            )
        })
    }
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
            Some((shared, index, job)) => shared.run_job(index, job),
            None => return,
        }
    }
}
