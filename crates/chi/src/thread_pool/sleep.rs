//! When idle workers spin, when they park, and whom a submitter wakes.
//!
//! A worker that runs out of work first *searches* (spins over the queues for a short while),
//! then *sleeps* on a condition variable, then, after the keep-alive, exits. A submitter wakes
//! one sleeper only when nobody is searching: a searcher will find the new job itself, and
//! waking a second thread would only make it spin. At most half the workers (and at least one)
//! search at once, so spinning never takes every core from the submitters.
//!
//! The race this guards against is the lost wake-up: a worker checks the queues (empty),
//! a submitter pushes and sees no sleeper, then the worker parks with work queued. Both sides
//! use a SeqCst fence between their write (the sleeper count, the push) and their read (the
//! queues, the sleeper count), so at least one of them sees the other (Dekker's pattern).
//! Wake-ups are counted as tokens under the lock, so spurious condvar wake-ups are harmless.

use super::counter::increment_if;
use crate::loom::sync::atomic::{AtomicUsize, Ordering, fence};
use crate::loom::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Counts {
    /// Threads blocked in the condvar.
    idle: usize,
    /// Wake-ups given and not yet taken.
    tokens: usize,
}

/// Idle-worker bookkeeping of one pool.
#[derive(Debug)]
pub(crate) struct Sleep {
    lock: Mutex<Counts>,
    cv: Condvar,
    /// Workers between "queues looked empty" and "woken": read by submitters without the lock.
    sleeping: AtomicUsize,
    /// Workers spinning over the queues.
    searching: AtomicUsize,
}

/// Who will take work that a submitter just queued, as `Sleep::notify_work` found it.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notified {
    /// A worker is searching the queues and will find it without a wake-up.
    Searcher,
    /// A sleeping worker was woken: the work waits for a scheduler wake-up.
    Woken,
    /// Nobody: the caller should start a worker if it may.
    Nobody,
}

/// Why `Sleep::sleep` returned.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Look for work again.
    Work,
    /// Woken by a submitter: the thread already counts as a searcher and must search (and
    /// then call `stop_searching`).
    Searching,
    /// No work came within the keep-alive: the thread may exit.
    KeepAliveExpired,
    /// The pool is shutting down and the queues are empty: the thread must exit.
    Shutdown,
}

impl Sleep {
    pub(crate) fn new() -> Self {
        Sleep {
            lock: Mutex::new(Counts::default()),
            cv: Condvar::new(),
            sleeping: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
        }
    }

    /// Becomes a searcher unless enough workers search already. True if it did.
    pub(crate) fn start_searching(&self, alive: usize) -> bool {
        // ORDERING: SeqCst keeps this count in the same total order as the submitters' fence,
        // so a submitter that reads 0 searchers goes on to wake a sleeper.
        increment_if(
            &self.searching,
            |cur| cur == 0 || 2 * cur < alive,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
    }

    /// Counts a thread about to be started as a searcher (it searches first).
    pub(crate) fn begin_search_for_new_thread(&self) {
        // ORDERING: SeqCst, as in start_searching.
        self.searching.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops searching; true if this was the last searcher. A last searcher must look at
    /// the queues once more after this (and wake someone if work is there): a submitter that
    /// saw it searching relied on it.
    pub(crate) fn stop_searching(&self) -> bool {
        // ORDERING: SeqCst RMW then a SeqCst fence: pairs with the submitter's fence in
        // `notify_work`, so the caller's next look at the queues sees any push whose
        // submitter read the searcher count before this decrement.
        let last = self.searching.fetch_sub(1, Ordering::SeqCst) == 1;
        fence(Ordering::SeqCst);
        last
    }

    /// Called by a submitter after it queued work: says who will take it, waking a sleeper
    /// when no searcher will see the work.
    pub(crate) fn notify_work(&self) -> Notified {
        // ORDERING: the fence orders the push before the counter reads (see module doc).
        fence(Ordering::SeqCst);
        if self.searching.load(Ordering::SeqCst) > 0 {
            return Notified::Searcher;
        }
        // ORDERING: SeqCst, after the fence: pairs with `sleep`'s increment and fence. Either
        // we see the sleeper, or it sees our push in its `has_work` check.
        if self.sleeping.load(Ordering::SeqCst) == 0 {
            return Notified::Nobody;
        }
        if self.wake_one() {
            Notified::Woken
        } else {
            Notified::Nobody
        }
    }

    /// Gives one sleeping thread a wake-up; false if none is blocked.
    ///
    /// The woken thread counts as a searcher from this moment (it will search before it
    /// does anything else), so submitters that come before it runs see a searcher and do not
    /// queue up on this lock to wake a second thread.
    pub(crate) fn wake_one(&self) -> bool {
        let mut c = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if c.idle > c.tokens {
            c.tokens += 1;
            // ORDERING: SeqCst, as in start_searching.
            self.searching.fetch_add(1, Ordering::SeqCst);
            // Notify after unlocking, so the woken thread does not wake only to block on the
            // lock we still hold. Safe: the sleeper we counted in `idle` released the lock
            // inside `wait`, so it is already waiting and the token is there for it.
            drop(c);
            self.cv.notify_one();
            true
        } else {
            false
        }
    }

    /// Wakes every sleeper (shutdown, failure).
    pub(crate) fn wake_all(&self) {
        let mut c = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let extra = c.idle.saturating_sub(c.tokens);
        c.tokens += extra;
        // ORDERING: SeqCst, as in `wake_one`: the woken threads count as searchers in the same
        // total order the submitters read it in.
        self.searching.fetch_add(extra, Ordering::SeqCst);
        self.cv.notify_all();
    }

    /// Parks the calling worker until work may be there, the keep-alive ends, or shutdown.
    /// `has_work` and `shutting_down` are re-checked under the lock after the sleeper count
    /// is published.
    pub(crate) fn sleep(
        &self,
        keep_alive: Duration,
        has_work: impl Fn() -> bool,
        shutting_down: impl Fn() -> bool,
    ) -> Wake {
        let mut c = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // ORDERING: SeqCst increment then fence, then the queue check (see module doc).
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // A keep-alive past the clock's range never expires.
        let deadline = crate::limits::deadline_after(keep_alive);
        let wake = loop {
            if has_work() {
                break Wake::Work;
            }
            if c.tokens > 0 {
                c.tokens -= 1;
                break Wake::Searching;
            }
            if shutting_down() {
                break Wake::Shutdown;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Wake::KeepAliveExpired;
            }
            c.idle += 1;
            c = match deadline {
                Some(d) => {
                    self.cv
                        .wait_timeout(c, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.cv.wait(c).unwrap_or_else(|e| e.into_inner()),
            };
            c.idle -= 1;
            if c.tokens > 0 {
                c.tokens -= 1;
                break Wake::Searching;
            }
        };
        // ORDERING: SeqCst, as the increment. Leaving the count late is harmless (a submitter
        // that still sees us only takes the lock to find no one to wake).
        self.sleeping.fetch_sub(1, Ordering::SeqCst);
        wake
    }

    /// Workers spinning or parked right now.
    pub(crate) fn idle_count(&self) -> usize {
        // ORDERING: Relaxed: a metrics snapshot; it decides nothing.
        self.sleeping.load(Ordering::Relaxed) + self.searching.load(Ordering::Relaxed)
    }
}

/// Loom models of the wake-up protocol (`--cfg chi_loom`, see `.ci/loom.sh`); without loom
/// each runs once as a plain test.
#[cfg(test)]
mod tests {
    use super::{Notified, Sleep, Wake};
    use crate::loom::sync::Arc;
    use crate::loom::sync::atomic::{AtomicBool, Ordering};
    use crate::loom::{model, spawn};
    use std::time::Duration;

    /// A worker that found nothing parks (no keep-alive) while a submitter queues work and
    /// notifies: in every interleaving the worker ends up with the work, and a submitter that
    /// saw it asleep reports `Woken`. A lost wake-up leaves the worker parked: loom reports a
    /// deadlock.
    #[test]
    fn a_queued_job_never_strands_a_sleeper() {
        model(|| {
            let sleep = Arc::new(Sleep::new());
            let work = Arc::new(AtomicBool::new(false));
            let (s, w) = (sleep.clone(), work.clone());
            let worker = spawn(move || {
                loop {
                    // ORDERING: SeqCst, as the real queues' check after the sleeper count.
                    let has_work = || w.load(Ordering::SeqCst);
                    match s.sleep(Duration::MAX, has_work, || false) {
                        Wake::Work => return,
                        Wake::Searching => {
                            let _ = s.stop_searching();
                            if w.load(Ordering::SeqCst) {
                                return;
                            }
                        }
                        other => panic!("unexpected wake: {other:?}"),
                    }
                }
            });
            // ORDERING: SeqCst, as the queue push before `notify_work`'s fence.
            work.store(true, Ordering::SeqCst);
            let notified = sleep.notify_work();
            assert_ne!(
                notified,
                Notified::Searcher,
                "nobody searched in this model"
            );
            worker.join().unwrap();
        });
    }
}
