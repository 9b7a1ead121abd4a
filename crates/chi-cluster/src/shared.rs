//! The client's state shared by [`Cluster`](crate::Cluster), its map iterators, its reader
//! thread and the cancel hooks of its tasks: pending handles, the submit path, counters.

use crate::codec::{self, Outcome};
use crate::conn::{self, Link, Target, lock};
use crate::def::TaskDef;
use crate::error::SubmitError;
use crate::keys::{self, QueueKeys};
use chi::{Completer, Task, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// The settings a connected client runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) target: Target,
    pub(crate) keys: QueueKeys,
    pub(crate) queue_bound: Option<usize>,
    pub(crate) result_ttl: Duration,
    pub(crate) broker_timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) max_payload: usize,
    pub(crate) task_timeout: Option<Duration>,
}

/// Completes a handle with an outcome; its second argument is told first whether the handle
/// takes it.
pub(crate) type Finish = Box<dyn FnOnce(Outcome, &dyn Fn(bool)) -> bool + Send>;

/// One task the client waits for.
pub(crate) struct Pending {
    /// The task's entry in the task stream, once `XADD` answered.
    pub(crate) entry: Option<String>,
    /// The Redis process (its [`run_id`](conn::server_id)) known to hold the entry: the one
    /// that answered the `XADD`, or that a later check found it on.
    pub(crate) server: Arc<str>,
    /// Completes the handle; calls its second argument first, with whether the handle takes
    /// the outcome (it was not cancelled), so counters are right by the time a waiter wakes.
    pub(crate) finish: Finish,
}

/// The tasks a client waits for, and which Redis process its reader reads from: a task whose
/// entry is known only on another process (Redis restarted, or failed over, since) must be
/// looked for again, and fails if it is gone.
pub(crate) struct PendingSet {
    pub(crate) tasks: HashMap<u64, Pending>,
    /// The Redis process the reader reads results from.
    pub(crate) reader_server: Arc<str>,
    /// Set when a task was added on a process other than `reader_server`, or a check was cut
    /// short: the reader checks again after its next read.
    pub(crate) recheck: bool,
}

impl PendingSet {
    pub(crate) fn new(server: Arc<str>) -> PendingSet {
        PendingSet {
            tasks: HashMap::new(),
            reader_server: server,
            recheck: false,
        }
    }

    /// The reader now reads from `server`: true if some task may need a check (the server
    /// changed, or a check was asked for). Clears the request.
    pub(crate) fn reader_at(&mut self, server: &Arc<str>) -> bool {
        let changed = *self.reader_server != **server;
        if changed {
            self.reader_server = server.clone();
        }
        std::mem::take(&mut self.recheck) || changed
    }

    /// Tasks whose entry is known only on a server other than `server`: `(seq, entry id)`.
    pub(crate) fn suspects(&self, server: &str) -> Vec<(u64, String)> {
        self.tasks
            .iter()
            .filter(|(_, p)| *p.server != *server)
            .filter_map(|(s, p)| p.entry.clone().map(|e| (*s, e)))
            .collect()
    }
}

/// Shared between the client, its reader thread and cancel hooks.
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) client_id: String,
    pub(crate) results_key: String,
    pub(crate) link: Mutex<Link>,
    pub(crate) pending: Mutex<PendingSet>,
    pub(crate) seq: AtomicU64,
    pub(crate) closed: AtomicBool,
    pub(crate) stop_reader: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) bounded_add: redis::Script,
    pub(crate) take_back: redis::Script,
}

/// The client's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) results: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) lost: AtomicU64,
}

/// How long to wait for room in a bounded queue.
#[derive(Clone, Copy)]
pub(crate) enum Admit {
    Now,
    Until(Option<Instant>),
}

/// Takes task entry `ARGV[1]` out of stream `KEYS[1]` if it is task `ARGV[3]`'s and no worker
/// has read it (it is not in group `ARGV[2]`'s pending entries), and marks the task cancelled
/// in `KEYS[2]` (score `ARGV[4]`): 1 if taken back, 0 if a worker may have started it (or the
/// entry is another task's: ids restart on a fresh stream). An entry found gone but marked
/// was taken back by an earlier try whose answer was lost, so a retry also answers 1.
pub const TAKE_BACK: &str = r"
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then
  if redis.call('ZSCORE', KEYS[2], ARGV[3]) then return 1 end
  return 0
end
local f, mine = e[1][2], false
for i = 1, #f, 2 do
  if f[i] == 'id' then mine = f[i + 1] == ARGV[3] end
end
if not mine then return 0 end
local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[2], ARGV[1], ARGV[1], 1)
if ok then
  if #p > 0 then return 0 end
else
  local msg = type(p) == 'table' and p.err or tostring(p)
  if not string.find(msg, 'NOGROUP') then return redis.error_reply(msg) end
end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return 1
";

pub(crate) const BOUNDED_ADD: &str = "if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end \
     return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))";

impl Inner {
    /// Encodes, registers and adds one task.
    pub(crate) fn submit<A, R>(
        self: &Arc<Self>,
        def: &TaskDef<A, R>,
        arg: A,
        admit: Admit,
    ) -> Result<Task<R>, SubmitError<A>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        let payload = match self.check_arg(&arg) {
            Ok(p) => p,
            Err(e) => return Err(e.map_arg(|()| arg)),
        };
        let (seq, task) = self.register(def);
        let fields = self.fields(def, seq, payload);
        match self.add(&fields, admit) {
            Ok((entry, server)) => {
                self.added(seq, entry, &server);
                Ok(task)
            }
            Err(e) => {
                self.unregister(seq);
                Err(e.map_arg(|()| arg))
            }
        }
    }

    /// The encoded argument, or why it is refused.
    pub(crate) fn check_arg<A: Serialize>(&self, arg: &A) -> Result<Vec<u8>, SubmitError<()>> {
        // ORDERING: SeqCst, see `Cluster::shutdown`.
        if self.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::ShutDown(()));
        }
        let payload =
            codec::encode(arg).map_err(|reason| SubmitError::Codec { arg: (), reason })?;
        if payload.len() > self.cfg.max_payload {
            return Err(SubmitError::TooLarge {
                arg: (),
                size: payload.len(),
                limit: self.cfg.max_payload,
            });
        }
        Ok(payload)
    }

    /// A new pending task: its sequence number and handle.
    pub(crate) fn register<A, R>(self: &Arc<Self>, _def: &TaskDef<A, R>) -> (u64, Task<R>)
    where
        R: DeserializeOwned + Send + 'static,
    {
        // ORDERING: only uniqueness matters.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let weak = Arc::downgrade(self);
        let weak2 = weak.clone();
        // Set when the take-back withdrew the task (and marked it): the cancel hook that
        // follows has nothing left to tell Redis.
        let withdrawn = Arc::new(AtomicBool::new(false));
        let withdrawn2 = withdrawn.clone();
        let (completer, task) = Completer::with_cancel_hooks(
            move || cancel_remote(&weak, seq, &withdrawn),
            move || take_back_remote(&weak2, seq, &withdrawn2),
        );
        let finish = Box::new(move |outcome: Outcome, count: &dyn Fn(bool)| {
            let result = match outcome {
                Ok(bytes) => codec::decode::<R>(&bytes).map_err(|e| {
                    TaskError::Codec(chi::Cause::new(format!("the result did not decode: {e}")))
                }),
                Err(e) => Err(TaskError::from(e)),
            };
            count(!completer.is_cancelled());
            completer.complete(result)
        });
        lock(&self.pending).tasks.insert(
            seq,
            Pending {
                entry: None,
                server: Arc::from(""),
                finish,
            },
        );
        (seq, task)
    }

    pub(crate) fn unregister(&self, seq: u64) {
        // The completer is dropped with its task, which nobody holds.
        drop(lock(&self.pending).tasks.remove(&seq));
    }

    /// Task `seq` is entry `entry` on the Redis process `server`. If the reader reads from
    /// another one (it saw a restart this submit did not), it is asked to check the task.
    pub(crate) fn added(&self, seq: u64, entry: String, server: &Arc<str>) {
        // ORDERING: statistics.
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let mut p = lock(&self.pending);
        if let Some(t) = p.tasks.get_mut(&seq) {
            t.entry = Some(entry);
            t.server = server.clone();
        }
        if *p.reader_server != **server {
            p.recheck = true;
        }
    }

    pub(crate) fn task_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.client_id)
    }

    /// The fields of a task entry.
    pub(crate) fn fields<A, R>(
        &self,
        def: &TaskDef<A, R>,
        seq: u64,
        payload: Vec<u8>,
    ) -> Vec<(&'static str, Vec<u8>)> {
        use keys::task as f;
        let mut v = vec![
            (f::ID, self.task_id(seq).into_bytes()),
            (f::NAME, def.name().as_bytes().to_vec()),
            (f::SIG, format!("{:016x}", def.signature()).into_bytes()),
            (f::REPLY, self.results_key.clone().into_bytes()),
            (
                f::TTL,
                self.cfg.result_ttl.as_secs().to_string().into_bytes(),
            ),
            (
                f::MAX_ATTEMPTS,
                self.cfg.max_attempts.to_string().into_bytes(),
            ),
        ];
        if let Some(t) = def.timeout().or(self.cfg.task_timeout) {
            v.push((f::TIMEOUT, t.as_millis().to_string().into_bytes()));
        }
        if def.retries_on_panic() {
            v.push((f::RETRY_ON_PANIC, b"1".to_vec()));
        }
        v.push((f::PAYLOAD, payload));
        v
    }

    /// `XADD`s one task, respecting the bound; the entry id and the Redis process that took it.
    fn add(
        &self,
        fields: &[(&str, Vec<u8>)],
        admit: Admit,
    ) -> Result<(String, Arc<str>), SubmitError<()>> {
        let broker_deadline = Instant::now() + self.cfg.broker_timeout;
        let deadline = match admit {
            Admit::Until(Some(d)) => d.min(broker_deadline),
            _ => broker_deadline,
        };
        let mut pause = Duration::from_millis(1);
        loop {
            let (r, server) = {
                let mut link = lock(&self.link);
                let r = link.call(Some(deadline), |c| self.xadd(c, fields));
                (r, link.server().clone())
            };
            match r {
                Err(e) => {
                    return Err(SubmitError::Unavailable {
                        arg: (),
                        reason: e.0,
                    });
                }
                Ok(Err(e)) => {
                    return Err(SubmitError::Unavailable {
                        arg: (),
                        reason: e.to_string(),
                    });
                }
                Ok(Ok(Some(id))) => return Ok((id, server)),
                Ok(Ok(None)) => match admit {
                    Admit::Now => return Err(SubmitError::Full(())),
                    Admit::Until(d) => {
                        if d.is_some_and(|d| Instant::now() + pause > d) {
                            return Err(SubmitError::Timeout(()));
                        }
                        // Room appears when a worker answers; Redis has no wake-up for it.
                        thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(50));
                    }
                },
            }
        }
    }

    fn xadd(
        &self,
        c: &mut dyn redis::ConnectionLike,
        fields: &[(&str, Vec<u8>)],
    ) -> Result<Option<String>, redis::RedisError> {
        let tasks = &self.cfg.keys.tasks;
        match self.cfg.queue_bound {
            None => {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(tasks).arg("*");
                for (k, v) in fields {
                    cmd.arg(*k).arg(v.as_slice());
                }
                cmd.query(c).map(Some)
            }
            Some(bound) => {
                let mut inv = self.bounded_add.key(tasks);
                inv.arg(bound);
                for (k, v) in fields {
                    inv.arg(*k).arg(v.as_slice());
                }
                inv.invoke(c)
            }
        }
    }

    /// `XADD`s many tasks in one pipeline (an unbounded queue): their entry ids and the Redis
    /// process that took them.
    pub(crate) fn add_batch(
        &self,
        batch: &[Vec<(&'static str, Vec<u8>)>],
    ) -> Result<(Vec<String>, Arc<str>), String> {
        let deadline = Some(Instant::now() + self.cfg.broker_timeout);
        let tasks = &self.cfg.keys.tasks;
        let mut link = lock(&self.link);
        let r = link.call(deadline, |c| {
            let mut pipe = redis::pipe();
            for fields in batch {
                let cmd = pipe.cmd("XADD").arg(tasks).arg("*");
                for (k, v) in fields {
                    cmd.arg(*k).arg(v.as_slice());
                }
            }
            pipe.query::<Vec<String>>(c)
        });
        match r {
            Ok(Ok(ids)) => Ok((ids, link.server().clone())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.0),
        }
    }

    /// Completes the handle of task `seq` with `outcome`; false when none waits for it.
    /// `count(taken)` runs just before the handle completes (or at once, with `false`, when
    /// nothing waits): counters a woken waiter reads are up to date.
    pub(crate) fn complete(&self, seq: u64, outcome: Outcome, count: &dyn Fn(bool)) -> bool {
        let p = lock(&self.pending).tasks.remove(&seq);
        match p {
            Some(p) => (p.finish)(outcome, count),
            None => {
                count(false);
                false
            }
        }
    }

    pub(crate) fn queue_bounded(&self) -> bool {
        self.cfg.queue_bound.is_some()
    }
}

/// The take-back hook of task `seq` (what `cancel_pending` asks first): true if its entry was
/// still waiting in the queue, unread by any worker, and is now deleted (`withdrawn` is then
/// set). False when a worker has read it (it may have started), or the entry is not known yet
/// or no longer where it was added (a worker put it back under a new id, or Redis restarted):
/// the task is then left alone.
///
/// False too when Redis cannot be reached within the broker timeout, but then the script may
/// have run without its answer coming back: the task is marked for the reader to check once
/// Redis answers again, and if its entry is gone and marked cancelled, the handle completes
/// with `Cancelled` then (never waits forever).
fn take_back_remote(weak: &Weak<Inner>, seq: u64, withdrawn: &AtomicBool) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    let Some(entry) = lock(&inner.pending)
        .tasks
        .get(&seq)
        .and_then(|p| p.entry.clone())
    else {
        return false;
    };
    let id = inner.task_id(seq);
    let keys = &inner.cfg.keys;
    let deadline = Some(Instant::now() + inner.cfg.broker_timeout);
    let r = lock(&inner.link).call(deadline, |c| {
        inner
            .take_back
            .key(&keys.tasks)
            .key(&keys.cancel)
            .arg(&entry)
            .arg(keys::GROUP)
            .arg(&id)
            .arg(conn::now_ms())
            .invoke::<i64>(c)
    });
    match r {
        Ok(Ok(1)) => {
            // ORDERING: read by the cancel hook this same thread calls next.
            withdrawn.store(true, Ordering::Relaxed);
            true
        }
        Ok(Ok(_)) => false,
        Ok(Err(e)) => {
            tracing::warn!(task = %id, "chi-cluster: taking a task back failed: {e}");
            false
        }
        Err(e) => {
            tracing::warn!(
                task = %id,
                "chi-cluster: taking a task back got no answer ({}); the reader checks it later",
                e.0
            );
            let mut p = lock(&inner.pending);
            if let Some(t) = p.tasks.get_mut(&seq) {
                t.server = Arc::from(UNKNOWN_SERVER);
            }
            p.recheck = true;
            false
        }
    }
}

/// The server name of a task whose entry's fate is unknown (a take-back without an answer):
/// never a real `run_id`, so the reader's next check looks the task up.
pub(crate) const UNKNOWN_SERVER: &str = "?";

/// The cancel hook of task `seq` (called once its handle is cancelled): marks it cancelled in
/// Redis so that no worker starts it and the one running it stops it (unless the take-back
/// already did), and stops waiting for it (a worker's answer, if one comes, is dropped and
/// counted as a duplicate).
fn cancel_remote(weak: &Weak<Inner>, seq: u64, withdrawn: &AtomicBool) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    // ORDERING: set by the take-back on this same thread.
    let marked = withdrawn.load(Ordering::Relaxed) || mark_cancelled(&inner, seq);
    // The handle is already cancelled: its completer, dropped here (outside the lock),
    // finishes nothing.
    let gone = lock(&inner.pending).tasks.remove(&seq);
    drop(gone);
    marked
}

/// Writes task `seq`'s cancel mark (and forgets marks older than [`keys::CANCEL_KEEP_MS`]);
/// false if Redis did not take it.
fn mark_cancelled(inner: &Inner, seq: u64) -> bool {
    let id = inner.task_id(seq);
    let key = inner.cfg.keys.cancel.clone();
    let now = conn::now_ms();
    let deadline = Some(Instant::now() + inner.cfg.broker_timeout);
    let r = lock(&inner.link).call(deadline, |c| {
        redis::pipe()
            .cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(&id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now.saturating_sub(keys::CANCEL_KEEP_MS))
            .ignore()
            .query::<()>(c)
    });
    matches!(r, Ok(Ok(())))
}
