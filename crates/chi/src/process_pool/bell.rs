//! The doorbell: a worker wakes its supervisor only when the supervisor asked for it, so a
//! busy worker's results do not cost the parent a wake-up each.
//!
//! Results are still written the moment a message finishes (a later crash loses none of
//! them): into the socket, or beside the claim word (below). What changes is when the
//! supervisor looks: while its worker has several messages
//! queued, the supervisor may sleep *without* watching the socket for input, after asking to
//! be rung once the worker is down to `low` messages it has not taken yet. It then reads every
//! result that arrived meanwhile in one go and tops the worker up. One wake-up serves about
//! `depth - low` results instead of one.
//!
//! Four words in the claim ring's shared memory:
//!
//! | word | written by | meaning |
//! |---|---|---|
//! | `want` | supervisor (arm, disarm), worker (takes it when ringing) | 0: not asleep on the bell; `low + 1`: ring me once at most `low` messages wait |
//! | `sent` | parent | messages sent to this worker |
//! | `taken` | worker | messages it has taken (started or skipped) |
//! | `blocked` | worker | 1 while it waits for room to write its results |
//!
//! No lost wake-up: the supervisor stores `want` and then reads `taken` and `blocked`; the
//! worker stores `taken` (or `blocked`) and then reads `want`, with a `SeqCst` fence between
//! the store and the load on each side, so of each pair at least one side sees the other's
//! store (the store-buffer case of Dekker's algorithm): either the supervisor sees the worker
//! at or below `low` (or blocked) and does not sleep on the bell, or the worker sees the
//! request and rings. Modelled by loom in `loom_models` below, including a supervisor that
//! wakes, sends more and arms again (without either side's fence loom finds a lost wake-up).
//! A worker that dies rings nothing; the supervisor also watches the process itself (a
//! pidfd), and sleeps on the bell only when it has one.
//!
//! **Answers in shared memory.** While the supervisor sleeps on the bell, a worker puts a
//! small answer into its message's claim slot (`ring.rs`) instead of the socket, which then
//! makes no sound at all. The same store-then-load pair keeps it from being lost: the worker
//! stores the answer, fences and reads `want` ([`Bell::answered`]): a supervisor that is not
//! asleep on the bell any more is rung; one that is, only at the low mark. The supervisor,
//! on waking, disarms, fences and reads the answers; after an arm that failed (the worker may
//! have seen the request for a moment), it fences and reads them too before it sleeps on the
//! socket. Rings that came while it was awake are forgotten before it sleeps on the bell
//! (else the sleep would end at once), and if the request was used up meanwhile it rings
//! itself. Two loom models below check these (with the earlier three); without either fence
//! the first of them fails. A ring the forgetting swallows leaves the answer to the end of
//! the sleep on the bell, which is always bounded (2 to 4 ms).

use crate::loom::interprocess::{AtomicU64, Ordering};

/// One shared word, as the bell uses it. Implemented for the shared-memory atomics and, under
/// loom, for loom's (the same algorithm, modelled in one process).
pub(crate) trait Word {
    fn get(&self) -> u64;
    fn set(&self, v: u64);
    fn take(&self) -> u64;
    fn add(&self, n: u64);
    /// A `SeqCst` fence of the same kind (std's, or loom's under loom).
    fn fence();
}

macro_rules! word_impl {
    ($t:ty, $fence:path) => {
        impl Word for $t {
            // ORDERING: SeqCst throughout, and a SeqCst fence between each side's store and
            // its load of the other side's word: the bell is a store-then-load handshake
            // (Dekker), which weaker orderings do not make safe. (The fence is what the C++
            // model, and loom, guarantee this with; SeqCst accesses alone are not modelled
            // that way by loom.)
            fn fence() {
                $fence(Ordering::SeqCst);
            }
            fn get(&self) -> u64 {
                self.load(Ordering::SeqCst)
            }
            fn set(&self, v: u64) {
                self.store(v, Ordering::SeqCst)
            }
            fn take(&self) -> u64 {
                self.swap(0, Ordering::SeqCst)
            }
            fn add(&self, n: u64) {
                self.fetch_add(n, Ordering::SeqCst);
            }
        }
    };
}

word_impl!(AtomicU64, crate::loom::interprocess::fence);
#[cfg(chi_loom)]
word_impl!(
    crate::loom::sync::atomic::AtomicU64,
    crate::loom::sync::atomic::fence
);

/// Words the bell needs after the claim slots.
pub(crate) const WORDS: usize = 4;

/// A view of the four words (see the module docs).
#[derive(Debug)]
pub(crate) struct Bell<'a, W: Word = AtomicU64> {
    want: &'a W,
    sent: &'a W,
    taken: &'a W,
    blocked: &'a W,
}

// By hand: a derive would ask `W: Copy`, and atomics are not.
impl<W: Word> Clone for Bell<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W: Word> Copy for Bell<'_, W> {}

impl<'a, W: Word> Bell<'a, W> {
    /// The bell over `words` (at least [`WORDS`] long).
    pub(crate) fn over(words: &'a [W]) -> Bell<'a, W> {
        Bell {
            want: &words[0],
            sent: &words[1],
            taken: &words[2],
            blocked: &words[3],
        }
    }

    /// Messages sent and not taken yet. (A worker that wrote nonsense into `taken` makes this
    /// 0, which only means "ring now": it can cost wake-ups, never a lost one.)
    fn waiting(&self) -> u64 {
        let d = self.sent.get().wrapping_sub(self.taken.get());
        if d > u64::MAX / 2 { 0 } else { d }
    }

    // ===== parent =====

    /// Parent: `n` more messages are on their way to the worker (before their bytes are
    /// sent).
    pub(crate) fn sent(&self, n: u64) {
        self.sent.add(n);
    }

    /// Supervisor, before it sleeps: asks to be rung once at most `low` messages wait. False
    /// when that is already the case, or the worker is waiting for room to write: then it
    /// must watch the socket as usual (nothing was armed), after looking at the answers in
    /// shared memory once more: the worker may have seen the request for a moment and not
    /// rung for one (the fence orders that look after the withdrawal).
    pub(crate) fn arm(&self, low: u64) -> bool {
        self.want.set(low.saturating_add(1));
        W::fence();
        if self.waiting() <= low || self.blocked.get() != 0 {
            self.want.take();
            W::fence();
            return false;
        }
        true
    }

    /// True while the supervisor sleeps on the bell and has not been rung. The supervisor
    /// asks after a successful [`Bell::arm`] (false: the worker rang already); the worker,
    /// to choose where an answer goes (a hint only: [`Bell::answered`] decides the ring).
    pub(crate) fn armed(&self) -> bool {
        self.want.get() != 0
    }

    /// Supervisor, after it woke up (for any reason): no ring is needed while it is awake.
    /// Then a fence before it reads the answers in shared memory: a worker that put one there
    /// and still saw the bell armed (so did not ring) has it seen by this look.
    pub(crate) fn disarm(&self) {
        self.want.take();
        W::fence();
    }

    // ===== worker =====

    /// Worker: it took the next message (to run it or skip it).
    pub(crate) fn took_one(&self) {
        self.taken.add(1);
    }

    /// Worker, after writing a message's results: true if it must ring now (the supervisor
    /// is asleep on the bell and at most its `low` messages wait). The request is used up.
    pub(crate) fn due(&self) -> bool {
        W::fence();
        let want = self.want.get();
        want != 0 && self.waiting() < want && self.want.take() != 0
    }

    /// Worker, after putting a message's answer into shared memory instead of the socket:
    /// true if it must ring now. Always when the supervisor is not asleep on the bell (it may
    /// be about to sleep watching only the socket, which would never tell it); when it is,
    /// only at the low mark, as [`Bell::due`] (the supervisor reads every answer there is
    /// once it wakes).
    pub(crate) fn answered(&self) -> bool {
        W::fence();
        let want = self.want.get();
        want == 0 || (self.waiting() < want && self.want.take() != 0)
    }

    /// Worker, before it waits for room to write: true if it must ring now (the supervisor
    /// sleeps without reading, so the room would never come). Follow with [`Bell::unblocked`].
    pub(crate) fn blocking(&self) -> bool {
        self.blocked.set(1);
        W::fence();
        self.want.take() != 0
    }

    /// Worker: the write went through.
    pub(crate) fn unblocked(&self) {
        self.blocked.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> [AtomicU64; WORDS] {
        std::array::from_fn(|_| AtomicU64::new(0))
    }

    #[test]
    fn arm_refuses_when_few_enough_wait_or_the_worker_is_blocked() {
        let w = words();
        let b = Bell::over(&w);
        for _ in 0..4 {
            b.sent(1);
        }
        assert!(!b.arm(4), "4 waiting is at the low mark");
        assert!(b.arm(3));
        b.disarm();
        b.unblocked();
        assert!(!b.blocking(), "nobody armed");
        assert!(!b.arm(1), "a blocked worker needs the socket watched");
        b.unblocked();
        assert!(b.arm(1));
    }

    #[test]
    fn the_worker_rings_once_at_the_low_mark() {
        let w = words();
        let b = Bell::over(&w);
        for _ in 0..5 {
            b.sent(1);
        }
        assert!(b.arm(2));
        b.took_one();
        assert!(!b.due(), "4 wait");
        b.took_one();
        assert!(!b.due(), "3 wait");
        b.took_one();
        assert!(b.due(), "2 wait: ring");
        b.took_one();
        assert!(!b.due(), "rung once; the request is used up");
    }

    #[test]
    fn a_blocked_worker_rings_an_armed_supervisor() {
        let w = words();
        let b = Bell::over(&w);
        for _ in 0..5 {
            b.sent(1);
        }
        assert!(b.arm(1));
        assert!(b.blocking());
        b.unblocked();
        assert!(!b.blocking(), "used up");
    }

    #[test]
    fn nonsense_counts_ring_early_never_late() {
        let w = words();
        let b = Bell::over(&w);
        b.sent(1);
        w[2].store(5, Ordering::SeqCst); // taken ahead of sent
        assert!(!b.arm(0), "0 waiting: no sleeping on the bell");
    }
}

#[cfg(all(test, chi_loom))]
mod loom_models {
    use super::*;
    use crate::loom::sync::Arc;
    use crate::loom::sync::atomic::AtomicU64 as LoomU64;
    use crate::loom::sync::atomic::Ordering::SeqCst;

    fn words() -> Arc<[LoomU64; WORDS]> {
        Arc::new(std::array::from_fn(|_| LoomU64::new(0)))
    }

    /// The supervisor arms while the worker takes and finishes its messages: whenever the
    /// supervisor went to sleep on the bell, the worker rang it.
    #[test]
    fn an_armed_supervisor_is_always_rung() {
        for low in 0..2u64 {
            loom::model(move || {
                let w = words();
                let b = Bell::over(&w[..]);
                b.sent(1);
                b.sent(1);
                let w2 = w.clone();
                let worker = loom::thread::spawn(move || {
                    let b = Bell::over(&w2[..]);
                    let mut rang = false;
                    for _ in 0..2 {
                        b.took_one();
                        rang |= b.due();
                    }
                    rang
                });
                let armed = b.arm(low);
                let rang = worker.join().unwrap();
                assert!(!armed || rang, "armed at low {low} and never rung");
            });
        }
    }

    /// The supervisor wakes, sends one more message, and sleeps on the bell again, while the
    /// worker takes and finishes messages: if the *last* arm succeeded, a ring came after it
    /// (a ring used up by an earlier arm does not count), at the real low mark of 1.
    #[test]
    fn a_rearmed_supervisor_is_rung_for_its_last_arm() {
        loom::model(|| {
            let w = words();
            let epoch = Arc::new(LoomU64::new(0));
            let rung = Arc::new(LoomU64::new(0));
            let b = Bell::over(&w[..]);
            for _ in 0..3 {
                b.sent(1);
            }
            let (w2, e2, r2) = (w.clone(), epoch.clone(), rung.clone());
            let worker = loom::thread::spawn(move || {
                let b = Bell::over(&w2[..]);
                for _ in 0..4 {
                    b.took_one();
                    if b.due() {
                        // The arm this ring answers (or a later one).
                        r2.store(e2.load(SeqCst), SeqCst);
                    }
                }
            });
            epoch.store(1, SeqCst);
            b.arm(1);
            // Woken (by the ring or otherwise): one more message, then sleep again.
            b.disarm();
            b.sent(1);
            epoch.store(2, SeqCst);
            let last = b.arm(1);
            worker.join().unwrap();
            assert!(
                !last || rung.load(SeqCst) == 2,
                "the last arm was never rung"
            );
        });
    }

    /// The worker puts an answer into shared memory while the supervisor arms (or fails to)
    /// and then wakes: either the worker rang, or the supervisor's look after `disarm` (or
    /// after the failed arm) sees the answer. Never an answer that nobody announced and
    /// nobody saw, which a supervisor asleep on the socket alone would never find.
    #[test]
    fn an_answer_in_memory_is_rung_or_seen() {
        for low in 0..2u64 {
            loom::model(move || {
                let w = words();
                let answer = Arc::new(LoomU64::new(0));
                let b = Bell::over(&w[..]);
                b.sent(2);
                let (w2, a2) = (w.clone(), answer.clone());
                let worker = loom::thread::spawn(move || {
                    let b = Bell::over(&w2[..]);
                    b.took_one();
                    a2.store(1, SeqCst);
                    b.answered()
                });
                if b.arm(low) {
                    b.disarm();
                }
                let seen = answer.load(SeqCst) != 0;
                let rang = worker.join().unwrap();
                assert!(seen || rang, "low {low}: an answer neither rung nor seen");
            });
        }
    }

    /// The supervisor arms, forgets the rings that came while it was awake (the eventfd,
    /// modelled as a counter), and rings itself if the request was used up meanwhile: a ring
    /// the worker owed this arm is never lost to the forgetting.
    #[test]
    fn forgetting_old_rings_never_loses_the_ring_an_arm_is_owed() {
        loom::model(|| {
            let w = words();
            let fd = Arc::new(LoomU64::new(0));
            let b = Bell::over(&w[..]);
            b.sent(3);
            let (w2, fd2) = (w.clone(), fd.clone());
            let worker = loom::thread::spawn(move || {
                let b = Bell::over(&w2[..]);
                let mut rang = false;
                for _ in 0..2 {
                    b.took_one();
                    if b.answered() {
                        fd2.fetch_add(1, SeqCst);
                        rang = true;
                    }
                }
                rang
            });
            let armed = b.arm(1);
            if armed {
                fd.swap(0, SeqCst);
                if !b.armed() {
                    fd.fetch_add(1, SeqCst);
                }
            }
            let rang = worker.join().unwrap();
            // Rung after the arm (`answered` rings an armed bell only by using the request
            // up): the sleep must end.
            assert!(
                !armed || b.armed() || fd.load(SeqCst) > 0,
                "the ring this arm was owed is lost (worker rang: {rang})"
            );
        });
    }

    /// A worker that must wait for room to write rings a supervisor that sleeps on the bell.
    #[test]
    fn a_blocked_worker_never_waits_on_a_sleeping_supervisor() {
        loom::model(|| {
            let w = words();
            let b = Bell::over(&w[..]);
            for _ in 0..3 {
                b.sent(1);
            }
            let w2 = w.clone();
            let worker = loom::thread::spawn(move || {
                let b = Bell::over(&w2[..]);
                b.took_one();
                b.blocking()
            });
            let armed = b.arm(0);
            let rang = worker.join().unwrap();
            assert!(
                !armed || rang,
                "the supervisor slept while its worker waited for room"
            );
        });
    }
}
