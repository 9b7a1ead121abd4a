//! The worker's reply thread: answers finished tasks in batches, each batch one transaction
//! (`XADD` result + `EXPIRE` + `XACK` + `XDEL`, and the dead letter if any). The slot of a
//! local run is freed when the run ends (by its callback, or when its outcome arrives here),
//! before the answer is sent; the slot of a task answered without a run, once it is sent. A
//! task that goes back to the queue instead (a panicked run to retry, an entry a stopping
//! worker, or one handing work to an idle peer, takes back before it starts) is re-added and
//! acknowledged by one script in the same transaction: it is never both answered and queued,
//! nor neither.

use super::{Shared, Stop};
use crate::codec::{self, Outcome, WireError};
use crate::conn::{self, Link, lock};
use crate::keys::{self, GROUP};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Re-adds entry `ARGV[2]` of stream `KEYS[1]` at the tail with `tries` = `ARGV[3]`, then
/// acknowledges (group `ARGV[1]`) and deletes the old one; an entry already gone is only
/// acknowledged. One script, so atomic: the task is in the queue exactly once.
const REQUEUE: &str = r"
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if #e == 0 then return false end
local f, out = e[1][2], {}
for i = 1, #f, 2 do
  if f[i] ~= 'tries' then out[#out + 1] = f[i]; out[#out + 1] = f[i + 1] end
end
out[#out + 1] = 'tries'; out[#out + 1] = ARGV[3]
redis.call('XDEL', KEYS[1], ARGV[2])
return redis.call('XADD', KEYS[1], '*', unpack(out))
";

/// A task that was past its attempts: what the dead-letter stream keeps.
#[derive(Debug)]
pub(super) struct Dead {
    pub(super) name: String,
    pub(super) attempts: u64,
}

/// Where and how a task is answered.
#[derive(Debug, Clone)]
pub(super) struct ReplyTo {
    pub(super) task_id: String,
    /// The client's result stream.
    pub(super) key: String,
    pub(super) ttl: u64,
    pub(super) max_attempts: u64,
    /// A panicked run goes back to the queue while attempts are left.
    pub(super) retry_on_panic: bool,
}

/// One answer to send, an entry to drop (no [`ReplyTo`]), or an entry to put back.
#[derive(Debug)]
pub(super) struct Reply {
    entry: String,
    to: Option<ReplyTo>,
    attempt: u64,
    outcome: Outcome,
    dead: Option<Dead>,
    /// Put the entry back in the queue with this many runs counted, instead of answering.
    requeue: Option<u64>,
    /// Its slot is released once it is sent (false: released already, or by another reply).
    owns_slot: bool,
    /// The outcome of a local run: its slot is released as soon as the run ends (by the
    /// run's callback, or else when the reply thread sees it), before the answer is sent.
    ran: bool,
}

impl Reply {
    pub(super) fn answer(
        entry: &str,
        to: &ReplyTo,
        attempt: u64,
        outcome: Outcome,
        dead: Option<Dead>,
    ) -> Reply {
        Reply {
            entry: entry.to_owned(),
            to: Some(to.clone()),
            attempt,
            outcome,
            dead,
            requeue: None,
            owns_slot: true,
            ran: false,
        }
    }

    pub(super) fn drop_entry(entry: String) -> Reply {
        Reply {
            entry,
            to: None,
            attempt: 0,
            outcome: Ok(Vec::new()),
            dead: None,
            requeue: None,
            owns_slot: true,
            ran: false,
        }
    }

    /// Puts `entry` back in the queue, `tries` runs counted (a stopping worker that gives up
    /// a task it could not finish); `owns_slot` if the task still held its slot.
    pub(super) fn requeue(entry: String, tries: u64, owns_slot: bool) -> Reply {
        Reply {
            requeue: Some(tries),
            owns_slot,
            ..Reply::drop_entry(entry)
        }
    }

    /// The outcome of the local run this reply was made for.
    pub(super) fn with_outcome(self, outcome: Outcome) -> Reply {
        Reply {
            outcome,
            ran: true,
            ..self
        }
    }

    /// The queue entry this reply is for.
    pub(super) fn entry(&self) -> &str {
        &self.entry
    }

    /// The same answer, releasing a slot once sent only if `owns_slot`.
    pub(super) fn with_slot(self, owns_slot: bool) -> Reply {
        Reply { owns_slot, ..self }
    }

    /// A panicked run of a task that asked for retries, with attempts left.
    fn retries_panic(&self) -> bool {
        matches!(self.outcome, Err(WireError::Panicked(_)))
            && self
                .to
                .as_ref()
                .is_some_and(|t| t.retry_on_panic && self.attempt < t.max_attempts)
    }
}

/// Runs until the worker has wound down (see [`Shared::finished`]) and everything received
/// is answered.
pub(super) fn run(s: &Shared, rx: &Receiver<Reply>) {
    let mut link = Link::new(s.target.clone(), &s.keys.tasks, Duration::from_secs(10));
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r,
            // ORDERING: SeqCst pairs with the store in `Worker::run`, made once nothing more
            // can be sent that must be answered.
            Err(RecvTimeoutError::Timeout) if s.finished.load(Ordering::SeqCst) => return,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < 256
            && let Ok(r) = rx.try_recv()
        {
            batch.push(r);
        }
        let batch = decide(s, batch);
        if batch.is_empty() {
            continue;
        }
        send(s, &mut link, &batch);
        let mut st = lock(&s.state);
        let owned = batch.iter().filter(|r| r.owns_slot).count();
        for r in &batch {
            if st
                .held
                .remove(&r.entry)
                .is_some_and(|h| h.stop == Stop::GiveUp)
            {
                // Its run may still end; that late outcome is not an answer.
                st.given_up.insert(r.entry.clone());
            }
        }
        s.release_slots(&mut st, owned);
        // Woken also when nothing was released: a stopping worker waits for `held` to empty.
        s.changed.notify_all();
    }
}

/// Turns outcomes into what is sent: a panicked run with attempts left, or a waiting task taken
/// back to hand back (see `stop::hand_back`), goes back to the queue; the late outcome of a task
/// already given up is dropped.
fn decide(s: &Shared, batch: Vec<Reply>) -> Vec<Reply> {
    let mut st = lock(&s.state);
    let mut out = Vec::with_capacity(batch.len());
    let mut freed = 0;
    for mut r in batch {
        if r.ran {
            // Its process is free now: the fetch loop may read the next task while this
            // answer travels. The slot goes back once (a stopping worker may have taken it).
            r.owns_slot = false;
            freed += usize::from(st.take_slot(&r.entry));
        }
        let given_up = st.given_up.remove(&r.entry)
            || st
                .held
                .get(&r.entry)
                .is_some_and(|h| h.stop == Stop::GiveUp);
        if r.requeue.is_none() && given_up {
            continue; // the late outcome of a task already handed back
        }
        let handed_back = st.held.get(&r.entry).and_then(|h| {
            let cancelled = matches!(r.outcome, Err(WireError::Cancelled));
            // Taken back before it started (see `stop::hand_back`): this delivery was not a run.
            (h.stop == Stop::HandBack && cancelled).then(|| r.attempt.saturating_sub(1))
        });
        if handed_back.is_some() {
            r.requeue = handed_back;
        } else if r.requeue.is_none() && r.retries_panic() {
            tracing::info!(worker = %s.id, entry = %r.entry, attempt = r.attempt, "a panicked run goes back to the queue");
            r.requeue = Some(r.attempt);
        }
        out.push(r);
    }
    s.release_slots(&mut st, freed);
    out
}

/// Sends one batch, retrying across reconnects until Redis takes it (answers are never
/// dropped: the task would otherwise run again elsewhere after the lease).
fn send(s: &Shared, link: &mut Link, batch: &[Reply]) {
    let sec = conn::now_ms() / 1000;
    let done_key = s.keys.done(sec);
    let answered = batch.iter().filter(|r| r.requeue.is_none()).count();
    loop {
        let r = link.call(Some(Instant::now() + Duration::from_secs(5)), |c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for r in batch {
                match r.requeue {
                    Some(tries) => {
                        // EVAL, not EVALSHA: inside MULTI a missing script cannot be loaded
                        // on demand. Off the hot path (retries and hand-backs only).
                        pipe.cmd("EVAL")
                            .arg(REQUEUE)
                            .arg(1)
                            .arg(&s.keys.tasks)
                            .arg(GROUP)
                            .arg(&r.entry)
                            .arg(tries)
                            .ignore();
                    }
                    None => add_reply(&mut pipe, s, r),
                }
            }
            pipe.cmd("INCRBY").arg(&done_key).arg(answered).ignore();
            pipe.cmd("EXPIRE")
                .arg(&done_key)
                .arg(keys::DONE_COUNTER_TTL)
                .ignore();
            pipe.query::<()>(c)
        });
        match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                tracing::error!(worker = %s.id, "answering {} tasks failed: {e}", batch.len());
                return;
            }
            Err(e) => tracing::warn!(worker = %s.id, "Redis unreachable, will retry: {}", e.0),
        }
    }
}

fn add_reply(pipe: &mut redis::Pipeline, s: &Shared, r: &Reply) {
    use keys::result as f;
    if let Some(to) = &r.to {
        let (kind, payload) = match &r.outcome {
            Ok(bytes) => (f::OK, bytes.clone()),
            Err(e) => (f::ERR, codec::encode(e).unwrap_or_default()),
        };
        pipe.cmd("XADD")
            .arg(&to.key)
            .arg("*")
            .arg(f::ID)
            .arg(&to.task_id)
            .arg(f::KIND)
            .arg(kind)
            .arg(f::ATTEMPT)
            .arg(r.attempt)
            .arg(f::WORKER)
            .arg(&s.id)
            .arg(f::PAYLOAD)
            .arg(payload)
            .ignore();
        pipe.cmd("EXPIRE").arg(&to.key).arg(to.ttl.max(1)).ignore();
        if let Some(dead) = &r.dead {
            use keys::dead as d;
            pipe.cmd("XADD")
                .arg(&s.keys.dead)
                .arg("MAXLEN")
                .arg("~")
                .arg(keys::DEAD_LETTER_MAX)
                .arg("*")
                .arg(d::ID)
                .arg(&to.task_id)
                .arg(d::NAME)
                .arg(&dead.name)
                .arg(d::ATTEMPTS)
                .arg(dead.attempts)
                .arg(d::HOLDER)
                .arg(&s.id)
                .ignore();
        }
    }
    pipe.cmd("XACK")
        .arg(&s.keys.tasks)
        .arg(GROUP)
        .arg(&r.entry)
        .ignore();
    pipe.cmd("XDEL").arg(&s.keys.tasks).arg(&r.entry).ignore();
}
