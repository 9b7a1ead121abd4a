//! The parent-side allocation of a process-pool task: the shared [`Core`] plus what the pool
//! needs to cancel it where it is (queued, sent but not started, or running in a worker).
//!
//! Who completes the task (exactly one party calls `core.complete`):
//! - the canceller, if its `core.try_cancel()` won (the task had not been marked running);
//! - otherwise the supervisor, in [`JobCell::deliver`]: it wins `core.try_start()` when it
//!   marks the task running or when the outcome arrives, whichever is first.
//!
//! A `cancel` that comes too late for `try_cancel` (the supervisor owns the task) sets
//! `CANCEL_REQ` unless the supervisor already set `COMPLETING`; exactly one of the two
//! `fetch_or`s sees the other, so either the cancel "wins" (the outcome is `Cancelled`, and the
//! worker is stopped: the message revoked if it has not started, else the worker killed) or
//! it returns false and the real outcome stands.
//!
//! `placement` says where the message went (worker, claim slot, sequence number); it is set
//! by the dispatcher *after* the claim word is published and *only if* the task is not
//! cancelled, both under the placement lock, so a canceller that won `try_cancel` and then
//! reads the placement either sees the message's slot (and revokes or kills it) or the
//! dispatcher sees the cancel and never sends it.

use super::link::Link;
use super::protocol::{self, ARG_CODEC, Items, OK, PANICKED, RESULT_CODEC};
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::{Mutex, MutexGuard};
use crate::task::{Core, TaskCell};
use crate::{Cause, TaskError};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The supervisor won `try_start`: it owns completion.
const OWNED: usize = 1;
/// `cancel` came after `try_start`: complete with `Cancelled` whatever arrives.
const CANCEL_REQ: usize = 1 << 1;
/// The supervisor is completing with the real outcome: a later cancel is too late.
const COMPLETING: usize = 1 << 2;

/// Where a message is in flight.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// The worker (weak: a finished task must not keep a dead worker's descriptors open).
    pub(crate) link: Weak<Link>,
    /// The claim slot.
    pub(crate) slot: usize,
    /// The message's sequence number on that worker.
    pub(crate) seq: u64,
}

/// How a message ended, as the supervisor hands it to the task.
#[derive(Debug)]
pub(crate) enum Delivery<'a> {
    /// The worker answered with these result items.
    Items(&'a [u8]),
    /// It failed as a whole (worker died, timed out, the pool could not start workers).
    Failed(TaskError),
    /// The worker skipped it: it was revoked by a cancel.
    Skipped,
}

/// The type-erased side of a task that the pool's queues and supervisors hold.
pub(crate) trait JobCell: Send + Sync {
    /// Cancelled (or asked to be): do not send it.
    fn is_cancelled(&self) -> bool;
    /// Records where the message was sent (`Some`), or that it is back in the queue (`None`).
    /// False if the task is cancelled: then it must not be sent.
    fn place(&self, at: Option<Placement>) -> bool;
    /// The message became the first in flight on its worker: mark the task running.
    fn mark_running(&self);
    /// Completes the task with `d`, unless a canceller owns it.
    fn deliver(&self, d: Delivery<'_>);
    /// Cancels the task only if it has not started anywhere (never kills a worker). True if
    /// this call cancelled it.
    fn cancel_unstarted(&self) -> bool;
    /// Cancels the task wherever it is, killing its worker if it is running (`cancel()`).
    fn stop(&self);
    /// Takes the message back from the worker it was sent to, if that worker has not started
    /// it: revoked there (the worker skips it), the task is queued again (no placement).
    /// False if it started, or its worker is gone.
    fn take_back(&self) -> bool;
}

/// One message of work: the function, its items, and the task(s) waiting for it.
pub(crate) struct Job {
    /// The task side.
    pub(crate) cell: Arc<dyn JobCell>,
    /// The function.
    pub(crate) func: protocol::FnRef,
    /// How many items.
    pub(crate) count: u32,
    /// The encoded argument items.
    pub(crate) items: Vec<u8>,
    /// This task's own time limit, in place of the pool's `task_timeout`.
    pub(crate) timeout: Option<Duration>,
}

impl Job {
    /// The time limit that applies to this message: its own, else the pool's.
    pub(crate) fn limit(&self, pool_limit: Option<Duration>) -> Option<Duration> {
        self.timeout.or(pool_limit)
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("count", &self.count)
            .field("bytes", &self.items.len())
            .finish()
    }
}

/// A process-pool task: core, decoder, cancel flags and placement.
pub(crate) struct ProcCell<T> {
    core: Core<T>,
    decode: fn(&[u8]) -> Result<T, TaskError>,
    flags: AtomicUsize,
    placement: Mutex<Option<Placement>>,
}

impl<T: Send> ProcCell<T> {
    /// A pending task whose result items are turned into `T` by `decode`.
    pub(crate) fn new(decode: fn(&[u8]) -> Result<T, TaskError>) -> Self {
        ProcCell {
            core: Core::new(),
            decode,
            flags: AtomicUsize::new(0),
            placement: Mutex::new(None),
        }
    }

    fn lock_placement(&self) -> MutexGuard<'_, Option<Placement>> {
        self.placement.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_placement(&self, at: Option<Placement>) {
        *self.lock_placement() = at;
    }

    /// Stops the message wherever it is: revoked if not started, else its worker killed.
    ///
    /// Under the placement lock: a message that failed to encode gives its claim slot and
    /// sequence number to the next message, but only after its placement is cleared (which
    /// waits for this lock), so the slot revoked here is never another task's.
    fn stop_in_worker(&self) {
        let g = self.lock_placement();
        if let Some(p) = g.as_ref()
            && let Some(link) = p.link.upgrade()
        {
            link.revoke_or_kill(p.slot, p.seq);
        }
    }
}

impl<T: Send> TaskCell<T> for ProcCell<T> {
    fn core(&self) -> &Core<T> {
        &self.core
    }

    fn cancel(&self) -> bool {
        use crate::task::TransitionToCancelled as C;
        match self.core.try_cancel() {
            C::Success => {
                self.stop_in_worker();
                self.set_placement(None);
                self.core.complete(Err(TaskError::Cancelled));
                true
            }
            C::AlreadyCancelled => true,
            C::TooLate => {
                // ORDERING: AcqRel on the flags word: one total order with the supervisor's
                // `fetch_or(COMPLETING)`, so exactly one of us sees the other's bit.
                let prev = self.flags.fetch_or(CANCEL_REQ, Ordering::AcqRel);
                if prev & COMPLETING != 0 {
                    return false;
                }
                self.stop_in_worker();
                true
            }
        }
    }

    fn cancel_pending(&self) -> bool {
        !matches!(self.cancel_if_unstarted(), Unstarted::No)
    }
}

/// What [`ProcCell::cancel_if_unstarted`] did.
enum Unstarted {
    /// Cancelled now, and completed as such.
    Won,
    /// Cancel requested now for a message no worker started (the first in flight, revoked, or
    /// requeued after its worker died): the skip, or the dispatcher, completes it cancelled.
    Requested,
    /// Someone cancelled (or asked to) before.
    Already,
    /// Started, finished, being delivered, or its worker is gone: left alone.
    No,
}

impl<T: Send> ProcCell<T> {
    /// Cancels the task only if no worker has started it (`cancel_pending`, and the pool's
    /// `shutdown_now`). The whole decision is under the placement lock: the dispatcher
    /// places a message, and a delivery clears the placement and sets COMPLETING, under the
    /// same lock, so the placement read here stays true until the cancel is settled. (Read
    /// outside it, it could be stale: the message requeued after its worker died and sent to
    /// another one, or its slot reused after an encode failure, and revoking the stale slot
    /// would report "cancelled" for a message that then runs.)
    fn cancel_if_unstarted(&self) -> Unstarted {
        use crate::task::TransitionToCancelled as C;
        let mut g = self.lock_placement();
        if let Some(p) = g.as_ref()
            && !p.link.upgrade().is_some_and(|l| l.revoke(p.slot, p.seq))
        {
            return Unstarted::No; // started, finished, or its worker is gone
        }
        // The worker will never start it (or it is still queued): cancel the task itself.
        match self.core.try_cancel() {
            C::Success => {
                *g = None;
                drop(g);
                self.core.complete(Err(TaskError::Cancelled));
                Unstarted::Won
            }
            C::AlreadyCancelled => Unstarted::Already,
            C::TooLate => {
                // Marked running but not started: the first in flight (revoked above), or
                // requeued after its worker died; or being delivered (COMPLETING set).
                // ORDERING: as in `cancel`.
                let prev = self.flags.fetch_or(CANCEL_REQ, Ordering::AcqRel);
                if prev & COMPLETING != 0 {
                    Unstarted::No
                } else if prev & CANCEL_REQ != 0 {
                    Unstarted::Already
                } else {
                    Unstarted::Requested
                }
            }
        }
    }
}

impl<T: Send> JobCell for ProcCell<T> {
    fn is_cancelled(&self) -> bool {
        // ORDERING: Acquire pairs with the canceller's AcqRel; a stale "not cancelled" is
        // caught by `place`, which re-checks under the placement lock.
        self.core.snapshot().is_cancelled() || self.flags.load(Ordering::Acquire) & CANCEL_REQ != 0
    }

    fn place(&self, at: Option<Placement>) -> bool {
        let mut g = self.lock_placement();
        if at.is_some() && self.is_cancelled() {
            return false;
        }
        *g = at;
        true
    }

    fn mark_running(&self) {
        // ORDERING: Relaxed: OWNED is read and written only by whoever holds the `Job` (it moves
        // between the queue, a worker's in-flight list and a deliverer under the pool lock,
        // which orders those accesses); the core's state word orders everything else.
        if self.flags.load(Ordering::Relaxed) & OWNED != 0 {
            return;
        }
        if self.core.try_start() == crate::task::TransitionToRunning::Success {
            // ORDERING: see above.
            self.flags.fetch_or(OWNED, Ordering::Relaxed);
        }
    }

    fn deliver(&self, d: Delivery<'_>) {
        self.mark_running();
        // The placement is cleared and COMPLETING set under one lock: `cancel_unstarted`
        // (which decides under it) then sees a task that has no placement either before
        // delivery began, or with COMPLETING, never a finished task that looks unsent.
        let prev = {
            let mut g = self.lock_placement();
            *g = None;
            // ORDERING: Relaxed: see `mark_running`; we hold the `Job`.
            if self.flags.load(Ordering::Relaxed) & OWNED == 0 {
                return; // a canceller won try_cancel and completes the task itself
            }
            // ORDERING: AcqRel: one total order with the canceller's `fetch_or(CANCEL_REQ)`.
            self.flags.fetch_or(COMPLETING, Ordering::AcqRel)
        };
        let outcome = if prev & CANCEL_REQ != 0 {
            Err(TaskError::Cancelled)
        } else {
            match d {
                Delivery::Items(bytes) => (self.decode)(bytes),
                Delivery::Failed(e) => Err(e),
                Delivery::Skipped => Err(TaskError::Cancelled),
            }
        };
        self.core.complete(outcome);
    }

    fn stop(&self) {
        TaskCell::cancel(self);
    }

    fn take_back(&self) -> bool {
        // Under the placement lock, as a cancel decides: a canceller then either revoked the
        // message first (the revoke below answers true for a revoked word; the task is
        // cancelled, and the dispatcher, seeing that, never sends it again) or finds no
        // placement and cancels the task as queued.
        let mut g = self.lock_placement();
        let back = g
            .as_ref()
            .is_some_and(|p| p.link.upgrade().is_some_and(|l| l.revoke(p.slot, p.seq)));
        if back {
            *g = None;
        }
        back
    }

    fn cancel_unstarted(&self) -> bool {
        // True only for the call that cancelled it (`shutdown_now` counts them).
        matches!(
            self.cancel_if_unstarted(),
            Unstarted::Won | Unstarted::Requested
        )
    }
}

// ===== decoders =====

/// The error an item with a failure tag stands for.
fn item_error(tag: u8, bytes: &[u8]) -> TaskError {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match tag {
        PANICKED => TaskError::panicked(text),
        ARG_CODEC | RESULT_CODEC => TaskError::codec(text),
        t => TaskError::codec(format!("unknown result tag {t} from the worker")),
    }
}

/// Decodes one result item.
pub(crate) fn decode_item<R: DeserializeOwned>(tag: u8, bytes: &[u8]) -> Result<R, TaskError> {
    if tag != OK {
        return Err(item_error(tag, bytes));
    }
    protocol::decode::<R>(bytes).map_err(|e| {
        TaskError::Codec(Cause::with_source(
            "the result did not decode in the pool",
            e,
        ))
    })
}

/// The decoder of a `submit` task: the message's single result item.
pub(crate) fn decode_one<R: DeserializeOwned>(items: &[u8]) -> Result<R, TaskError> {
    match Items::new(items).next() {
        Some(Ok((tag, bytes))) => decode_item(tag, bytes),
        Some(Err(e)) => Err(TaskError::Codec(Cause::with_source(
            "a malformed answer from the worker",
            e,
        ))),
        None => Err(TaskError::codec("the worker sent no result")),
    }
}

/// The raw result items of one `map` chunk, decoded item by item by the consumer.
#[derive(Debug)]
pub(crate) struct ChunkOut(pub(crate) Vec<u8>);

/// The decoder of a `map` chunk: keeps the bytes for the consumer to decode.
pub(crate) fn keep_chunk(items: &[u8]) -> Result<ChunkOut, TaskError> {
    Ok(ChunkOut(items.to_vec()))
}
