//! The dispatch state, shared by the pool's handles and its supervisors: the queue of messages
//! not yet sent, each worker slot's messages in flight, and the rules that move messages
//! between them (dispatch, results, deaths, start-up failures, shutdown).
//!
//! One lock guards it all. Everything done under it is short and never blocks: sends are
//! non-blocking (see `link.rs`), and tasks are completed (which runs done-callbacks) only
//! after the lock is released.
//!
//! Pipelining: a worker gets up to `depth` messages ahead, so it never waits for the parent
//! between tasks; `depth` follows the measured time per message (about 4 ms of queued work,
//! between 2 and the ring size, and at most the pool's `max_in_flight` when set), so slow
//! tasks do not sit behind each other on one worker, and a worker with nothing left takes
//! over what still waits on another (`rebalance`). With `max_in_flight` 1 a message goes only
//! to an idle worker. The worker runs messages in order,
//! so the first message in flight is the only one that can be running: it is marked running,
//! it is the one a timeout measures, and, when the worker dies, the claim ring tells which
//! messages never started (they go back to the front of the queue) and which one did (it fails
//! with `WorkerDied`).

use super::cell::{Delivery, Job, Placement};
use super::link::Link;
use super::protocol::{self, DoneHeader, DoneStatus, FrameBuf, FromWorker, InitCall, RunHeader};
use super::ring::{PENDING, REVOKED, STARTED};
use super::sys::{self, fd::EventFd};
use crate::loom::sync::{Condvar, Mutex, MutexGuard};
use crate::{Cause, ExitReason, TaskError};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Claim slots per worker: the most messages one worker can have in flight.
pub(crate) const RING_SLOTS: usize = crate::limits::MAX_IN_FLIGHT;
/// How much queued work (in nanoseconds of measured time per message) a worker is given:
/// 4 ms, so that with the doorbell rung at half of it one supervisor wake-up serves about
/// 2 ms of results (BENCHMARKS.md §2). A deep queue costs no waiting behind a long task:
/// a worker with nothing left takes over what waits on another one ([`State::rebalance`]).
const TARGET_QUEUED_NS: u64 = 4_000_000;
/// The least pipelining depth at which a supervisor sleeps on the doorbell (rung at half of
/// it): below it a wake-up would serve a single result anyway.
const BELL_MIN_DEPTH: usize = 4;
/// The least measured work a worker must still have queued when it rings: less, and it could
/// run dry before its supervisor is back with more (a wake-up on a busy machine takes tens of
/// microseconds). Tasks of a few microseconds do without the bell: their supervisor finds
/// several answers per wake-up anyway.
const BELL_MIN_SLACK_NS: u64 = 250_000;
/// The shortest and longest sleep on the doorbell: twice the measured time the worker needs
/// to reach the ring, within these bounds. A worker rings only after finishing messages; if
/// it is inside a long one, the results it finished before it are read when the sleep ends,
/// not when the long one does (and the next sleep watches the socket again).
const BELL_SLEEP: std::ops::Range<Duration> = Duration::from_millis(2)..Duration::from_millis(4);
/// First delay after a failed start; doubles per consecutive failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest delay between start attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The settings a built pool runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) max_tasks_per_worker: Option<u64>,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) init: Option<InitCall>,
    pub(crate) queue_bound: Option<usize>,
    pub(crate) max_message: usize,
    pub(crate) startup_timeout: Duration,
    /// The most messages sent ahead to one worker, over the adaptive [`depth`] (the ring
    /// size when not set). A plain number, resolved once at build: no `Option` on this path.
    pub(crate) max_in_flight: usize,
    pub(crate) program: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Taking work.
    Open,
    /// Shut down: no new work; queued work still runs, then the workers exit.
    Closed,
}

/// A message on a worker.
#[derive(Debug)]
struct InFlight {
    /// `None` once an idle worker took the message over (see [`State::rebalance`]): this
    /// worker skips it, and its answer only moves the queue on.
    job: Option<Job>,
    seq: u64,
    slot: usize,
    /// This message's worker is being killed because it ran past the task timeout.
    timed_out: bool,
}

/// One worker place and its current process.
#[derive(Debug)]
struct Slot {
    /// The worker, once it has finished starting; `None` while (re)starting.
    link: Option<Arc<Link>>,
    in_flight: VecDeque<InFlight>,
    next_seq: u64,
    /// Messages sent to the current process (for `max_tasks_per_worker`).
    sent: u64,
    /// Takes no more messages; exits once the ones in flight are answered.
    retiring: bool,
    /// SHUTDOWN was sent.
    closing: bool,
    /// When the first message in flight became first (the last read of answers, or the send
    /// to an idle worker): the time base of the per-message average.
    head_since: Instant,
    /// When the first message in flight started, as best known (for its task timeout): its
    /// send to an idle worker, the read of the batch before it, or the claim ring's start
    /// stamp once it is seen started (also rewritten by `timeout_left`).
    /// Kept apart from `head_since`, whose intervals must not overlap (they time messages).
    head_started: Instant,
    /// Moving average of the time per message, ns (0: not measured yet).
    ewma_ns: u64,
}

/// Counters for [`Metrics`](super::Metrics).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) spawned: u64,
    pub(crate) died: u64,
    pub(crate) start_failures: u64,
    pub(crate) messages: u64,
    pub(crate) wakeups: u64,
    /// Messages taken over by an idle worker from another one's pipeline.
    pub(crate) rebalanced: u64,
}

#[derive(Debug)]
struct State {
    pending: VecDeque<Job>,
    slots: Vec<Slot>,
    mode: Mode,
    /// Supervisor threads still running.
    alive: usize,
    /// Consecutive failed starts (any slot); 0 after any successful start.
    failures: u32,
    failed_at: Instant,
    /// Threads waiting on `changed` (queue room, start back-off): notify only if any.
    waiters: usize,
    counters: Counters,
}

/// Outcomes to hand to tasks once the lock is released.
type Deliveries = Vec<(Job, Option<TaskError>)>;

/// Why `enqueue` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    ShutDown,
}

/// How long `enqueue` may wait for room.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Admit {
    Now,
    Until(Option<Instant>),
}

/// What the pool's handle, its tasks and its supervisors share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    state: Mutex<State>,
    changed: Condvar,
    /// One per slot: wakes that slot's supervisor out of `poll`.
    pub(crate) wakers: Vec<Arc<EventFd>>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Slot {
    /// A message in flight that is still this worker's to run (not taken over).
    fn has_work(&self) -> bool {
        self.in_flight.iter().any(|f| f.job.is_some())
    }
}

fn depth(ewma_ns: u64) -> usize {
    if ewma_ns == 0 {
        return 2;
    }
    (TARGET_QUEUED_NS / ewma_ns).clamp(2, RING_SLOTS as u64) as usize
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

/// The reason a worker's exit status gives.
pub(crate) fn exit_reason(status: Option<ExitStatus>) -> ExitReason {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitReason::Code(c),
            (None, Some(sig)) => ExitReason::Signal(sig),
            _ => ExitReason::Disconnected,
        },
        None => ExitReason::Disconnected,
    }
}

fn deliver_all(out: Deliveries) {
    for (job, err) in out {
        match err {
            None => job.cell.deliver(Delivery::Skipped),
            Some(e) => job.cell.deliver(Delivery::Failed(e)),
        }
    }
}

impl State {
    /// How many more messages slot `i` takes now.
    fn room(&self, cfg: &Config, i: usize) -> usize {
        let s = &self.slots[i];
        if s.link.is_none() || s.retiring || s.closing {
            return 0;
        }
        let most = depth(s.ewma_ns).min(cfg.max_in_flight);
        let mut room = most.saturating_sub(s.in_flight.len());
        if let Some(max) = cfg.max_tasks_per_worker {
            room = room.min(max.saturating_sub(s.sent) as usize);
        }
        room
    }

    /// Sends queued messages to the workers with the most room.
    fn dispatch(&mut self, cfg: &Config, out: &mut Deliveries) {
        loop {
            while self.pending.front().is_some_and(|j| j.cell.is_cancelled()) {
                out.extend(self.pending.pop_front().map(|j| (j, None)));
            }
            if self.pending.is_empty() {
                // Each take-over gives its thief work, so this ends.
                while self.rebalance(cfg, out) {}
                return;
            }
            // The least loaded worker first (its depth may be smaller than a busier one's
            // room: measured per worker), then the one with the most room.
            let best = (0..self.slots.len())
                .map(|i| (self.slots[i].in_flight.len(), self.room(cfg, i), i))
                .filter(|&(_, r, _)| r > 0)
                .min_by_key(|&(n, r, i)| (n, usize::MAX - r, i));
            let Some((_, room, i)) = best else { return };
            self.send_to(cfg, i, room, out);
        }
    }

    /// With nothing queued, a worker that has no work left takes over up to half of the
    /// messages waiting unstarted behind another worker's first one: they are revoked there
    /// (the claim ring decides, as for a cancel; that worker skips them) and sent here. So a
    /// deep pipeline never keeps a short task waiting behind a long one while a worker
    /// idles, and the last messages of a batch are shared out at the end.
    /// Returns true if it sent any. Call only with nothing queued.
    fn rebalance(&mut self, cfg: &Config, out: &mut Deliveries) -> bool {
        debug_assert!(self.pending.is_empty());
        if self.slots.len() < 2 {
            return false;
        }
        let Some(thief) =
            (0..self.slots.len()).find(|&i| !self.slots[i].has_work() && self.room(cfg, i) > 0)
        else {
            return false;
        };
        // Messages to take: not the first (it may be running), not cancelled (its worker
        // skips it, or it was revoked already).
        let takeable = |f: &InFlight| f.job.as_ref().is_some_and(|j| !j.cell.is_cancelled());
        let waiting = |s: &Slot| s.in_flight.iter().skip(1).filter(|f| takeable(f)).count();
        let Some((victim, n)) = (0..self.slots.len())
            .filter(|&i| i != thief)
            .map(|i| (i, waiting(&self.slots[i])))
            .max_by_key(|&(_, n)| n)
        else {
            return false;
        };
        let take = n.div_ceil(2).min(self.room(cfg, thief));
        if take == 0 {
            return false;
        }
        let from = &mut self.slots[victim];
        let mut taken = 0;
        // From the back: the worker runs its messages in order, so once one has started
        // every message before it has too.
        for f in from.in_flight.iter_mut().skip(1).rev() {
            if taken == take {
                break;
            }
            if !takeable(f) {
                continue;
            }
            if !f.job.as_ref().is_some_and(|j| j.cell.take_back()) {
                break;
            }
            self.pending.extend(f.job.take());
            taken += 1;
        }
        if taken == 0 {
            return false;
        }
        // Not counted against the first worker's `max_tasks_per_worker`: it will skip them.
        from.sent = from.sent.saturating_sub(taken as u64);
        // Taken from the back: put them back in their order.
        self.pending.make_contiguous().reverse();
        let before = self.counters.messages;
        self.send_to(cfg, thief, taken, out);
        let sent = self.counters.messages - before;
        self.counters.rebalanced += sent;
        sent > 0
    }

    /// Moves up to `n` queued messages to slot `i` and sends them in one write.
    fn send_to(&mut self, cfg: &Config, i: usize, n: usize, out: &mut Deliveries) {
        let State {
            pending,
            slots,
            counters,
            ..
        } = self;
        let slot = &mut slots[i];
        let Some(link) = slot.link.clone() else {
            return;
        };
        let now = Instant::now();
        let was_idle = !slot.has_work();
        let mut o = link.outbox();
        let mut sent = 0;
        let mut timed = false;
        while sent < n {
            let Some(job) = pending.pop_front() else {
                break;
            };
            let seq = slot.next_seq;
            let ring_slot = (seq % RING_SLOTS as u64) as usize;
            // Publish the claim word before the placement, so a canceller that reads the
            // placement finds the word it must change (see cell.rs).
            link.ring.publish(ring_slot, seq);
            if !job.cell.place(Some(Placement {
                link: Arc::downgrade(&link),
                slot: ring_slot,
                seq,
            })) {
                out.push((job, None));
                continue;
            }
            let header = RunHeader {
                seq,
                slot: ring_slot as u32,
                func: job.func,
                count: job.count,
            };
            if let Err(e) = protocol::encode_run(&mut o.buf, &header, &job.items, cfg.max_message) {
                job.cell.place(None);
                out.push((
                    job,
                    Some(TaskError::Codec(Cause::with_source(
                        "the message did not encode",
                        e,
                    ))),
                ));
                continue;
            }
            timed |= job.limit(cfg.task_timeout).is_some();
            slot.next_seq += 1;
            slot.sent += 1;
            sent += 1;
            counters.messages += 1;
            if slot.in_flight.is_empty() {
                slot.head_since = now;
                slot.head_started = now;
                job.cell.mark_running();
            }
            slot.in_flight.push_back(InFlight {
                job: Some(job),
                seq,
                slot: ring_slot,
                timed_out: false,
            });
            if cfg.max_tasks_per_worker.is_some_and(|m| slot.sent >= m) {
                slot.retiring = true;
                break;
            }
        }
        // Counted for the doorbell once per batch (a shared cache line), before the bytes go.
        link.ring.bell().sent(sent as u64);
        link.flush_locked(&mut o);
        if was_idle && sent > 0 && timed {
            // The supervisor may be asleep with no deadline: it must start timing this one.
            link.wake_supervisor();
        }
    }

    fn notify_if_waiting(&self, cv: &Condvar) {
        if self.waiters > 0 {
            cv.notify_all();
        }
    }

    fn any_ready(&self) -> bool {
        self.slots.iter().any(|s| s.link.is_some())
    }
}

impl Shared {
    pub(crate) fn new(cfg: Config, wakers: Vec<Arc<EventFd>>) -> Shared {
        let now = Instant::now();
        let slots = (0..cfg.workers)
            .map(|_| Slot {
                link: None,
                in_flight: VecDeque::new(),
                next_seq: 0,
                sent: 0,
                retiring: false,
                closing: false,
                head_since: now,
                head_started: now,
                ewma_ns: 0,
            })
            .collect();
        Shared {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                slots,
                mode: Mode::Open,
                alive: cfg.workers,
                failures: 0,
                failed_at: now,
                waiters: 0,
                counters: Counters::default(),
            }),
            cfg,
            changed: Condvar::new(),
            wakers,
            threads: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // User code never runs under this lock, and nothing under it panics on a consistent
        // state, so a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(
        &self,
        g: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            None => self.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.changed
                    .wait_timeout(g, t)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }

    fn wake_all_supervisors(&self) {
        for w in &self.wakers {
            w.notify();
        }
    }

    // ===== handle side =====

    /// Queues `job` (waiting for room as `admit` allows) and sends what workers can take.
    pub(crate) fn enqueue(&self, job: Job, admit: Admit) -> Result<(), (Refusal, Job)> {
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            if let Some(bound) = self.cfg.queue_bound {
                loop {
                    if st.mode != Mode::Open {
                        return Err((Refusal::ShutDown, job));
                    }
                    if st.pending.len() < bound {
                        break;
                    }
                    st.pending.retain(|j| !j.cell.is_cancelled());
                    if st.pending.len() < bound {
                        break;
                    }
                    let timeout = match admit {
                        Admit::Now => return Err((Refusal::Full, job)),
                        Admit::Until(None) => None,
                        Admit::Until(Some(d)) => match d.checked_duration_since(Instant::now()) {
                            Some(t) if !t.is_zero() => Some(t),
                            _ => return Err((Refusal::Full, job)),
                        },
                    };
                    st.waiters += 1;
                    st = self.wait(st, timeout);
                    st.waiters -= 1;
                }
            }
            if st.mode != Mode::Open {
                return Err((Refusal::ShutDown, job));
            }
            st.pending.push_back(job);
            st.dispatch(&self.cfg, &mut out);
            st.notify_if_waiting(&self.changed);
        }
        deliver_all(out);
        Ok(())
    }

    /// Stops taking work. With `now`, cancels every message that has not started (queued, or
    /// sent but not begun) and returns how many tasks that cancelled.
    pub(crate) fn close(&self, now: bool) -> usize {
        let (queued, sent) = {
            let mut st = self.lock();
            st.mode = Mode::Closed;
            self.changed.notify_all();
            if now {
                let queued: Vec<Job> = st.pending.drain(..).collect();
                let sent: Vec<_> = st
                    .slots
                    .iter()
                    .flat_map(|s| s.in_flight.iter().skip(1))
                    .filter_map(|f| f.job.as_ref().map(|j| j.cell.clone()))
                    .collect();
                (queued, sent)
            } else {
                (Vec::new(), Vec::new())
            }
        };
        let mut n = 0;
        for job in queued {
            n += usize::from(job.cell.cancel_unstarted());
            job.cell.deliver(Delivery::Skipped);
        }
        for cell in sent {
            n += usize::from(cell.cancel_unstarted());
        }
        self.wake_all_supervisors();
        n
    }

    /// Stops every worker now (the pool is dropped during a panic): cancels what runs, which
    /// kills its worker, then kills every worker left (each with its process group). Call
    /// after `close(true)`; the supervisors reap the workers and do not start new ones.
    pub(crate) fn kill_workers(&self) {
        let (running, links): (Vec<_>, Vec<_>) = {
            let st = self.lock();
            let running = st
                .slots
                .iter()
                .flat_map(|s| s.in_flight.iter())
                .filter_map(|f| f.job.as_ref().map(|j| j.cell.clone()))
                .collect();
            let links = st.slots.iter().filter_map(|s| s.link.clone()).collect();
            (running, links)
        };
        for cell in running {
            cell.stop();
        }
        for link in links {
            link.kill();
        }
    }

    /// Closed with nothing queued: a worker still starting is not needed.
    pub(crate) fn closed_and_idle(&self) -> bool {
        let st = self.lock();
        st.mode != Mode::Open && st.pending.is_empty()
    }

    /// True once closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().mode != Mode::Open
    }

    /// Waits until every supervisor thread has exited.
    pub(crate) fn wait_supervisors(&self) {
        let mut st = self.lock();
        while st.alive > 0 {
            st.waiters += 1;
            st = self.wait(st, None);
            st.waiters -= 1;
        }
    }

    /// Waits until `n` workers are ready, the pool is closed, or `deadline` passes; returns
    /// how many are ready.
    pub(crate) fn wait_ready(&self, n: usize, deadline: Option<Instant>) -> usize {
        let mut st = self.lock();
        loop {
            let ready = st.slots.iter().filter(|s| s.link.is_some()).count();
            if ready >= n || st.mode != Mode::Open {
                return ready;
            }
            let timeout = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(t) if !t.is_zero() => Some(t),
                    _ => return ready,
                },
            };
            st.waiters += 1;
            st = self.wait(st, timeout);
            st.waiters -= 1;
        }
    }

    /// Process ids of the workers ready for work.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock()
            .slots
            .iter()
            .filter_map(|s| s.link.as_ref().map(|l| l.pid))
            .collect()
    }

    /// (ready workers, queued, in flight, counters)
    pub(crate) fn snapshot(&self) -> (usize, usize, usize, Counters) {
        let st = self.lock();
        let ready = st.slots.iter().filter(|s| s.link.is_some()).count();
        let in_flight = st
            .slots
            .iter()
            .map(|s| s.in_flight.iter().filter(|f| f.job.is_some()).count())
            .sum();
        (ready, st.pending.len(), in_flight, st.counters)
    }

    // ===== supervisor side =====

    /// Blocks until slot `i` should start a worker: at once normally, after the back-off
    /// (and only when there is work) after failed starts. False: the supervisor should exit.
    pub(crate) fn wait_to_start(&self, i: usize) -> bool {
        let _ = i;
        let mut st = self.lock();
        loop {
            if st.mode != Mode::Open && st.pending.is_empty() {
                return false;
            }
            if st.failures == 0 {
                return true;
            }
            let ready_at = st.failed_at + backoff(st.failures);
            let now = Instant::now();
            let has_work = !st.pending.is_empty();
            if has_work && now >= ready_at {
                return true;
            }
            st.waiters += 1;
            st = self.wait(st, has_work.then(|| ready_at - now));
            st.waiters -= 1;
        }
    }

    /// A process was started (counts spawns, for metrics and the back-off tests).
    pub(crate) fn spawned(&self) {
        self.lock().counters.spawned += 1;
    }

    /// Slot `i`'s worker finished starting: it takes work.
    pub(crate) fn worker_ready(&self, i: usize, link: &Arc<Link>) {
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            st.failures = 0;
            let s = &mut st.slots[i];
            s.link = Some(link.clone());
            s.sent = 0;
            s.retiring = false;
            s.closing = false;
            debug_assert!(s.in_flight.is_empty());
            st.dispatch(&self.cfg, &mut out);
            st.notify_if_waiting(&self.changed);
        }
        deliver_all(out);
    }

    /// Slot `i`'s worker could not start. With no worker ready anywhere, the queued tasks
    /// fail with the reason (rather than wait for a start that may never succeed).
    pub(crate) fn start_failed(&self, i: usize, why: &str) {
        let _ = i;
        let failed: Vec<Job> = {
            let mut st = self.lock();
            st.failures = st.failures.saturating_add(1);
            st.failed_at = Instant::now();
            st.counters.start_failures += 1;
            let failed = if st.any_ready() {
                Vec::new()
            } else {
                st.pending.drain(..).collect()
            };
            st.notify_if_waiting(&self.changed);
            failed
        };
        tracing::warn!(reason = %why, "a process-pool worker failed to start");
        for job in failed {
            job.cell
                .deliver(Delivery::Failed(TaskError::pool_failed(format!(
                    "no worker process could start: {why}"
                ))));
        }
    }

    /// Handles the answers of slot `i`'s worker that arrived: the `DONE` frames read from the
    /// socket (`batch`, in `buf`) and the answers the worker put into the claim ring, taken in
    /// the order of the messages. Pops the answered messages, sends more work, then completes
    /// the tasks. Returns whether any message was answered. Err: the worker broke the
    /// protocol. Call it after every wake-up: an answer in the ring makes no sound on the
    /// socket.
    pub(crate) fn results(
        &self,
        i: usize,
        batch: &[(DoneHeader, Range<usize>)],
        buf: &FrameBuf,
    ) -> Result<bool, String> {
        // Where an answer's result items are: in `buf`, or in `from_ring`.
        enum Src {
            Socket(Range<usize>),
            Ring(Range<usize>),
        }
        let mut from_ring = Vec::new();
        let mut done = Vec::new();
        let mut out = Vec::new();
        let mut bad = None;
        let popped;
        {
            let mut st = self.lock();
            let now = Instant::now();
            let s = &mut st.slots[i];
            // The answers, in the order of the messages: each from the ring if the worker put
            // it there, else the next frame.
            let mut answers = Vec::new();
            // Of them, messages this worker ran (not taken over by another: skipped at once).
            let mut ran = 0;
            let mut frames = batch.iter();
            let ring = s.link.as_ref().map(|l| &l.ring);
            for f in &s.in_flight {
                let answer = match ring.and_then(|r| r.take_answer(f.slot, f.seq, &mut from_ring)) {
                    Some(r) => match protocol::decode_from_worker(&from_ring[r.clone()]) {
                        Ok(FromWorker::Done(h, items)) => {
                            (h, Src::Ring(r.end - items.len()..r.end))
                        }
                        Ok(other) => {
                            bad = Some(format!("unexpected answer {other:?} in the claim ring"));
                            break;
                        }
                        Err(e) => {
                            bad = Some(format!("a malformed answer in the claim ring: {e}"));
                            break;
                        }
                    },
                    None => match frames.next() {
                        Some((h, range)) => (*h, Src::Socket(range.clone())),
                        None => break,
                    },
                };
                if answer.0.seq != f.seq {
                    bad = Some(format!(
                        "the worker answered message {} out of order",
                        answer.0.seq
                    ));
                    break;
                }
                ran += usize::from(f.job.is_some());
                answers.push(answer);
            }
            if bad.is_none()
                && let Some((h, _)) = frames.next()
            {
                bad = Some(format!(
                    "the worker answered message {}, which it was not sent",
                    h.seq
                ));
            }
            // The messages answered since the last batch shared the time since then (several
            // answers arrive together when the supervisor slept on the doorbell).
            let sample = (now.saturating_duration_since(s.head_since).as_nanos()
                / ran.max(1) as u128)
                .min(u128::from(u64::MAX)) as u64;
            popped = !answers.is_empty();
            for (h, src) in answers {
                let Some(f) = s.in_flight.pop_front() else {
                    break;
                };
                if f.job.is_some() {
                    s.ewma_ns = if s.ewma_ns == 0 {
                        sample.max(1)
                    } else {
                        (s.ewma_ns * 7 + sample) / 8
                    }
                    .max(1);
                }
                s.head_since = now;
                s.head_started = now;
                if let Some(job) = s.in_flight.front().and_then(|n| n.job.as_ref()) {
                    job.cell.mark_running();
                }
                if let Some(job) = f.job {
                    done.push((job, h.status, src));
                }
            }
            // Answers can be read well after they were written (the supervisor slept on the
            // doorbell), so the new first message may have started long ago: its timeout
            // counts from its real start.
            if popped
                && let (Some(next), Some(link)) = (s.in_flight.front(), &s.link)
                && let Some(c) = link.ring.observe(next.slot, next.seq)
                && c.state == STARTED
            {
                let ran = sys::monotonic_ns().saturating_sub(link.ring.started_ns(next.slot));
                s.head_started = now.checked_sub(Duration::from_nanos(ran)).unwrap_or(now);
            }
            if popped {
                st.dispatch(&self.cfg, &mut out);
                st.notify_if_waiting(&self.changed);
            }
        }
        for (job, status, src) in done {
            match status {
                DoneStatus::Ran => {
                    let items = match src {
                        Src::Socket(r) => buf.get(r),
                        Src::Ring(r) => &from_ring[r],
                    };
                    job.cell.deliver(Delivery::Items(items))
                }
                DoneStatus::Skipped => job.cell.deliver(Delivery::Skipped),
            }
        }
        deliver_all(out);
        bad.map_or(Ok(popped), Err)
    }

    /// Timeouts and closing for slot `i`, once per supervisor wake-up. Returns how long the
    /// supervisor may sleep before the next timeout check, and whether it may sleep on the
    /// doorbell: `Some((low, most))` when the worker has enough queued to be rung at `low`
    /// messages left, for at most `most` (see `bell.rs`).
    pub(crate) fn tick(
        &self,
        i: usize,
        link: &Link,
    ) -> (Option<Duration>, Option<(u64, Duration)>) {
        let mut st = self.lock();
        st.counters.wakeups += 1;
        let closed_idle = st.mode != Mode::Open && st.pending.is_empty();
        let s = &mut st.slots[i];
        if !s.closing && s.in_flight.is_empty() && (s.retiring || closed_idle) {
            s.closing = true;
            link.send_with(|b| protocol::encode_empty(b, protocol::SHUTDOWN));
        }
        let most = depth(s.ewma_ns).min(self.cfg.max_in_flight);
        let low = (most / 2) as u64;
        let bell = (most >= BELL_MIN_DEPTH
            && s.in_flight.len() > most / 2
            && low.saturating_mul(s.ewma_ns) >= BELL_MIN_SLACK_NS)
            .then(|| {
                // Twice the expected time to the ring, so that a sleep normally ends with it.
                let ahead = (s.in_flight.len() as u64 - low).saturating_mul(s.ewma_ns);
                let most = Duration::from_nanos(ahead.saturating_mul(2));
                (low, most.clamp(BELL_SLEEP.start, BELL_SLEEP.end))
            });
        (self.timeout_left(s, link), bell)
    }

    /// The task timeout of slot `s`'s running message: kills its worker once it ran past its
    /// limit; else how long until the limit (`None`: no limit to watch).
    fn timeout_left(&self, s: &mut Slot, link: &Link) -> Option<Duration> {
        let head = s.in_flight.front_mut()?;
        let limit = head.job.as_ref()?.limit(self.cfg.task_timeout)?;
        if head.timed_out {
            return None;
        }
        let now = Instant::now();
        // A limit past the clock's range is never reached.
        let due = s.head_started.checked_add(limit)?;
        if now < due {
            return Some(due - now);
        }
        // The earliest possible start has passed the limit: look at the real one.
        match link.ring.observe(head.slot, head.seq) {
            Some(c) if c.state == STARTED && !c.kill => {
                let ran = Duration::from_nanos(
                    sys::monotonic_ns().saturating_sub(link.ring.started_ns(head.slot)),
                );
                if ran >= limit {
                    if link.ring.mark_kill(head.slot, head.seq) {
                        head.timed_out = true;
                        link.kill();
                        return None;
                    }
                    s.head_started = now; // it just finished; its result is on the way
                } else {
                    // A worker's stamp is not trusted to be sane (a task can scribble on
                    // shared memory): never panic on it.
                    s.head_started = now.checked_sub(ran).unwrap_or(now);
                }
            }
            // Not started yet (its bytes are still arriving), or finished: check again later.
            _ => s.head_started = now,
        }
        Some(
            s.head_started
                .checked_add(limit)?
                .saturating_duration_since(now),
        )
    }

    /// Slot `i`'s worker is gone (exited, killed, or broke the protocol) and was reaped.
    /// Messages it never started go back to the front of the queue; the one it was running
    /// fails with why.
    pub(crate) fn worker_gone(&self, i: usize, link: &Arc<Link>, status: Option<ExitStatus>) {
        let reason = exit_reason(status);
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            let clean = matches!(reason, ExitReason::Code(0));
            let s = &mut st.slots[i];
            s.link = None;
            s.closing = false;
            s.retiring = false;
            let entries: Vec<InFlight> = s.in_flight.drain(..).collect();
            let lost_work = entries.iter().any(|f| f.job.is_some());
            let mut requeue = Vec::new();
            for f in entries {
                // A message another worker took over is not this one's to settle.
                let Some(job) = f.job else { continue };
                match link.ring.observe(f.slot, f.seq).map(|c| c.state) {
                    Some(PENDING) => {
                        job.cell.place(None);
                        requeue.push(job);
                    }
                    Some(REVOKED) => out.push((job, None)),
                    _ => {
                        let err = match (f.timed_out, job.limit(self.cfg.task_timeout)) {
                            (true, Some(t)) => TaskError::TimedOut(t),
                            _ => TaskError::WorkerDied(reason),
                        };
                        out.push((job, Some(err)));
                    }
                }
            }
            for job in requeue.into_iter().rev() {
                st.pending.push_front(job);
            }
            if !clean || lost_work {
                st.counters.died += 1;
            }
            st.dispatch(&self.cfg, &mut out);
            st.notify_if_waiting(&self.changed);
        }
        if !matches!(reason, ExitReason::Code(0)) {
            tracing::debug!(pid = link.pid, %reason, "a process-pool worker ended");
        }
        deliver_all(out);
    }

    /// A supervisor thread is exiting.
    pub(crate) fn supervisor_exited(&self) {
        let mut st = self.lock();
        st.alive -= 1;
        self.changed.notify_all();
    }
}
