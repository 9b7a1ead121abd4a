//! Leases: the heartbeat (the worker's time in `chi:{q}:workers`, and `XCLAIM … JUSTID` of the
//! entries it holds so that their idle time stays below the lease), cancels of running tasks,
//! the reclaim of entries whose holder went silent, and, for a worker that prefetches, handing
//! waiting tasks to peers that have idle processes (`chi:{q}:idle`).

use super::Shared;
use crate::conn::{self, Entry, Link, lock};
use crate::keys::{FORGET_WORKER_MS, GROUP};
use redis::Value;
use std::time::{Duration, Instant};

/// The idle-signal thread of a worker that prefetches: listens on the queue's idle-signal
/// channel, on which a worker publishes its id when its read newly finds the queue empty with
/// processes idle, and, if tasks wait here, offers the idle processes those tasks at once
/// (see [`offer`]) rather than at the next heartbeat. Every prefetching worker hears every
/// signal; the reservation in [`offer`] keeps them from filling one idle process twice. A
/// burst of signals makes one offer. The heartbeat still offers too: a signal missed (sent
/// while this thread reconnects, or while nothing waited here, or by a worker not yet seen
/// alive) costs at most one beat. Checks for the worker's stop at least once per wait.
pub(super) fn watch_idle(s: &Shared) {
    let wait = s
        .heartbeat
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut link = Link::new(s.target.clone(), &s.keys.tasks, Duration::from_secs(5));
    let peers_script = redis::Script::new(PEERS_IDLE);
    while !s.stopping() {
        if let Err(e) = listen(s, wait, &mut link, &peers_script) {
            tracing::warn!(worker = %s.id, "idle signal: {e}; listening again");
            let st = lock(&s.state);
            let _ = s
                .changed
                .wait_timeout_while(st, wait, |_| !s.stopping())
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// How long the idle-signal connection may be silent before it is checked with a `PING` (a
/// connection dropped without a word, by a NAT or a failover, would otherwise stay deaf).
const SIGNAL_CHECK: Duration = Duration::from_secs(10);

/// [`watch_idle`]'s work on one subscription: returns when the worker stops, or with the
/// error that broke the subscription.
fn listen(
    s: &Shared,
    wait: Duration,
    link: &mut Link,
    peers_script: &redis::Script,
) -> Result<(), redis::RedisError> {
    let mut conn = conn::open_plain(&s.target, &s.keys.tasks, wait)?;
    // Sent as a plain command so that a refusal (an ACL without the channel) is an error.
    redis::cmd("SUBSCRIBE")
        .arg(&s.keys.idle_signal)
        .query::<Value>(&mut conn)?;
    let mut sub = conn.as_pubsub();
    // A signal published before the subscription took hold was missed: look once now.
    offer(s, link, peers_script);
    let mut quiet_since = Instant::now();
    while !s.stopping() {
        let first = match sub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => {
                if quiet_since.elapsed() >= SIGNAL_CHECK {
                    sub.ping::<Value>()?;
                    quiet_since = Instant::now();
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        quiet_since = Instant::now();
        // Take what else is already there, so that a burst makes one offer.
        let mut from_others = first.get_payload_bytes() != s.id.as_bytes();
        sub.set_read_timeout(Some(Duration::from_millis(1)))?;
        loop {
            match sub.get_message() {
                Ok(m) => from_others |= m.get_payload_bytes() != s.id.as_bytes(),
                Err(e) if e.is_timeout() => break,
                Err(e) => return Err(e),
            }
        }
        sub.set_read_timeout(Some(wait))?;
        // Our own signal, or nothing waiting here: nothing to give (the heartbeat still
        // refreshes what peers have idle).
        if from_others && waiting(s, &lock(&s.state)) > 0 {
            offer(s, link, peers_script);
        }
    }
    Ok(())
}

/// The heartbeat thread: runs until the worker stops.
pub(super) fn heartbeat(s: &Shared) {
    let mut link = Link::new(s.target.clone(), &s.keys.tasks, Duration::from_secs(5));
    let peers_script = redis::Script::new(PEERS_IDLE);
    for n in 0u64.. {
        beat(s, &mut link, &peers_script);
        if n % 20 == 0 {
            forget_silent(s, &mut link);
        }
        let st = lock(&s.state);
        let (st, _) = s
            .changed
            .wait_timeout_while(st, s.heartbeat, |_| !s.stopping())
            .unwrap_or_else(|e| e.into_inner());
        // Keep beating while a stopping worker still finishes what it holds.
        if s.stopping() && st.held.is_empty() {
            return;
        }
        if s.stopping() {
            drop(st);
            std::thread::sleep(s.heartbeat);
        }
    }
}

/// The worker's first heartbeat, before it reads anything: a worker that finds the queue
/// empty at once signals idle processes, and peers count only the idle processes of workers
/// they see alive. Best effort: if Redis does not answer within a heartbeat, the heartbeat
/// thread's beats follow.
pub(super) fn first_beat(s: &Shared) {
    let mut link = Link::new(s.target.clone(), &s.keys.tasks, s.heartbeat);
    let _ = link.call(Some(Instant::now() + s.heartbeat), |c| {
        let mut pipe = redis::pipe();
        alive(s, &mut pipe);
        pipe.query::<()>(c)
    });
}

/// Adds to `pipe` what a beat says: the time in the heartbeat hash and, for a worker that
/// prefetches, its place in the set of prefetching workers (idle workers signal only while
/// one is there to hear it; written again at every beat, as a Redis restart may lose it).
fn alive(s: &Shared, pipe: &mut redis::Pipeline) {
    pipe.cmd("HSET")
        .arg(&s.keys.workers)
        .arg(&s.id)
        .arg(conn::now_ms())
        .ignore();
    if s.prefetch > 0 {
        pipe.cmd("SADD")
            .arg(&s.keys.prefetchers)
            .arg(&s.id)
            .ignore();
    }
}

/// Removes workers silent for [`FORGET_WORKER_MS`] from the heartbeat hash.
fn forget_silent(s: &Shared, link: &mut Link) {
    let deadline = Some(Instant::now() + s.heartbeat);
    let now = conn::now_ms();
    let _ = link.call(deadline, |c| {
        let all: Value = redis::cmd("HGETALL").arg(&s.keys.workers).query(c)?;
        let silent: Vec<String> = conn::items(&all)
            .chunks(2)
            .filter_map(|p| {
                let beat = u64::try_from(conn::int(p.get(1)?)?).ok()?;
                (now.saturating_sub(beat) > FORGET_WORKER_MS).then(|| conn::text(&p[0]))?
            })
            .collect();
        if silent.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        gone(s, &mut pipe, &silent);
        pipe.query::<()>(c)
    });
}

/// Adds to `pipe` the removal of workers `ids` from the queue's worker records: heartbeat,
/// idle mark, and the set of prefetching workers.
fn gone<I: redis::ToRedisArgs>(s: &Shared, pipe: &mut redis::Pipeline, ids: I) {
    pipe.cmd("HDEL").arg(&s.keys.workers).arg(&ids).ignore();
    pipe.cmd("HDEL").arg(&s.keys.idle).arg(&ids).ignore();
    pipe.cmd("SREM").arg(&s.keys.prefetchers).arg(&ids).ignore();
}

/// Sums the idle processes of the live workers other than `ARGV[1]` in the idle hash `KEYS[1]`
/// (alive: a heartbeat in `KEYS[2]` less than `ARGV[3]` ms before `ARGV[2]`), and reserves up
/// to `ARGV[4]` of them for the tasks this worker hands back (taken off their counts, so that
/// two workers that prefetch do not both fill one idle process): `{sum, reserved}`.
const PEERS_IDLE: &str = r"
local idle, want, sum = redis.call('HGETALL', KEYS[1]), tonumber(ARGV[4]), 0
local got = 0
for i = 1, #idle, 2 do
  local id, n = idle[i], tonumber(idle[i + 1]) or 0
  local beat = tonumber(redis.call('HGET', KEYS[2], id) or '')
  if id ~= ARGV[1] and beat and tonumber(ARGV[2]) - beat < tonumber(ARGV[3]) and n > 0 then
    sum = sum + n
    local take = math.min(n, want - got)
    if take > 0 then
      got = got + take
      if take == n then redis.pcall('HDEL', KEYS[1], id) else redis.pcall('HSET', KEYS[1], id, n - take) end
    end
  end
end
return {sum, got}
";

/// Tasks this worker could hand to idle peers: the ones waiting beyond its own idle processes.
fn waiting(s: &Shared, st: &super::State) -> usize {
    let waiting = st.held.values().filter(|h| h.waits()).count();
    waiting.saturating_sub(st.idle_processes(s.prefetch))
}

/// One beat: the time, the lease refresh of held entries, and their cancel marks; for a worker
/// that prefetches, also the idle processes of its peers (see [`PEERS_IDLE`]).
fn beat(s: &Shared, link: &mut Link, peers_script: &redis::Script) {
    let (held, busy): (Vec<(String, String)>, bool) = {
        let st = lock(&s.state);
        let held = st
            .held
            .iter()
            .map(|(e, h)| (e.clone(), h.task_id.clone()))
            .collect();
        (held, st.idle_processes(s.prefetch) == 0)
    };
    let deadline = Some(Instant::now() + s.heartbeat);
    let got = link.call(deadline, |c| {
        let mut pipe = redis::pipe();
        alive(s, &mut pipe);
        if busy {
            // Every process busy: not idle, even if a read's clearing of the mark was lost.
            pipe.cmd("HDEL").arg(&s.keys.idle).arg(&s.id).ignore();
        }
        if !held.is_empty() {
            let cmd = pipe
                .cmd("XCLAIM")
                .arg(&s.keys.tasks)
                .arg(GROUP)
                .arg(&s.id)
                .arg(0);
            for (entry, _) in &held {
                cmd.arg(entry);
            }
            cmd.arg("JUSTID").ignore();
            let cmd = pipe.cmd("ZMSCORE").arg(&s.keys.cancel);
            for (_, id) in &held {
                cmd.arg(id);
            }
        }
        pipe.query::<Vec<Value>>(c)
    });
    let Ok(Ok(v)) = got else { return };
    // The one reply not ignored: the cancel marks, when something is held.
    if let Some(marks) = v.first() {
        let st = lock(&s.state);
        for ((entry, _), mark) in held.iter().zip(conn::items(marks)) {
            if matches!(mark, Value::Nil) {
                continue;
            }
            if let Some(local) = st.held.get(entry).and_then(|h| h.local.as_ref()) {
                local.cancel();
            }
        }
    }
    // Only once the beat went through (a worker that cannot beat hands nothing to others).
    if s.prefetch > 0 {
        offer(s, link, peers_script);
    }
}

/// For a worker that prefetches: reserves idle processes of live peers (see [`PEERS_IDLE`]),
/// as many as it has tasks waiting beyond its own idle processes, and hands that many back to
/// the queue, where the idle peers' reads take them. Also records how many processes its
/// peers have idle, which limits its own reads while any peer idles. A script of its own, not
/// in the beat's pipeline: a script cannot be loaded on demand inside a pipeline.
fn offer(s: &Shared, link: &mut Link, peers_script: &redis::Script) {
    let _one_at_a_time = lock(&s.offering);
    let want = waiting(s, &lock(&s.state));
    let deadline = Some(Instant::now() + s.heartbeat);
    let got = link.call(deadline, |c| {
        peers_script
            .key(&s.keys.idle)
            .key(&s.keys.workers)
            .arg(&s.id)
            .arg(conn::now_ms())
            .arg(s.lease.as_millis() as u64)
            .arg(want)
            .invoke::<(u64, u64)>(c)
    });
    let Ok(Ok((sum, reserved))) = got else { return };
    let (sum, reserved) = (sum as usize, reserved as usize);
    let mut st = lock(&s.state);
    if sum != st.peers_idle {
        st.peers_idle = sum;
        s.changed.notify_all(); // the fetch loop may take more, or must take fewer
    }
    if reserved > 0 {
        let n = super::stop::hand_back(&mut st, reserved);
        if n > 0 {
            tracing::info!(worker = %s.id, "handing back {n} waiting tasks: other workers have {sum} idle processes");
        }
    }
}

/// `XAUTOCLAIM` of up to `free` entries idle longer than the lease (their holder stopped
/// refreshing them), from `cursor` on (updated; back to `0-0` after a full pass), with each
/// one's delivery count (the attempt number).
pub(super) fn reclaim(
    c: &mut dyn redis::ConnectionLike,
    s: &Shared,
    free: usize,
    cursor: &mut String,
) -> Result<Vec<(Entry, u64)>, redis::RedisError> {
    let v: Value = redis::cmd("XAUTOCLAIM")
        .arg(&s.keys.tasks)
        .arg(GROUP)
        .arg(&s.id)
        .arg(s.lease.as_millis() as u64)
        .arg(cursor.as_str())
        .arg("COUNT")
        .arg(free)
        .query(c)?;
    let parts = conn::items(&v);
    *cursor = parts
        .first()
        .and_then(conn::text)
        .unwrap_or_else(|| "0-0".to_owned());
    let mut claimed: Vec<Entry> = parts
        .get(1)
        .map(|list| conn::items(list).iter().filter_map(conn::entry).collect())
        .unwrap_or_default();
    // Entries deleted while pending: nothing to run; they are acknowledged (as malformed).
    if let Some(gone) = parts.get(2) {
        claimed.extend(
            conn::items(gone)
                .iter()
                .filter_map(conn::text)
                .map(|id| Entry {
                    id,
                    fields: Vec::new(),
                }),
        );
    }
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for e in &claimed {
        pipe.cmd("XPENDING")
            .arg(&s.keys.tasks)
            .arg(GROUP)
            .arg(&e.id)
            .arg(&e.id)
            .arg(1);
    }
    let counts: Vec<Value> = pipe.query(c)?;
    Ok(claimed
        .into_iter()
        .zip(counts)
        .map(|(e, v)| {
            // [[id, consumer, idle ms, delivery count]]
            let n = conn::items(&v)
                .first()
                .and_then(|row| conn::items(row).get(3))
                .and_then(conn::int)
                .unwrap_or(1);
            tracing::info!(worker = %s.id, entry = %e.id, attempt = n, "reclaimed a task");
            (e, u64::try_from(n).unwrap_or(1))
        })
        .collect())
}

/// Removes consumer `ARGV[2]` from group `ARGV[1]` of stream `KEYS[1]` only if it holds no
/// entry: `XGROUP DELCONSUMER` drops a consumer's pending entries, which nobody could reclaim
/// after. Returns how many it holds.
const LEAVE_IF_EMPTY: &str = r"
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return #held
";

/// Leaves the queue: removes the heartbeat, and the consumer if it holds nothing (it should
/// not; if an answer failed, the entry stays for a live worker to reclaim).
pub(super) fn leave(s: &Shared) {
    let mut link = Link::new(s.target.clone(), &s.keys.tasks, Duration::from_secs(5));
    let deadline = Some(Instant::now() + Duration::from_secs(2));
    let script = redis::Script::new(LEAVE_IF_EMPTY);
    let _ = link.call(deadline, |c| {
        let mut pipe = redis::pipe();
        gone(s, &mut pipe, &s.id);
        pipe.query::<()>(c)?;
        script
            .key(&s.keys.tasks)
            .arg(GROUP)
            .arg(&s.id)
            .invoke::<i64>(c)
    });
}
