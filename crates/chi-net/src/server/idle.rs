//! The idle timers of an event or uring loop.
//!
//! A connection records when it last read or wrote a byte, as milliseconds since the loop's
//! epoch (a store per read or write, nothing more). The loop keeps a heap of entries
//! (deadline, connection id, slot), earliest first, at most one per connection. When an entry
//! is due, the connection's last activity decides: idle for the whole timeout, it is closed;
//! active since, the entry comes back at last activity + timeout.
//!
//! An entry goes stale when its connection closes, and is recognised by the id (its slot may
//! hold a newer connection by then). Stale entries are not searched for at each close; they
//! are dropped all at once when they outnumber the open connections ([`IdleTimers::compact`]),
//! so the heap never holds more than twice the open connections. Without that, a long timeout
//! and many short connections would keep an entry for every connection closed within the
//! timeout.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::deadline_after;
use super::state::Shared;

/// A loop's idle deadlines. Their number is published in `ServerStats::idle_timers`.
pub(crate) struct IdleTimers {
    /// `None`: connections never time out, and there are no entries.
    timeout: Option<Duration>,
    /// Last activity is counted in milliseconds since this instant.
    epoch: Instant,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    shared: Arc<Shared>,
}

impl IdleTimers {
    pub(crate) fn new(timeout: Option<Duration>, shared: Arc<Shared>) -> IdleTimers {
        IdleTimers {
            timeout,
            epoch: Instant::now(),
            heap: BinaryHeap::new(),
            shared,
        }
    }

    /// `now` as milliseconds since the epoch, rounded up, so a deadline computed from it is
    /// never early.
    pub(crate) fn millis(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// Starts the timer of connection `id` in `slot`, opened at `now`. A deadline past what
    /// an `Instant` can hold is never reached: no entry.
    pub(crate) fn start(&mut self, now: Instant, id: u64, slot: usize) {
        if let Some(at) = self.timeout.and_then(|t| deadline_after(now, t)) {
            self.push(at, id, slot);
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the entries due at `now`. `last_active(slot, id)` gives the last activity of
    /// connection `id` if `slot` still holds it and it is still being served; the entries of
    /// the others are dropped. Returns the slots whose connection was idle for the whole
    /// timeout (the caller closes them); the entries of the rest are moved to their new
    /// deadline.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        last_active: impl Fn(usize, u64) -> Option<u64>,
    ) -> Vec<usize> {
        let mut idle = Vec::new();
        let Some(timeout) = self.timeout else {
            return idle;
        };
        while let Some(&Reverse((at, id, slot))) = self.heap.peek()
            && at <= now
        {
            self.pop();
            let Some(last) = last_active(slot, id) else {
                continue; // closed, closing, or the slot holds another connection now
            };
            let due = self
                .epoch
                .checked_add(Duration::from_millis(last))
                .and_then(|active| deadline_after(active, timeout));
            match due {
                Some(due) if due > now => self.push(due, id, slot),
                Some(_) => idle.push(slot),
                None => {} // never idle for long enough: no entry
            }
        }
        idle
    }

    /// Call after each close, with the connections still open: once the entries outnumber
    /// twice those, keeps only the entries of connections `is_open(slot, id)` says are still
    /// there. Each open connection has at most one entry, so afterwards the heap holds at
    /// most `open` entries, and the next compaction needs as many closes again (amortised
    /// O(log n) per close).
    pub(crate) fn compact(&mut self, open: usize, is_open: impl Fn(usize, u64) -> bool) {
        if self.heap.len() <= 2 * open {
            return;
        }
        let before = self.heap.len();
        self.heap
            .retain(|Reverse((_, id, slot))| is_open(*slot, *id));
        // ORDERING: Relaxed, a statistic.
        self.shared
            .idle_timers
            .fetch_sub(before - self.heap.len(), Ordering::Relaxed);
    }

    fn push(&mut self, at: Instant, id: u64, slot: usize) {
        self.heap.push(Reverse((at, id, slot)));
        // ORDERING: Relaxed, a statistic.
        self.shared.idle_timers.fetch_add(1, Ordering::Relaxed);
    }

    fn pop(&mut self) {
        if self.heap.pop().is_some() {
            // ORDERING: Relaxed, a statistic.
            self.shared.idle_timers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for IdleTimers {
    fn drop(&mut self) {
        // ORDERING: Relaxed, a statistic.
        self.shared
            .idle_timers
            .fetch_sub(self.heap.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn entries(shared: &Shared) -> usize {
        shared.stats().idle_timers
    }

    #[test]
    fn an_entry_costs_at_most_40_bytes() {
        assert!(std::mem::size_of::<Reverse<(Instant, u64, usize)>>() <= 40);
    }

    #[test]
    fn entries_of_closed_connections_are_compacted_past_twice_the_open_ones() {
        let shared = Arc::new(Shared::default());
        let mut timers = IdleTimers::new(Some(HOUR), Arc::clone(&shared));
        let now = Instant::now();
        // Connections 0..6 in slots 0..6; 0..4 close, 4 and 5 stay open.
        for id in 0..6 {
            timers.start(now, id, id as usize);
        }
        let still_open = |_slot: usize, id: u64| id >= 4;
        timers.compact(6, still_open); // nothing closed yet
        timers.compact(4, still_open); // 6 entries for 4 open: within the bound
        assert_eq!(entries(&shared), 6);
        timers.compact(2, still_open); // 6 entries for 2 open: compacted to the 2 live ones
        assert_eq!(entries(&shared), 2);
        // A slot reused by a newer connection keeps only that one's entry.
        timers.start(now, 9, 4);
        timers.compact(1, |slot, id| (slot, id) == (4, 9));
        assert_eq!(entries(&shared), 1);
        drop(timers);
        assert_eq!(entries(&shared), 0);
    }

    #[test]
    fn due_entries_close_the_idle_and_move_the_active() {
        let shared = Arc::new(Shared::default());
        let timeout = Duration::from_millis(100);
        let mut timers = IdleTimers::new(Some(timeout), Arc::clone(&shared));
        let start = timers.epoch;
        for id in 0..3 {
            timers.start(start, id, id as usize);
        }
        let later = start + timeout;
        let active_ms = timers.millis(start + timeout / 2);
        // 0 was idle since the start, 1 was active half-way, 2 has closed.
        let last = |_slot: usize, id: u64| match id {
            0 => Some(0),
            1 => Some(active_ms),
            _ => None,
        };
        assert_eq!(timers.expire(later, last), vec![0]);
        assert_eq!(entries(&shared), 1);
        assert_eq!(
            timers.next_deadline(),
            Some(start + Duration::from_millis(active_ms) + timeout)
        );
        // Nothing is due before that.
        assert_eq!(timers.expire(later, last), Vec::<usize>::new());
    }

    #[test]
    fn no_timeout_or_one_past_the_clock_keeps_no_entries() {
        let shared = Arc::new(Shared::default());
        let now = Instant::now();
        let mut never = IdleTimers::new(None, Arc::clone(&shared));
        never.start(now, 0, 0);
        let mut huge = IdleTimers::new(Some(Duration::MAX), Arc::clone(&shared));
        huge.start(now, 0, 0);
        assert_eq!(entries(&shared), 0);
        assert_eq!((never.next_deadline(), huge.next_deadline()), (None, None));
    }
}
