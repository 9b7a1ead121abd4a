//! Connections to Redis (one server or a Redis Cluster), reconnecting with back-off, and
//! small readers for the replies chi-cluster parses itself.

use redis::{ConnectionLike, RedisError, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Where Redis is: one server, or the startup nodes of a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Single(String),
    Cluster(Vec<String>),
}

impl Target {
    /// `redis://host:port` is one server; several URLs separated by commas are the start
    /// nodes of a Redis Cluster (as is one URL with the `redis+cluster://` scheme). A URL the
    /// `redis` crate cannot read is a configuration error, found here rather than by a
    /// connect that retries until its deadline.
    pub(crate) fn parse(url: &str) -> Result<Target, crate::ClusterError> {
        let target = Target::split(url);
        let urls = match &target {
            Target::Single(u) => std::slice::from_ref(u),
            Target::Cluster(us) => us.as_slice(),
        };
        let bad = |why: String| crate::ClusterError::Config(format!("Redis URL {url:?}: {why}"));
        if urls.iter().all(String::is_empty) {
            return Err(bad("no URL given".into()));
        }
        for u in urls {
            redis::IntoConnectionInfo::into_connection_info(u.as_str())
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(target)
    }

    fn split(url: &str) -> Target {
        let urls: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix("redis+cluster://") {
                Some(rest) => format!("redis://{rest}"),
                None => s.to_owned(),
            })
            .collect();
        if urls.len() > 1 || url.trim_start().starts_with("redis+cluster://") {
            Target::Cluster(urls)
        } else {
            Target::Single(urls.into_iter().next().unwrap_or_default())
        }
    }
}

/// An open connection of either kind.
pub(crate) type Conn = Box<dyn ConnectionLike + Send>;

/// Opens a connection whose reads give up after `read_timeout` (a blocking command must
/// block for less than that). In a Redis Cluster, the connection goes to the node that owns
/// `route_key`'s slot: every key of a queue shares one hash tag, so one node serves them all,
/// and a `MOVED` reply (resharding, failover) makes the link reconnect and look again.
pub(crate) fn open(
    target: &Target,
    route_key: &str,
    read_timeout: Duration,
) -> Result<Conn, RedisError> {
    Ok(Box::new(open_plain(target, route_key, read_timeout)?))
}

/// [`open`]'s connection as redis-rs's own type (for what needs it, such as pub/sub).
pub(crate) fn open_plain(
    target: &Target,
    route_key: &str,
    read_timeout: Duration,
) -> Result<redis::Connection, RedisError> {
    let info = match target {
        Target::Single(url) => redis::IntoConnectionInfo::into_connection_info(url.as_str())?,
        Target::Cluster(urls) => owner_of(urls, route_key, read_timeout)?,
    };
    let conn = redis::Client::open(info)?.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(read_timeout))?;
    conn.set_write_timeout(Some(read_timeout))?;
    Ok(conn)
}

/// Asks the startup nodes, in turn, which node serves the slot of `key`.
fn owner_of(
    urls: &[String],
    key: &str,
    timeout: Duration,
) -> Result<redis::ConnectionInfo, RedisError> {
    let mut last = RedisError::from((
        redis::ErrorKind::Client,
        "no Redis Cluster startup node given",
    ));
    for url in urls {
        let r = (|| {
            let start = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
            let mut c = redis::Client::open(start.clone())?
                .get_connection_with_timeout(Duration::from_secs(2))?;
            c.set_read_timeout(Some(timeout))?;
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query(&mut c)?;
            let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c)?;
            for range in items(&slots) {
                let r = items(range);
                let (Some(lo), Some(hi)) = (r.first().and_then(int), r.get(1).and_then(int)) else {
                    continue;
                };
                if (lo..=hi).contains(&slot) {
                    let master = r.get(2).map(items).unwrap_or_default();
                    let host = master.first().and_then(text).unwrap_or_default();
                    let port = master.get(1).and_then(int).unwrap_or(0);
                    let host = if host.is_empty() || host == "?" {
                        match start.addr() {
                            redis::ConnectionAddr::Tcp(h, _) => h.clone(),
                            _ => "127.0.0.1".to_owned(),
                        }
                    } else {
                        host
                    };
                    let port = u16::try_from(port).map_err(|_| {
                        RedisError::from((redis::ErrorKind::Parse, "bad port in CLUSTER SLOTS"))
                    })?;
                    return Ok(start.set_addr(redis::ConnectionAddr::Tcp(host, port)));
                }
            }
            Err(RedisError::from((
                redis::ErrorKind::Client,
                "no node serves the queue's slot (CLUSTERDOWN?)",
            )))
        })();
        match r {
            Ok(info) => return Ok(info),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A connection that reopens itself: [`Link::call`] retries a request across reconnects,
/// with back-off, until a deadline.
pub(crate) struct Link {
    target: Target,
    route_key: String,
    read_timeout: Duration,
    conn: Option<Conn>,
    /// Incremented on every successful (re)connect, so callers can notice a reconnect.
    pub(crate) epoch: u64,
    /// The identity of the Redis process the connection reaches: its `run_id`, new on every
    /// start of a server, so a restart (or a failover) shows as a change.
    server: Arc<str>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("target", &self.target)
            .field("connected", &self.conn.is_some())
            .field("epoch", &self.epoch)
            .field("server", &self.server)
            .finish()
    }
}

/// A request that failed past its deadline, with the last error seen.
#[derive(Debug)]
pub(crate) struct Unavailable(pub(crate) String);

impl Link {
    /// A link for commands on `route_key` and keys with the same hash tag.
    pub(crate) fn new(target: Target, route_key: &str, read_timeout: Duration) -> Link {
        Link {
            target,
            route_key: route_key.to_owned(),
            read_timeout,
            conn: None,
            epoch: 0,
            server: Arc::from(""),
        }
    }

    /// The identity of the server the last successful call reached (see [`server_id`]);
    /// empty before the first connection.
    pub(crate) fn server(&self) -> &Arc<str> {
        &self.server
    }

    /// Runs `f` on a live connection. A connection-level error (I/O, refused, dropped) drops
    /// the connection and tries again after a pause (10 ms doubling to 500 ms) until
    /// `deadline`; a server error (a reply) is returned as is. `None` means no deadline.
    pub(crate) fn call<T>(
        &mut self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&mut dyn ConnectionLike) -> Result<T, RedisError>,
    ) -> Result<Result<T, RedisError>, Unavailable> {
        let mut pause = Duration::from_millis(10);
        loop {
            let err = match self.connected() {
                Ok(conn) => match f(conn) {
                    Ok(v) => return Ok(Ok(v)),
                    Err(e) if is_connection_error(&e) => {
                        self.conn = None;
                        e
                    }
                    Err(e) => return Ok(Err(e)),
                },
                Err(e) => e,
            };
            let now = Instant::now();
            if deadline.is_some_and(|d| now + pause > d) {
                return Err(Unavailable(format!("Redis unreachable: {err}")));
            }
            tracing::debug!("redis: {err}; retrying in {pause:?}");
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    fn connected(&mut self) -> Result<&mut dyn ConnectionLike, RedisError> {
        if self.conn.is_none() {
            let mut conn = open(&self.target, &self.route_key, self.read_timeout)?;
            self.server = server_id(conn.as_mut())?;
            self.conn = Some(conn);
            self.epoch += 1;
        }
        match self.conn.as_mut() {
            Some(c) => Ok(c.as_mut()),
            None => unreachable!("connected just above"),
        }
    }
}

/// The `run_id` of the Redis process behind `conn` (`INFO server`): random at every start of
/// a server, so two connections reach the same process only if their ids are equal. A server
/// that refuses `INFO` gets an id of its own per connection: every reconnect then counts as
/// a possible restart, which costs checks, never correctness.
pub(crate) fn server_id(conn: &mut dyn ConnectionLike) -> Result<Arc<str>, RedisError> {
    static UNKNOWN: AtomicU64 = AtomicU64::new(0);
    let info: Result<String, RedisError> = redis::cmd("INFO").arg("server").query(conn);
    let run_id = match info {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned()),
        Err(e) if is_connection_error(&e) => return Err(e),
        Err(_) => None,
    };
    Ok(Arc::from(run_id.unwrap_or_else(|| {
        // ORDERING: only uniqueness matters.
        let n = UNKNOWN.fetch_add(1, Ordering::Relaxed);
        format!("unknown-{n}")
    })))
}

/// Locks `m`, ignoring poisoning (every critical section here leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Errors after which the connection is not trusted any more.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.is_cluster_error()
        || matches!(
            e.code(),
            // READONLY: the server was demoted to a replica (failover behind one address).
            Some("LOADING" | "MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN" | "READONLY")
        )
}

/// True for the error Redis gives when a consumer group (or its stream) does not exist.
pub(crate) fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// Creates the task stream and its consumer group if missing.
pub(crate) fn ensure_group(conn: &mut dyn ConnectionLike, tasks: &str) -> Result<(), RedisError> {
    let r: Result<Value, RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(tasks)
        .arg(crate::keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(conn);
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

// ===== reading replies =====

/// One stream entry: its id and its fields in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|b| std::str::from_utf8(b).ok())
    }

    pub(crate) fn number(&self, name: &str) -> Option<u64> {
        self.text(name).and_then(|s| s.parse().ok())
    }
}

/// The bytes of a string-like value.
pub(crate) fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// A string-like value as text.
pub(crate) fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// An integer, or a string holding one.
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => text(v).and_then(|s| s.parse().ok()),
    }
}

/// The items of an array (or set) value; empty for nil.
pub(crate) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// One entry `[id, [field, value, ...]]`; `None` for a deleted entry (nil fields).
pub(crate) fn entry(v: &Value) -> Option<Entry> {
    let parts = items(v);
    let id = text(parts.first()?)?;
    let flat = items(parts.get(1)?);
    if flat.is_empty() {
        return None;
    }
    let mut fields = Vec::with_capacity(flat.len() / 2);
    for pair in flat.chunks(2) {
        if let [k, v] = pair {
            fields.push((text(k)?, bytes(v)?));
        }
    }
    Some(Entry { id, fields })
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream (nil: none). Deleted entries
/// (a pending entry whose data is gone) come back with their id and no fields.
pub(crate) fn read_reply(v: &Value) -> Vec<Entry> {
    let mut out = Vec::new();
    for stream in items(v) {
        // RESP2: [name, entries]; RESP3 maps are not requested.
        if let Some(list) = items(stream).get(1) {
            for e in items(list) {
                match entry(e) {
                    Some(entry) => out.push(entry),
                    None => {
                        if let Some(id) = items(e).first().and_then(text) {
                            out.push(Entry {
                                id,
                                fields: Vec::new(),
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_one_server_or_a_cluster() {
        assert_eq!(
            Target::split("redis://127.0.0.1:7000"),
            Target::Single("redis://127.0.0.1:7000".into())
        );
        assert_eq!(
            Target::split("redis://a:1,redis://b:2"),
            Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(
            Target::split("redis+cluster://a:1"),
            Target::Cluster(vec!["redis://a:1".into()])
        );
    }

    #[test]
    fn unreadable_urls_are_configuration_errors() {
        for bad in [
            "",
            " , ",
            "localhost:6379",
            "http://a:1",
            "redis://a:1,nonsense",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(crate::ClusterError::Config(_))),
                "{bad:?}"
            );
        }
        assert!(Target::parse("redis://127.0.0.1:1").is_ok());
    }

    #[test]
    fn a_read_reply_parses_and_keeps_deleted_ids() {
        let bs = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bs("s"),
            Value::Array(vec![
                Value::Array(vec![bs("1-0"), Value::Array(vec![bs("id"), bs("x")])]),
                Value::Array(vec![bs("2-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(&reply);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text("id"), Some("x"));
        assert!(got[1].fields.is_empty());
        assert_eq!(got[1].id, "2-0");
    }
}
