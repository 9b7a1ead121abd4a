//! Where queued work waits: one global injector for work submitted from outside, one deque per
//! worker for work submitted from inside a task (stolen by idle workers), and an optional
//! bound with blocking admission.

use super::counter::increment_if;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex};
use crate::task::Runnable;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::sync::Arc;
use std::time::Instant;

/// A queued job: the task's one allocation, type-erased.
pub(crate) type Job = Arc<dyn Runnable>;

/// The pool's queues.
pub(crate) struct Queues {
    injector: Injector<Job>,
    stealers: Box<[Stealer<Job>]>,
    /// Worker-side deques, checked out by the thread that holds each slot.
    locals: Box<[Mutex<Slot>]>,
    pub(crate) bound: Option<Bound>,
}

impl Queues {
    pub(crate) fn new(slots: usize, bound: Option<usize>) -> Self {
        let workers: Vec<Worker<Job>> = (0..slots).map(|_| Worker::new_fifo()).collect();
        Queues {
            injector: Injector::new(),
            stealers: workers.iter().map(Worker::stealer).collect(),
            locals: workers
                .into_iter()
                .map(|w| {
                    Mutex::new(Slot {
                        deque: Some(w),
                        claimed: false,
                    })
                })
                .collect(),
            bound: bound.map(Bound::new),
        }
    }

    pub(crate) fn push_global(&self, job: Job) {
        self.injector.push(job);
    }

    /// Reserves a free worker slot for a thread about to start.
    pub(crate) fn claim_slot(&self) -> Option<usize> {
        self.locals.iter().position(|m| {
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            !std::mem::replace(&mut g.claimed, true)
        })
    }

    /// The started thread takes its slot's deque.
    pub(crate) fn take_deque(&self, index: usize) -> Worker<Job> {
        let mut g = self.locals[index].lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!(g.claimed);
        g.deque.take().expect("a claimed slot holds its deque")
    }

    /// Frees a slot: its thread exited (handing the deque back) or never started.
    pub(crate) fn release_slot(&self, index: usize, local: Option<Worker<Job>>) {
        let mut g = self.locals[index].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(local) = local {
            debug_assert!(local.is_empty(), "a worker left work in its deque");
            g.deque = Some(local);
        }
        g.claimed = false;
    }

    /// Work-finding order: own deque, then the injector (a batch, into the own deque), then
    /// the other workers' deques.
    pub(crate) fn find(&self, me: usize, local: &Worker<Job>) -> Option<Job> {
        if let Some(job) = local.pop() {
            return Some(job);
        }
        loop {
            match self.injector.steal_batch_with_limit_and_pop(local, 16) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        self.steal_from_others(me)
    }

    /// Takes one job from anywhere (used by threads with no deque of their own).
    pub(crate) fn pop_any(&self) -> Option<Job> {
        loop {
            match self.injector.steal() {
                Steal::Success(job) => return Some(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        self.steal_from_others(usize::MAX)
    }

    fn steal_from_others(&self, me: usize) -> Option<Job> {
        let n = self.stealers.len();
        let start = if me < n { me + 1 } else { 0 };
        let mut retry = true;
        while retry {
            retry = false;
            for k in 0..n {
                let i = (start + k) % n;
                if i == me {
                    continue;
                }
                match self.stealers[i].steal() {
                    Steal::Success(job) => return Some(job),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
        }
        None
    }

    /// True if any queue holds work (a hint: it can change at once).
    pub(crate) fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// Queued jobs right now (a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.injector.len() + self.stealers.iter().map(Stealer::len).sum::<usize>()
    }
}

/// One worker slot: its deque (absent while a thread holds it) and whether it is taken.
pub(crate) struct Slot {
    deque: Option<Worker<Job>>,
    claimed: bool,
}

/// Counts queued work against a bound; submitters wait here for space.
pub(crate) struct Bound {
    limit: usize,
    queued: AtomicUsize,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    space: Condvar,
}

impl Bound {
    fn new(limit: usize) -> Self {
        Bound {
            limit,
            queued: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            space: Condvar::new(),
        }
    }

    /// Takes a place if one is free.
    pub(crate) fn try_acquire(&self) -> bool {
        // ORDERING: Relaxed suffices: the count only admits; the job itself is published by
        // the queue push that follows.
        increment_if(
            &self.queued,
            |cur| cur < self.limit,
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
    }

    /// Takes a place even over the limit (work submitted from inside the pool).
    pub(crate) fn force_acquire(&self) {
        // ORDERING: Relaxed, as `try_acquire`: the count only admits, the RMW keeps it exact,
        // and the job is published by the queue push that follows.
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits for a place until `deadline` (forever when `None`) or until `give_up()` is true.
    pub(crate) fn acquire(&self, deadline: Option<Instant>, give_up: impl Fn() -> bool) -> bool {
        if self.try_acquire() {
            return true;
        }
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // ORDERING: SeqCst pairs with the fence in `release`: either the releaser sees us
        // waiting and notifies under the lock, or we see its decrement in `try_acquire`.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let ok = loop {
            // ORDERING: SeqCst fence between publishing `waiting` and reading `queued` (in
            // `try_acquire`), paired with the fence in `release` between its decrement and its
            // read of `waiting` (Dekker's pattern): either we see the freed place, or the
            // releaser sees us waiting and notifies under the lock we hold until we wait.
            // Without it both could miss, and we would sleep with a place free.
            crate::loom::sync::atomic::fence(Ordering::SeqCst);
            if self.try_acquire() {
                break true;
            }
            if give_up() {
                break false;
            }
            match deadline {
                None => g = self.space.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    g = self
                        .space
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        // ORDERING: SeqCst, as the increment. A stale non-zero seen by `release` only costs
        // it a lock and a notify nobody waits for.
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        ok
    }

    /// Frees a place (a job left the queue) and wakes one waiting submitter.
    pub(crate) fn release(&self) {
        // ORDERING: the decrement may be Relaxed (the RMW keeps the count exact); the SeqCst
        // fence after it pairs with the one in `acquire` (see there), and the SeqCst load of
        // `waiting` comes after the fence. Without the fence, a submitter that just went to
        // wait could be missed while it missed this decrement: a lost wake-up.
        self.queued.fetch_sub(1, Ordering::Relaxed);
        crate::loom::sync::atomic::fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.space.notify_one();
        }
    }

    /// Wakes every waiting submitter (shutdown: they must see it and give up).
    pub(crate) fn wake_all(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.space.notify_all();
    }
}
