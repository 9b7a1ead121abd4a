//! The client: [`Cluster`] submits tasks to a queue and completes their [`Task`] handles from
//! its result stream.

use crate::codec::{DEFAULT_MAX_PAYLOAD, WireError};
use crate::conn::{self, Link, Target, lock};
use crate::def::TaskDef;
use crate::error::{ClusterError, SubmitError};
use crate::keys::QueueKeys;
use crate::map::ClusterMap;
use crate::reader;
use crate::shared::{Admit, BOUNDED_ADD, Config, Counters, Inner, Pending, PendingSet, TAKE_BACK};
use chi::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Settings of a [`Cluster`] client; [`Cluster::builder`] makes one.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    url: String,
    queue: String,
    queue_bound: Option<usize>,
    result_ttl: Duration,
    broker_timeout: Duration,
    max_attempts: u32,
    max_payload: usize,
    task_timeout: Option<Duration>,
}

impl ClusterBuilder {
    fn new(url: &str) -> ClusterBuilder {
        ClusterBuilder {
            url: url.to_owned(),
            queue: "default".to_owned(),
            queue_bound: None,
            result_ttl: Duration::from_secs(3600),
            broker_timeout: Duration::from_secs(30),
            max_attempts: 3,
            max_payload: DEFAULT_MAX_PAYLOAD,
            task_timeout: None,
        }
    }

    /// The queue to submit to (default `default`). Workers serve queues by name.
    pub fn queue(mut self, name: &str) -> Self {
        name.clone_into(&mut self.queue);
        self
    }

    /// The most tasks the queue holds, waiting or running. `submit` blocks while it is full,
    /// `try_submit` fails with [`SubmitError::Full`]. Default: unbounded.
    pub fn queue_bound(mut self, bound: usize) -> Self {
        self.queue_bound = Some(bound);
        self
    }

    /// How long results are kept for this client once it stops reading them (its process
    /// died). Default 1 hour.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// How long a submit keeps retrying while Redis is unreachable before it fails with
    /// [`SubmitError::Unavailable`]. Default 30 s.
    pub fn broker_timeout(mut self, timeout: Duration) -> Self {
        self.broker_timeout = timeout;
        self
    }

    /// How many times a task may be delivered to workers that die holding it. Default 3.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The largest encoded argument accepted (default 64 MiB); a larger one is refused at
    /// submit.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// A deadline for every task of this client that has none of its own.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Connects, creates the queue if it is new, and starts the result reader.
    pub fn connect(self) -> Result<Cluster, ClusterError> {
        if self.max_attempts == 0 {
            return Err(ClusterError::Config(
                "max_attempts must be at least 1".into(),
            ));
        }
        if self.result_ttl < Duration::from_secs(1) {
            return Err(ClusterError::Config(
                "result_ttl must be at least 1 s".into(),
            ));
        }
        if self.queue.is_empty() || self.queue.contains(['{', '}']) {
            return Err(ClusterError::Config(format!(
                "queue name {:?} must be non-empty without braces",
                self.queue
            )));
        }
        let cfg = Config {
            target: Target::parse(&self.url)?,
            keys: QueueKeys::new(&self.queue),
            queue_bound: self.queue_bound,
            result_ttl: self.result_ttl,
            broker_timeout: self.broker_timeout,
            max_attempts: self.max_attempts,
            max_payload: self.max_payload,
            task_timeout: self.task_timeout,
        };
        Cluster::start(cfg)
    }
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClientMetrics {
    /// Tasks submitted.
    pub submitted: u64,
    /// Results that completed a handle.
    pub results: u64,
    /// Results dropped because their task already had one (or was cancelled).
    pub duplicates: u64,
    /// Results that came from a second or later delivery (a worker died holding the task).
    pub retried: u64,
    /// Tasks that vanished from Redis (restarted without persistence) and failed.
    pub lost: u64,
    /// Tasks waiting for a result now.
    pub pending: usize,
}

/// A client of a chi cluster: submits typed tasks to a Redis queue and returns chi's own
/// [`Task`] handles, completed by a reader thread as results arrive.
///
/// See the [crate docs](crate) for an example and the delivery semantics.
pub struct Cluster {
    inner: Arc<Inner>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("client", &self.inner.client_id)
            .field("queue", &self.inner.cfg.keys.queue())
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl Cluster {
    /// Connects to the queue `default` with default settings. `url` is `redis://host:port`
    /// for one Redis, or several such URLs separated by commas for a Redis Cluster.
    pub fn connect(url: &str) -> Result<Cluster, ClusterError> {
        Cluster::builder(url).connect()
    }

    /// All the settings.
    pub fn builder(url: &str) -> ClusterBuilder {
        ClusterBuilder::new(url)
    }

    fn start(cfg: Config) -> Result<Cluster, ClusterError> {
        let mut link = Link::new(cfg.target.clone(), &cfg.keys.tasks, Duration::from_secs(10));
        let deadline = Some(Instant::now() + cfg.broker_timeout);
        let tasks = cfg.keys.tasks.clone();
        let seq_key = cfg.keys.seq.clone();
        let n: i64 = link.call(deadline, |c| {
            conn::ensure_group(c, &tasks)?;
            redis::cmd("INCR").arg(&seq_key).query(c)
        })??;
        let client_id = format!("c{n}");
        let server = link.server().clone();
        let inner = Arc::new(Inner {
            results_key: cfg.keys.results(&client_id),
            client_id,
            cfg,
            link: Mutex::new(link),
            pending: Mutex::new(PendingSet::new(server)),
            seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            stop_reader: AtomicBool::new(false),
            counters: Counters::default(),
            bounded_add: redis::Script::new(BOUNDED_ADD),
            take_back: redis::Script::new(TAKE_BACK),
        });
        let for_reader = inner.clone();
        let reader = thread::Builder::new()
            .name("chi-cluster-results".into())
            .spawn(move || reader::run(&for_reader))
            .map_err(|e| ClusterError::Config(format!("cannot start the reader thread: {e}")))?;
        Ok(Cluster {
            inner,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// This client's id (its result stream is `chi:{queue}:res:<id>`).
    pub fn id(&self) -> &str {
        &self.inner.client_id
    }

    /// The queue this client submits to.
    pub fn queue(&self) -> &str {
        self.inner.cfg.keys.queue()
    }

    /// Runs `def` with `arg` on some worker of the queue. Blocks while a bounded queue is
    /// full; while Redis is unreachable it retries up to the broker timeout, then fails with
    /// [`SubmitError::Unavailable`].
    pub fn submit<A, R>(&self, def: &TaskDef<A, R>, arg: A) -> Result<Task<R>, SubmitError<A>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        self.inner.submit(def, arg, Admit::Until(None))
    }

    /// Like [`submit`](Self::submit), but fails with [`SubmitError::Full`] at once when a
    /// bounded queue is full.
    pub fn try_submit<A, R>(&self, def: &TaskDef<A, R>, arg: A) -> Result<Task<R>, SubmitError<A>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        self.inner.submit(def, arg, Admit::Now)
    }

    /// Like [`submit`](Self::submit), but waits at most `timeout` for room in a bounded queue
    /// ([`SubmitError::Timeout`]) or for Redis ([`SubmitError::Unavailable`]).
    pub fn submit_timeout<A, R>(
        &self,
        def: &TaskDef<A, R>,
        arg: A,
        timeout: Duration,
    ) -> Result<Task<R>, SubmitError<A>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        self.inner
            .submit(def, arg, Admit::Until(Instant::now().checked_add(timeout)))
    }

    /// `def` over every item of `args`: results in input order, lazily, with at most
    /// `lookahead` tasks submitted ahead of the one being read (submitted in pipelined
    /// batches). A task that could not be submitted yields its error in its place.
    pub fn map<A, R, I>(
        &self,
        def: &TaskDef<A, R>,
        args: I,
        lookahead: usize,
    ) -> ClusterMap<'_, A, R, I::IntoIter>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        ClusterMap::new(&self.inner, def, args.into_iter(), lookahead.max(1))
    }

    /// A snapshot of this client's counters.
    pub fn metrics(&self) -> ClientMetrics {
        let c = &self.inner.counters;
        // ORDERING: plain statistics; no other memory depends on them.
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientMetrics {
            submitted: get(&c.submitted),
            results: get(&c.results),
            duplicates: get(&c.duplicates),
            retried: get(&c.retried),
            lost: get(&c.lost),
            pending: lock(&self.inner.pending).tasks.len(),
        }
    }

    /// Stops accepting tasks, waits until every submitted task has its result (or was
    /// cancelled), then stops the reader and deletes this client's result stream.
    pub fn shutdown(&self) {
        // ORDERING: SeqCst orders the flag before the pending-map check below, against the
        // submit path's check of the flag after it registers.
        self.inner.closed.store(true, Ordering::SeqCst);
        let mut pause = Duration::from_millis(1);
        while !lock(&self.inner.pending).tasks.is_empty() && self.reader_alive() {
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        self.stop_reader();
        let key = self.inner.results_key.clone();
        let deadline = Some(Instant::now() + Duration::from_secs(2));
        let _ =
            lock(&self.inner.link).call(deadline, |c| redis::cmd("DEL").arg(&key).query::<i64>(c));
    }

    fn reader_alive(&self) -> bool {
        lock(&self.reader)
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    fn stop_reader(&self) {
        // ORDERING: the reader reads the flag with SeqCst between blocking reads.
        self.inner.stop_reader.store(true, Ordering::SeqCst);
        if let Some(h) = lock(&self.reader).take() {
            let _ = h.join();
        }
        let left: Vec<Pending> = lock(&self.inner.pending)
            .tasks
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in left {
            let e =
                WireError::Failed("the cluster client shut down before the result arrived".into());
            (p.finish)(Err(e), &|_| {});
        }
    }
}

impl Drop for Cluster {
    /// Stops the reader without waiting for results: handles still pending fail with
    /// [`TaskError::PoolFailed`](chi::TaskError::PoolFailed). Call [`shutdown`](Cluster::shutdown) to wait for them.
    fn drop(&mut self) {
        // ORDERING: see `shutdown`.
        self.inner.closed.store(true, Ordering::SeqCst);
        self.stop_reader();
    }
}
