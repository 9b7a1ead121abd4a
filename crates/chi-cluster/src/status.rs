//! [`status`]: what a queue looks like right now (for `chi cluster status`).

use crate::conn::{self, Link, Target};
use crate::error::ClusterError;
use crate::keys::{self, GROUP, QueueKeys};
use redis::Value;
use serde::Serialize;
use std::time::{Duration, Instant};

/// One queue's state.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct QueueStatus {
    /// The queue's name.
    pub queue: String,
    /// Tasks in the stream: waiting or running.
    pub depth: u64,
    /// Tasks delivered to a worker and not yet answered.
    pub running: u64,
    /// Workers that heartbeat on this queue.
    pub workers: Vec<WorkerStatus>,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
    /// The newest dead letters (at most 5): task id, name, attempts.
    pub recent_dead: Vec<(String, String, u64)>,
    /// Tasks answered per second over the last 10 seconds.
    pub throughput: f64,
}

/// One worker as the queue sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// The worker's id.
    pub id: String,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
    /// Tasks it holds.
    pub holding: u64,
    /// Its idle processes, while it finds the queue empty (0 when it is busy); workers that
    /// prefetch hand these their waiting tasks.
    pub idle: u64,
}

/// Reads the state of `queue` on the Redis at `url`.
pub fn status(url: &str, queue: &str) -> Result<QueueStatus, ClusterError> {
    let k = QueueKeys::new(queue);
    let mut link = Link::new(Target::parse(url)?, &k.tasks, Duration::from_secs(5));
    let deadline = Some(Instant::now() + Duration::from_secs(5));
    let now = conn::now_ms();
    let sec = now / 1000;
    let v: Vec<Value> = link.call(deadline, |c| {
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(&k.tasks);
        pipe.cmd("HGETALL").arg(&k.workers);
        pipe.cmd("XLEN").arg(&k.dead);
        pipe.cmd("XREVRANGE")
            .arg(&k.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(5);
        pipe.cmd("HGETALL").arg(&k.idle);
        for s in sec.saturating_sub(10)..sec {
            pipe.cmd("GET").arg(k.done(s));
        }
        pipe.query(c)
    })??;
    let holding = pending_by_consumer(&mut link, &k)?;
    let idle: Vec<(String, u64)> = conn::items(&v[4])
        .chunks(2)
        .filter_map(|p| {
            let n = u64::try_from(conn::int(p.get(1)?)?).ok()?;
            Some((conn::text(&p[0])?, n))
        })
        .collect();
    let mut workers: Vec<WorkerStatus> = conn::items(&v[1])
        .chunks(2)
        .filter_map(|pair| {
            let id = conn::text(pair.first()?)?;
            let beat = conn::int(pair.get(1)?)?;
            Some(WorkerStatus {
                heartbeat_age_ms: now.saturating_sub(u64::try_from(beat).unwrap_or(0)),
                holding: holding
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map_or(0, |(_, n)| *n),
                idle: idle.iter().find(|(c, _)| *c == id).map_or(0, |(_, n)| *n),
                id,
            })
        })
        .collect();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    let recent_dead = conn::items(&v[3])
        .iter()
        .filter_map(conn::entry)
        .map(|e| {
            use keys::dead as d;
            (
                e.text(d::ID).unwrap_or("?").to_owned(),
                e.text(d::NAME).unwrap_or("?").to_owned(),
                e.number(d::ATTEMPTS).unwrap_or(0),
            )
        })
        .collect();
    let done: i64 = v[5..].iter().filter_map(conn::int).sum();
    Ok(QueueStatus {
        queue: queue.to_owned(),
        depth: conn::int(&v[0])
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        running: holding.iter().map(|(_, n)| n).sum(),
        workers,
        dead_letters: conn::int(&v[2])
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        recent_dead,
        throughput: done as f64 / 10.0,
    })
}

/// `XPENDING tasks workers` summary: tasks held per consumer (empty when there is no group).
fn pending_by_consumer(link: &mut Link, k: &QueueKeys) -> Result<Vec<(String, u64)>, ClusterError> {
    let deadline = Some(Instant::now() + Duration::from_secs(5));
    let r = link.call(deadline, |c| {
        redis::cmd("XPENDING")
            .arg(&k.tasks)
            .arg(GROUP)
            .query::<Value>(c)
    })?;
    let v = match r {
        Ok(v) => v,
        Err(e) if conn::is_nogroup(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // [count, min id, max id, [[consumer, count], ...]]
    let per = conn::items(&v).get(3).map(conn::items).unwrap_or_default();
    Ok(per
        .iter()
        .filter_map(|row| {
            let row = conn::items(row);
            Some((
                conn::text(row.first()?)?,
                conn::int(row.get(1)?).and_then(|n| u64::try_from(n).ok())?,
            ))
        })
        .collect())
}

/// The queues that have a task stream on the Redis at `url` (every startup node of a Redis
/// Cluster is scanned, so pass them all to see every queue).
pub fn queues(url: &str) -> Result<Vec<String>, ClusterError> {
    let urls = match Target::parse(url)? {
        Target::Single(u) => vec![u],
        Target::Cluster(us) => us,
    };
    let mut out = Vec::new();
    for u in urls {
        let mut link = Link::new(Target::Single(u), "", Duration::from_secs(5));
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        let mut cursor = "0".to_owned();
        loop {
            let v: Value = link.call(deadline, |c| {
                redis::cmd("SCAN")
                    .arg(&cursor)
                    .arg("MATCH")
                    .arg("chi:{*}:tasks")
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)
            })??;
            let parts = conn::items(&v);
            for k in parts.get(1).map(conn::items).unwrap_or_default() {
                if let Some(q) = conn::text(k).as_deref().and_then(queue_of) {
                    out.push(q.to_owned());
                }
            }
            cursor = parts.first().and_then(conn::text).unwrap_or_default();
            if cursor == "0" || cursor.is_empty() {
                break;
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `q` of a key `chi:{q}:tasks`.
fn queue_of(key: &str) -> Option<&str> {
    key.strip_prefix("chi:{")?.strip_suffix("}:tasks")
}
