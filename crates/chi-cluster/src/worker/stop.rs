//! A stopping worker's wind-down: the tasks it holds that have not started go back to the
//! queue at once (another worker takes them without waiting for this one's lease to lapse);
//! the running ones get the stop grace to finish and be answered; past it they are stopped
//! and handed back, counted as a run. Nothing is left held when the worker leaves the group.

use super::reply::Reply;
use super::{Held, Shared, State, Stop};
use crate::conn::lock;
use std::sync::mpsc::Sender;
use std::time::Instant;

/// Returns once the worker holds nothing; true if some task had to be given up.
pub(super) fn wind_down(s: &Shared, tx: &Sender<Reply>) -> bool {
    hand_back_waiting(s);
    if wait_empty(s, Some(Instant::now() + s.stop_grace)) {
        return false;
    }
    give_up(s, tx);
    wait_empty(s, None);
    true
}

/// Cancels every held task that has not started; the reply thread puts each one back in the
/// queue. (A task that starts meanwhile runs on and is answered.)
fn hand_back_waiting(s: &Shared) {
    let n = hand_back(&mut lock(&s.state), usize::MAX);
    if n > 0 {
        tracing::info!(worker = %s.id, "stopping: handing back {n} tasks that had not started");
    }
}

/// Cancels up to `limit` held tasks that have not started, the last read first (they would
/// start last here), marked so that the reply thread puts each back in the queue instead of
/// answering it; how many. Also how a prefetching worker gives waiting tasks to idle peers.
pub(super) fn hand_back(st: &mut State, limit: usize) -> usize {
    let mut waiting: Vec<(u64, u64, &mut Held)> = st
        .held
        .iter_mut()
        .filter(|(_, h)| h.waits())
        .map(|(e, h)| {
            let (ms, seq) = e.split_once('-').unwrap_or((e, "0"));
            (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0), h)
        })
        .collect();
    waiting.sort_unstable_by_key(|w| std::cmp::Reverse((w.0, w.1)));
    let mut n = 0;
    for (_, _, h) in waiting {
        if n == limit {
            break;
        }
        // Marked first: the cancel may deliver the outcome right here. Only a pending task is
        // taken back, never a run stopped: the `Cancelled` outcome of a task marked so was
        // not a run.
        h.stop = Stop::HandBack;
        if h.local.as_ref().is_some_and(|l| l.cancel_pending()) {
            n += 1;
        } else {
            h.stop = Stop::Serve; // it started or finished after all
        }
    }
    n
}

/// Waits until nothing is held (true) or `deadline` passes (false).
fn wait_empty(s: &Shared, deadline: Option<Instant>) -> bool {
    let mut st = lock(&s.state);
    while !st.held.is_empty() {
        let Some(d) = deadline else {
            st = s.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        st = s
            .changed
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Past the grace: every held task goes back to the queue with this run counted, and its
/// local run is stopped (a process-pool task is killed; a thread cannot be).
fn give_up(s: &Shared, tx: &Sender<Reply>) {
    let mut st = lock(&s.state);
    tracing::warn!(
        worker = %s.id,
        "stop grace over: handing back {} running tasks",
        st.held.len()
    );
    for (entry, h) in &mut st.held {
        if h.stop == Stop::GiveUp {
            continue;
        }
        h.stop = Stop::GiveUp;
        let owns_slot = std::mem::take(&mut h.slot); // see `State::take_slot`
        let _ = tx.send(Reply::requeue(entry.clone(), h.attempt, owns_slot));
        if let Some(local) = &h.local {
            local.cancel();
        }
    }
}
