//! The worker's fetch loop: reads as many tasks as it has free slots (`XREADGROUP COUNT n`,
//! with their cancel marks in the same script while the queue is busy), reclaims tasks of
//! dead workers (`XAUTOCLAIM`), and starts each one in the local pool, or answers it at once
//! when it must not run (cancelled, unknown, wrong types, out of attempts). A read that finds
//! the queue empty while processes are idle says so in `chi:{q}:idle`, for workers that
//! prefetch (see `lease`); while some peer is idle, a prefetching worker reads only for its
//! own idle processes. A slot is a local process (or thread): it is free again the moment its
//! run ends, while the answer is still on its way to Redis.

use super::reply::{Dead, Reply, ReplyTo};
use super::{Held, Shared, Stop, lease};
use crate::codec::WireError;
use crate::conn::{self, Entry, Link, lock};
use crate::error::ClusterError;
use crate::keys::{self, GROUP};
use redis::Value;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// Serves until the worker is asked to stop.
pub(super) fn run(s: &Arc<Shared>, tx: &Sender<Reply>) -> Result<(), ClusterError> {
    let block = s.heartbeat.min(Duration::from_millis(500));
    let mut link = Link::new(
        s.target.clone(),
        &s.keys.tasks,
        block + Duration::from_secs(5),
    );
    let mut next_reclaim = Instant::now();
    // XAUTOCLAIM scans the pending list in pieces; the cursor carries on where it stopped.
    let mut cursor = "0-0".to_owned();
    let script = redis::Script::new(READ_READY);
    while !s.stopping() {
        let (free, idle) = wait_free(s, block);
        if free == 0 {
            continue;
        }
        if Instant::now() >= next_reclaim {
            next_reclaim = Instant::now() + s.heartbeat;
            let got = link.call(Some(Instant::now() + block), |c| {
                lease::reclaim(c, s, free, &mut cursor)
            });
            if let Ok(Ok(batch)) = got
                && !batch.is_empty()
            {
                start_batch(s, &mut link, tx, batch, None);
                continue;
            }
        }
        let got = link.call(Some(Instant::now() + block * 2), |c| {
            read_new(c, s, free, idle, block, &script)
        });
        match got {
            Ok(Ok((entries, marks))) => {
                let batch = entries.into_iter().map(|e| (e, 1)).collect();
                start_batch(s, &mut link, tx, batch, marks);
            }
            Ok(Err(e)) if conn::is_nogroup(&e) => {
                // Redis lost the group (restarted without persistence): make it again.
                let _ = link.call(Some(Instant::now() + block), |c| {
                    conn::ensure_group(c, &s.keys.tasks)
                });
            }
            Ok(Err(e)) => {
                tracing::warn!(worker = %s.id, "XREADGROUP: {e}");
                std::thread::sleep(block);
            }
            Err(e) => tracing::debug!(worker = %s.id, "Redis unreachable: {}", e.0),
        }
    }
    // Stopping: no longer a worker others should hand tasks to.
    let _ = link.call(Some(Instant::now() + block), |c| {
        redis::cmd("HDEL")
            .arg(&s.keys.idle)
            .arg(&s.id)
            .query::<()>(c)
    });
    Ok(())
}

/// Waits up to `max` until a task may be read: how many may, and how many processes are idle.
fn wait_free(s: &Shared, max: Duration) -> (usize, usize) {
    let st = lock(&s.state);
    let (st, _) = s
        .changed
        .wait_timeout_while(st, max, |st| st.readable(s.prefetch) == 0 && !s.stopping())
        .unwrap_or_else(|e| e.into_inner());
    (st.readable(s.prefetch), st.idle_processes(s.prefetch))
}

/// Reads up to `ARGV[3]` new entries of stream `KEYS[1]` for consumer `ARGV[2]` of group
/// `ARGV[1]` without blocking, and marks each one whose task id (field `ARGV[4]`) is in the
/// cancel set `KEYS[2]`: `{reply, marks}` in one round trip, or false when nothing is waiting.
/// A worker that finds nothing with `ARGV[5]` > 0 idle processes says so in the idle hash
/// `KEYS[3]` (workers that prefetch hand it their waiting tasks); any other read clears that.
/// Written only when it changes (no replication traffic while idle), and a refused write (a
/// full Redis) does not fail the read. A change that was written also publishes the worker's
/// id on channel `ARGV[6]` while another worker than this one is in the set of prefetching
/// workers `KEYS[4]`: they listen there to hand back at once rather than at their next beat.
const READ_READY: &str = r"
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if not r and tonumber(ARGV[5]) > 0 then
  if redis.call('HGET', KEYS[3], ARGV[2]) ~= ARGV[5] then
    local set = redis.pcall('HSET', KEYS[3], ARGV[2], ARGV[5])
    local others = redis.call('SCARD', KEYS[4]) - redis.call('SISMEMBER', KEYS[4], ARGV[2])
    if (type(set) ~= 'table' or not set.err) and others > 0 then
      redis.pcall('PUBLISH', ARGV[6], ARGV[2])
    end
  end
else
  redis.pcall('HDEL', KEYS[3], ARGV[2])
end
if not r then return false end
local marks = {}
for i, e in ipairs(r[1][2]) do
  local f, m = e[2], 0
  if f then
    for j = 1, #f, 2 do
      if f[j] == ARGV[4] then
        if redis.call('ZSCORE', KEYS[2], f[j + 1]) then m = 1 end
        break
      end
    end
  end
  marks[i] = m
end
return {r, marks}
";

/// New entries for up to `free` slots, with their cancel marks when known. A busy queue is
/// read with [`READ_READY`] (entries and cancel marks in one round trip); an empty one with
/// `XREADGROUP … BLOCK`, whose entries [`start_batch`] checks for cancels after.
fn read_new(
    c: &mut dyn redis::ConnectionLike,
    s: &Shared,
    free: usize,
    idle: usize,
    block: Duration,
    script: &redis::Script,
) -> Result<(Vec<Entry>, Option<Vec<bool>>), redis::RedisError> {
    let ready: Value = script
        .key(&s.keys.tasks)
        .key(&s.keys.cancel)
        .key(&s.keys.idle)
        .key(&s.keys.prefetchers)
        .arg(GROUP)
        .arg(&s.id)
        .arg(free)
        .arg(keys::task::ID)
        .arg(idle)
        .arg(&s.keys.idle_signal)
        .invoke(c)?;
    if let [reply, marks] = conn::items(&ready) {
        let entries = conn::read_reply(reply);
        let marks: Vec<bool> = conn::items(marks)
            .iter()
            .map(|m| conn::int(m).is_some_and(|m| m != 0))
            .collect();
        // One mark per entry, or none trusted (then `start_batch` asks the cancel set).
        let marks = (marks.len() == entries.len()).then_some(marks);
        return Ok((entries, marks));
    }
    let v: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(&s.id)
        .arg("COUNT")
        .arg(free)
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(&s.keys.tasks)
        .arg(">")
        .query(c)?;
    Ok((conn::read_reply(&v), None))
}

/// A task entry's fields, checked.
struct TaskMsg<'a> {
    name: &'a str,
    sig: &'a str,
    to: ReplyTo,
    /// Runs before this entry was added.
    tries: u64,
    timeout: Option<Duration>,
    payload: &'a [u8],
}

fn parse(e: &Entry) -> Option<TaskMsg<'_>> {
    use keys::task as f;
    Some(TaskMsg {
        name: e.text(f::NAME)?,
        sig: e.text(f::SIG)?,
        to: ReplyTo {
            task_id: e.text(f::ID)?.to_owned(),
            key: e.text(f::REPLY)?.to_owned(),
            ttl: e.number(f::TTL).unwrap_or(3600),
            max_attempts: e.number(f::MAX_ATTEMPTS).unwrap_or(3),
            retry_on_panic: e.text(f::RETRY_ON_PANIC) == Some("1"),
        },
        tries: e.number(f::TRIES).unwrap_or(0),
        timeout: e.number(f::TIMEOUT).map(Duration::from_millis),
        payload: e.get(f::PAYLOAD)?,
    })
}

/// Starts (or answers) every entry of a batch; `delivery` is each one's delivery count.
/// `marks`: which were cancelled, when the read told already.
fn start_batch(
    s: &Arc<Shared>,
    link: &mut Link,
    tx: &Sender<Reply>,
    batch: Vec<(Entry, u64)>,
    marks: Option<Vec<bool>>,
) {
    if batch.is_empty() {
        return; // a blocking read that timed out
    }
    let cancelled = marks.unwrap_or_else(|| cancelled(s, link, &batch));
    let batch: Vec<_> = {
        let mut st = lock(&s.state);
        let batch: Vec<_> = batch
            .into_iter()
            .zip(cancelled)
            .filter(|((entry, _), _)| {
                // Reclaimed from ourselves (its lease lapsed while Redis was away, say): the
                // run we hold answers it; a second run would also take a second slot.
                let ours = st.held.contains_key(&entry.id);
                if ours {
                    tracing::info!(worker = %s.id, entry = %entry.id, "reclaimed a task it still runs; its run answers it");
                }
                !ours
            })
            .collect();
        // A slot for every entry with data; an entry deleted while pending (only acknowledged)
        // takes none: older Redis returns those beyond XAUTOCLAIM's COUNT.
        let taken = batch
            .iter()
            .filter(|((e, _), _)| !e.fields.is_empty())
            .count();
        debug_assert!(taken <= st.free, "{taken} tasks for {} free slots", st.free);
        st.free = st.free.saturating_sub(taken);
        batch
    };
    for ((entry, attempt), cancelled) in batch {
        start_one(s, tx, entry, attempt, cancelled);
    }
}

/// Which entries of the batch were cancelled (one `ZMSCORE`).
fn cancelled(s: &Shared, link: &mut Link, batch: &[(Entry, u64)]) -> Vec<bool> {
    let ids: Vec<&str> = batch
        .iter()
        .map(|(e, _)| e.text(keys::task::ID).unwrap_or(""))
        .collect();
    let deadline = Some(Instant::now() + Duration::from_secs(5));
    let got = link.call(deadline, |c| {
        let mut pipe = redis::pipe();
        pipe.cmd("ZMSCORE").arg(&s.keys.cancel).arg(&ids);
        // Not idle any more (a blocking read got these): see `READ_READY`.
        pipe.cmd("HDEL").arg(&s.keys.idle).arg(&s.id).ignore();
        pipe.query::<Vec<Value>>(c)
    });
    match got {
        Ok(Ok(v)) => {
            let marks = v.first().map(conn::items).unwrap_or_default();
            (0..ids.len())
                .map(|i| marks.get(i).is_some_and(|m| !matches!(m, Value::Nil)))
                .collect()
        }
        // Unknown: run them; a cancel still reaches a running task through the heartbeat.
        _ => vec![false; ids.len()],
    }
}

fn start_one(s: &Arc<Shared>, tx: &Sender<Reply>, entry: Entry, delivery: u64, cancelled: bool) {
    let Some(mut msg) = parse(&entry) else {
        // Not a chi task (or its data is gone): acknowledge it so it is never delivered again.
        tracing::warn!(worker = %s.id, entry = %entry.id, "dropping a malformed task entry");
        let owns_slot = !entry.fields.is_empty(); // see `start_batch`
        let _ = tx.send(Reply::drop_entry(entry.id).with_slot(owns_slot));
        return;
    };
    let attempt = msg.tries + delivery;
    if let Some(reg) = s.tasks.get(msg.name) {
        msg.to.retry_on_panic |= reg.retry_on_panic;
    }
    let answer = |outcome, dead| Reply::answer(&entry.id, &msg.to, attempt, outcome, dead);
    if cancelled {
        let _ = tx.send(answer(Err(WireError::Cancelled), None));
        return;
    }
    if attempt > msg.to.max_attempts {
        let err = WireError::WorkerDied {
            code: None,
            signal: None,
        };
        let dead = Dead {
            name: msg.name.to_owned(),
            attempts: attempt - 1,
        };
        let _ = tx.send(answer(Err(err), Some(dead)));
        return;
    }
    let Some(reg) = s.tasks.get(msg.name) else {
        let mut known: Vec<&str> = s.tasks.keys().copied().collect();
        known.sort_unstable();
        let err = WireError::Failed(format!(
            "no task named `{}` on worker {} of queue `{}` (it knows: {})",
            msg.name,
            s.id,
            s.keys.queue(),
            known.join(", ")
        ));
        let _ = tx.send(answer(Err(err), None));
        return;
    };
    let ours = format!("{:016x}", reg.signature);
    if ours != msg.sig {
        let err = WireError::Failed(format!(
            "task `{}` has signature {} on the client but {ours} on worker {}: \
             the argument or result types differ (build both from the same TaskDef)",
            msg.name, msg.sig, s.id
        ));
        let _ = tx.send(answer(Err(err), None));
        return;
    }
    lock(&s.state).held.insert(
        entry.id.clone(),
        Held {
            task_id: msg.to.task_id.clone(),
            attempt,
            local: None,
            stop: Stop::Serve,
            slot: true,
        },
    );
    let pending = answer(Ok(Vec::new()), None);
    let tx2 = tx.clone();
    let weak = Arc::downgrade(s);
    let done = Box::new(move |outcome| {
        // The process is free: give the slot back at once so the fetch loop reads the next
        // task while this answer travels. Only `try_lock`: a cancel may complete the task on
        // a thread that holds the state already; the reply thread then frees the slot.
        if let Some(s) = weak.upgrade()
            && let Ok(mut st) = s.state.try_lock()
            && st.take_slot(pending.entry())
        {
            s.release_slots(&mut st, 1);
        }
        let _ = tx2.send(pending.with_outcome(outcome));
    });
    match reg.start(&s.pool, msg.payload, msg.timeout, done) {
        Ok(local) => {
            if let Some(h) = lock(&s.state).held.get_mut(&entry.id) {
                h.local = Some(local);
            }
        }
        Err(e) => {
            let owns_slot = lock(&s.state).take_slot(&entry.id);
            let _ = tx.send(answer(Err(e), None).with_slot(owns_slot));
        }
    }
}
