//! The client's reader thread: blocks on its result stream (`XREAD BLOCK`), completes handles,
//! drops duplicates, keeps the stream short and alive, and fails the tasks that Redis lost.
//!
//! Loss is found by identity, not by noticing a reconnect: every connection records the
//! `run_id` of the Redis process it reaches, every pending task the process that took its
//! `XADD`. Whenever the reader reads from a process that some pending task was not seen on
//! (Redis restarted or failed over, before or after the reader first connected), it looks for
//! those tasks' entries there; a task with neither an entry nor a result was lost.

use crate::codec::{self, Outcome, WireError};
use crate::conn::{self, Entry, Link, lock};
use crate::keys;
use crate::shared::Inner;
use redis::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long one `XREAD` blocks: also how quickly the reader notices it should stop.
const BLOCK: Duration = Duration::from_millis(500);

/// The reader's loop; returns when the client stops it.
pub(crate) fn run(inner: &Inner) {
    let mut link = Link::new(
        inner.cfg.target.clone(),
        &inner.results_key,
        BLOCK + Duration::from_secs(5),
    );
    let mut last = "0-0".to_owned();
    // ORDERING: SeqCst pairs with the store in `Cluster::stop_reader`.
    while !inner.stop_reader.load(Ordering::SeqCst) {
        let deadline = Some(Instant::now() + Duration::from_secs(1));
        let got = link.call(deadline, |c| read(c, inner, &last, Some(BLOCK)));
        let entries = match got {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!("chi-cluster reader: {e}");
                std::thread::sleep(BLOCK);
                continue;
            }
            Err(e) => {
                tracing::debug!("chi-cluster reader: {}", e.0);
                continue;
            }
        };
        if let Some(e) = entries.last() {
            e.id.clone_into(&mut last);
        }
        deliver(inner, &entries);
        let server = link.server().clone();
        if lock(&inner.pending).reader_at(&server) {
            find_lost(inner, &mut link, &mut last, &server);
        }
        upkeep(inner, &mut link, &last);
    }
}

/// One `XREAD` of the result stream after `last`.
fn read(
    c: &mut dyn redis::ConnectionLike,
    inner: &Inner,
    last: &str,
    block: Option<Duration>,
) -> Result<Vec<Entry>, redis::RedisError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(1000);
    if let Some(b) = block {
        cmd.arg("BLOCK").arg(b.as_millis() as u64);
    }
    cmd.arg("STREAMS").arg(&inner.results_key).arg(last);
    let v: Value = cmd.query(c)?;
    Ok(conn::read_reply(&v))
}

/// Completes the handles the entries answer.
fn deliver(inner: &Inner, entries: &[Entry]) {
    use keys::result as f;
    for e in entries {
        let Some(seq) = e
            .text(f::ID)
            .and_then(|id| id.rsplit_once('-'))
            .and_then(|(_, s)| s.parse::<u64>().ok())
        else {
            tracing::warn!("chi-cluster: a result entry without a task id: {}", e.id);
            continue;
        };
        let payload = e.get(f::PAYLOAD).unwrap_or_default().to_vec();
        let outcome: Outcome = if e.text(f::KIND) == Some(f::OK) {
            Ok(payload)
        } else {
            Err(codec::decode::<WireError>(&payload)
                .unwrap_or_else(|err| WireError::Failed(format!("unreadable error reply: {err}"))))
        };
        let c = &inner.counters;
        // ORDERING: statistics.
        if e.number(f::ATTEMPT).is_some_and(|a| a > 1) {
            c.retried.fetch_add(1, Ordering::Relaxed);
        }
        inner.complete(seq, outcome, &|taken| {
            // ORDERING: statistics.
            if taken { &c.results } else { &c.duplicates }.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Trims what was read and refreshes the stream's time to live.
fn upkeep(inner: &Inner, link: &mut Link, last: &str) {
    let key = &inner.results_key;
    let ttl = inner.cfg.result_ttl.as_secs();
    let deadline = Some(Instant::now() + Duration::from_secs(1));
    let _ = link.call(deadline, |c| {
        redis::pipe()
            .cmd("XTRIM")
            .arg(key)
            .arg("MINID")
            .arg(last)
            .ignore()
            .cmd("EXPIRE")
            .arg(key)
            .arg(ttl)
            .ignore()
            .query::<()>(c)
    });
}

/// Looks on `server` (the process the reader just read from) for the pending tasks last seen
/// on another one. A task whose entry is gone and whose result is not in the result stream
/// either was lost (Redis restarted without persistence): its handle fails with a clear
/// error. Workers delete an entry in the same transaction that adds its result, so checking
/// the entries first and reading the results after leaves no window for a false loss. A
/// check cut short (Redis went away again) is asked for again.
fn find_lost(inner: &Inner, link: &mut Link, last: &mut String, server: &Arc<str>) {
    let suspects = lock(&inner.pending).suspects(server);
    if suspects.is_empty() {
        return;
    }
    if check(inner, link, last, server, &suspects).is_none() {
        lock(&inner.pending).recheck = true;
    }
}

/// [`find_lost`]'s work; `None` when the connection changed or failed on the way.
fn check(
    inner: &Inner,
    link: &mut Link,
    last: &mut String,
    server: &Arc<str>,
    suspects: &[(u64, String)],
) -> Option<()> {
    let tasks = &inner.cfg.keys.tasks;
    let epoch = link.epoch;
    let deadline = Some(Instant::now() + Duration::from_secs(5));
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut withdrawn = Vec::new();
    for chunk in suspects.chunks(500) {
        let r = link.call(deadline, |c| {
            let mut pipe = redis::pipe();
            for (seq, entry) in chunk {
                pipe.cmd("XRANGE").arg(tasks).arg(entry).arg(entry);
                pipe.cmd("ZSCORE")
                    .arg(&inner.cfg.keys.cancel)
                    .arg(inner.task_id(*seq));
            }
            pipe.query::<Vec<Value>>(c)
        });
        let Ok(Ok(replies)) = r else { return None };
        for ((seq, _), v) in chunk.iter().zip(replies.chunks(2)) {
            // The same entry id on a fresh server could only be another task: compare ids.
            let id = inner.task_id(*seq);
            let here = conn::items(&v[0])
                .first()
                .and_then(conn::entry)
                .is_some_and(|e| e.text(keys::task::ID) == Some(id.as_str()));
            // Gone but marked cancelled: taken back (by a `cancel_pending` whose answer was
            // lost), not lost.
            let marked = !matches!(v.get(1), None | Some(Value::Nil));
            if here {
                found.push(*seq);
            } else if marked {
                withdrawn.push(*seq);
            } else {
                missing.push(*seq);
            }
        }
    }
    // Read every result there is now, then fail what is still unanswered.
    loop {
        let r = link.call(deadline, |c| read(c, inner, last, None));
        let Ok(Ok(entries)) = r else { return None };
        if entries.is_empty() {
            break;
        }
        if let Some(e) = entries.last() {
            e.id.clone_into(last);
        }
        deliver(inner, &entries);
    }
    if link.epoch != epoch {
        return None; // another connection, maybe another server: the answers may mix
    }
    let _ = link.call(deadline, |c| conn::ensure_group(c, tasks));
    {
        let mut p = lock(&inner.pending);
        for seq in found {
            if let Some(t) = p.tasks.get_mut(&seq) {
                t.server = server.clone();
            }
        }
    }
    for seq in withdrawn {
        inner.complete(seq, Err(WireError::Cancelled), &|_| {});
    }
    for seq in missing {
        let msg = format!(
            "Redis lost task {}: it is neither queued nor answered (was Redis restarted without persistence?)",
            inner.task_id(seq)
        );
        inner.complete(seq, Err(WireError::Failed(msg)), &|taken| {
            if taken {
                // ORDERING: statistics.
                inner.counters.lost.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Some(())
}
