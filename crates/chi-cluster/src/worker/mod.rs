//! The worker: takes tasks from a queue's stream with a consumer group, runs them in a local
//! chi pool, answers on each client's result stream, heartbeats, and reclaims the tasks of
//! workers that died.

mod exec;
mod fetch;
mod lease;
mod reply;
mod stop;

use crate::codec::DEFAULT_MAX_PAYLOAD;
use crate::conn::{self, Link, Target, lock};
use crate::def::TaskDef;
use crate::error::ClusterError;
use crate::keys::QueueKeys;
use exec::{Local, LocalPool, Registered};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Settings of a [`Worker`]; [`Worker::builder`] makes one.
pub struct WorkerBuilder {
    url: Option<String>,
    queue: String,
    tasks: HashMap<&'static str, Registered>,
    processes: usize,
    prefetch: usize,
    threads: bool,
    heartbeat: Duration,
    lease: Duration,
    stop_grace: Duration,
    max_payload: usize,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("url", &self.url)
            .field("queue", &self.queue)
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .field("processes", &self.processes)
            .field("threads", &self.threads)
            .finish()
    }
}

impl WorkerBuilder {
    /// The Redis to serve (same URL forms as [`Cluster::connect`](crate::Cluster::connect)).
    pub fn connect(mut self, url: &str) -> Self {
        self.url = Some(url.to_owned());
        self
    }

    /// The queue to serve (default `default`).
    pub fn queue(mut self, name: &str) -> Self {
        name.clone_into(&mut self.queue);
        self
    }

    /// A task this worker runs.
    pub fn task<A, R>(mut self, def: &'static TaskDef<A, R>) -> Self
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.tasks
            .insert(def.name(), exec::register(def, self.max_payload));
        self
    }

    /// Runs tasks in a local [`chi::ProcessPool`] of `n` processes (the default, with `n` =
    /// the number of CPUs): a crash, a timeout or a cancel ends one process, not the worker.
    /// The program must call `chi::process_pool::init()` first thing in `main`.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self.threads = false;
        self
    }

    /// Runs tasks on a local [`chi::ThreadPool`] of `n` threads instead: less overhead, but
    /// a crashing task takes the whole worker down (its tasks are then reclaimed by others)
    /// and task timeouts and cancels of running tasks are not enforced.
    pub fn threads(mut self, n: usize) -> Self {
        self.processes = n;
        self.threads = true;
        self
    }

    /// Takes up to `n` tasks beyond its free processes (default 0): fewer round trips for many
    /// tiny tasks. They wait in the local pool's queue for whichever process is free first
    /// (never inside a busy process). When another worker of the queue finds it empty with
    /// processes idle, it signals (on a Redis pub/sub channel this worker listens on), and
    /// this one hands back to the queue as many of its waiting tasks as the others have idle
    /// processes (only tasks that have not started; the attempt count is unchanged), and
    /// takes no more than its own idle processes while that lasts. The idle worker's read takes them at
    /// once, and signals again when it is idle again: a task taken ahead waits behind a long
    /// one here, while another worker idles, for a few round trips to Redis per task ahead of
    /// it, not for the long task. The heartbeat makes the same offer, in case a signal was
    /// lost.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// How often the worker reports it is alive (default 500 ms).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long a silent worker keeps its tasks before live workers reclaim them (default 5 s).
    /// The reclaiming worker's lease decides, and the holder refreshes its tasks once per
    /// heartbeat: give every worker of a queue the same heartbeat and lease, or one with a
    /// short lease takes tasks from a live one with a long heartbeat.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a stopping worker lets the tasks it runs finish (default 30 s). Past it, they
    /// are stopped (a process-pool task is killed) and handed back to the queue, counted as a
    /// run; tasks it holds that have not started are handed back at once. See
    /// [`StopHandle::stop`].
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The largest encoded result sent back (default 64 MiB); a larger one is an error.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Connects, registers with the queue and starts the local pool.
    pub fn build(self) -> Result<Worker, ClusterError> {
        let url = self
            .url
            .ok_or_else(|| ClusterError::Config("no Redis URL (call connect)".into()))?;
        let target = Target::parse(&url)?;
        if self.processes == 0 {
            return Err(ClusterError::Config(
                "a worker needs at least one slot".into(),
            ));
        }
        if self.heartbeat.is_zero() || self.lease <= self.heartbeat * 2 {
            return Err(ClusterError::Config(
                "the lease must be more than twice the heartbeat interval".into(),
            ));
        }
        let pool = if self.threads {
            LocalPool::Thread(
                chi::ThreadPool::builder()
                    .max_workers(self.processes)
                    .thread_name("chi-cluster-task")
                    .build()
                    .map_err(|e| ClusterError::Pool(e.to_string()))?,
            )
        } else {
            // No task waits inside a process behind another, even while a process restarts
            // after a crash, a timeout or a cancel: prefetched tasks wait in the pool's own
            // queue, for whichever process is free first.
            let b = chi::ProcessPool::builder()
                .max_workers(self.processes)
                .max_in_flight(1);
            LocalPool::Process(b.build().map_err(|e| ClusterError::Pool(e.to_string()))?)
        };
        let keys = QueueKeys::new(&self.queue);
        let mut link = Link::new(target.clone(), &keys.tasks, Duration::from_secs(10));
        let deadline = Some(Instant::now() + Duration::from_secs(30));
        let n: i64 = link.call(deadline, |c| {
            conn::ensure_group(c, &keys.tasks)?;
            redis::cmd("INCR").arg(&keys.seq).query(c)
        })??;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let id = format!("w{n}-{}-{}", host.trim(), std::process::id());
        Ok(Worker {
            shared: Arc::new(Shared {
                id,
                keys,
                target,
                tasks: self.tasks,
                pool,
                slots: self.processes + self.prefetch,
                prefetch: self.prefetch,
                heartbeat: self.heartbeat,
                lease: self.lease,
                stop_grace: self.stop_grace,
                state: Mutex::new(State {
                    free: self.processes + self.prefetch,
                    peers_idle: 0,
                    held: HashMap::new(),
                    given_up: HashSet::new(),
                }),
                changed: Condvar::new(),
                offering: Mutex::new(()),
                stop: AtomicBool::new(false),
                finished: AtomicBool::new(false),
            }),
        })
    }

    /// [`build`](Self::build) and [`Worker::run`].
    pub fn run(self) -> Result<(), ClusterError> {
        self.build()?.run()
    }
}

/// A worker of one queue. [`run`](Worker::run) serves until [`StopHandle::stop`].
///
/// ```no_run
/// use chi_cluster::{TaskDef, Worker};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// static SQUARE: TaskDef<u64, u64> = TaskDef::new("square", square);
///
/// fn main() {
///     chi::process_pool::init(); // the local process pool's workers stop here
///     Worker::builder()
///         .connect("redis://127.0.0.1:6379")
///         .queue("default")
///         .task(&SQUARE)
///         .processes(4)
///         .run()
///         .unwrap();
/// }
/// ```
pub struct Worker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.id)
            .field("queue", &self.shared.keys.queue())
            .field("pool", &self.shared.pool)
            .finish()
    }
}

/// Stops a running [`Worker`] gracefully, losing nothing: it takes no new task, hands the
/// tasks it holds that have not started back to the queue at once (another worker takes them
/// without waiting for a lease to lapse), lets the running ones finish and answers them, and
/// [`Worker::run`] returns. Tasks still running after the
/// [stop grace](WorkerBuilder::stop_grace) are stopped and handed back too. Clonable; a
/// signal handler may hold one.
#[derive(Clone)]
pub struct StopHandle(Arc<Shared>);

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StopHandle({})", self.0.id)
    }
}

impl StopHandle {
    /// Asks the worker to stop (returns at once).
    pub fn stop(&self) {
        self.0.request_stop();
    }
}

/// What the worker's threads share.
pub(crate) struct Shared {
    pub(crate) id: String,
    pub(crate) keys: QueueKeys,
    pub(crate) target: Target,
    pub(crate) tasks: HashMap<&'static str, Registered>,
    pub(crate) pool: LocalPool,
    pub(crate) slots: usize,
    /// Of the slots, how many take tasks ahead of a free process.
    pub(crate) prefetch: usize,
    pub(crate) heartbeat: Duration,
    pub(crate) lease: Duration,
    pub(crate) stop_grace: Duration,
    pub(crate) state: Mutex<State>,
    pub(crate) changed: Condvar,
    /// Held through one whole offer of waiting tasks to idle peers (`lease::offer`), which
    /// the heartbeat and the idle-signal thread both make: two at once would reserve idle
    /// processes for the same waiting tasks.
    pub(crate) offering: Mutex<()>,
    pub(crate) stop: AtomicBool,
    /// Set once the worker holds nothing and reads nothing: the reply thread may end.
    pub(crate) finished: AtomicBool,
}

/// Slots and held tasks.
pub(crate) struct State {
    pub(crate) free: usize,
    /// Idle processes on other workers that find the queue empty, at the last offer (a
    /// heartbeat, or an idle signal while tasks wait; counted only by a worker that
    /// prefetches): while there are any, this one reads no more than it has idle processes
    /// itself.
    pub(crate) peers_idle: usize,
    /// Entry id → the task it holds.
    pub(crate) held: HashMap<String, Held>,
    /// Entries given up on (handed back while their run went on): a late outcome is dropped.
    pub(crate) given_up: HashSet<String>,
}

impl State {
    /// How many tasks the fetch loop may take now: every free slot, or only as many as
    /// processes are idle while another worker has idle ones too.
    pub(crate) fn readable(&self, prefetch: usize) -> usize {
        if self.peers_idle > 0 {
            self.idle_processes(prefetch)
        } else {
            self.free
        }
    }

    /// Processes with nothing to run: held tasks take processes before prefetch slots.
    pub(crate) fn idle_processes(&self, prefetch: usize) -> usize {
        self.free.saturating_sub(prefetch)
    }

    /// Takes the slot entry `entry` holds, if it still holds one: true exactly once per task.
    pub(crate) fn take_slot(&mut self, entry: &str) -> bool {
        self.held
            .get_mut(entry)
            .is_some_and(|h| std::mem::take(&mut h.slot))
    }
}

/// A task this worker holds (started, or about to be).
pub(crate) struct Held {
    pub(crate) task_id: String,
    /// Which run this is (earlier runs + this entry's delivery count).
    pub(crate) attempt: u64,
    pub(crate) local: Option<Local>,
    pub(crate) stop: Stop,
    /// It still occupies one of the worker's slots. A local run gives its slot back the
    /// moment it ends (the process is free), before its answer reaches Redis; whichever of
    /// that and the answer comes first releases it, exactly once.
    pub(crate) slot: bool,
}

impl Held {
    /// Held and not started: it may still be handed back.
    pub(crate) fn waits(&self) -> bool {
        self.stop == Stop::Serve
            && self
                .local
                .as_ref()
                .is_some_and(|l| !l.running() && !l.cancelled())
    }
}

/// What a stopping worker does with a task it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Serve it: run it and answer.
    Serve,
    /// It had not started and was taken back (a stopping worker, or one handing tasks to an
    /// idle peer): its `Cancelled` outcome puts it back in the queue, not counted as a run.
    HandBack,
    /// Past the grace: put back in the queue whatever its run does.
    GiveUp,
}

impl Shared {
    /// Gives `n` slots back and wakes the fetch loop.
    pub(crate) fn release_slots(&self, st: &mut State, n: usize) {
        if n > 0 {
            debug_assert!(st.free + n <= self.slots, "a slot released twice");
            if st.free + n > self.slots {
                tracing::error!(worker = %self.id, "{n} slots released with {} of {} free", st.free, self.slots);
            }
            st.free = (st.free + n).min(self.slots);
            self.changed.notify_all();
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        // ORDERING: SeqCst pairs with `request_stop`; the flag is also re-checked under the
        // state lock where it matters.
        self.stop.load(Ordering::SeqCst)
    }

    fn request_stop(&self) {
        // ORDERING: see `stopping`.
        self.stop.store(true, Ordering::SeqCst);
        let _guard = lock(&self.state);
        self.changed.notify_all();
    }
}

impl Worker {
    /// All the settings.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder {
            url: None,
            queue: "default".to_owned(),
            tasks: HashMap::new(),
            processes: thread::available_parallelism().map_or(1, usize::from),
            prefetch: 0,
            threads: false,
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(5),
            stop_grace: Duration::from_secs(30),
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }

    /// This worker's consumer name in the group (also its key in the heartbeat hash).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// A handle that stops [`run`](Self::run) gracefully.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.shared.clone())
    }

    /// Serves the queue until stopped, then hands back what has not started, finishes and
    /// answers what runs (within the stop grace), leaves the group and shuts the local pool
    /// down.
    pub fn run(self) -> Result<(), ClusterError> {
        let shared = self.shared;
        lease::first_beat(&shared);
        let (tx, rx) = mpsc::channel();
        let replies = {
            let s = shared.clone();
            thread::Builder::new()
                .name("chi-cluster-reply".into())
                .spawn(move || reply::run(&s, &rx))
                .map_err(|e| ClusterError::Pool(e.to_string()))?
        };
        let beats = {
            let s = shared.clone();
            thread::Builder::new()
                .name("chi-cluster-beat".into())
                .spawn(move || lease::heartbeat(&s))
                .map_err(|e| ClusterError::Pool(e.to_string()))?
        };
        let watcher = if shared.prefetch > 0 {
            let s = shared.clone();
            let spawned = thread::Builder::new()
                .name("chi-cluster-idle".into())
                .spawn(move || lease::watch_idle(&s));
            match spawned {
                Ok(w) => Some(w),
                Err(e) => {
                    // Nothing was read yet: stop the threads already started.
                    shared.request_stop();
                    drop(tx);
                    let _ = replies.join();
                    let _ = beats.join();
                    return Err(ClusterError::Pool(e.to_string()));
                }
            }
        } else {
            None
        };
        let result = fetch::run(&shared, &tx);
        // Graceful end: everything held is answered or handed back before the threads stop.
        let gave_up = stop::wind_down(&shared, &tx);
        shared.request_stop();
        // ORDERING: SeqCst pairs with the reply thread's load; nothing held is left to answer.
        shared.finished.store(true, Ordering::SeqCst);
        drop(tx);
        let _ = replies.join();
        let _ = beats.join();
        if let Some(w) = watcher {
            let _ = w.join();
        }
        lease::leave(&shared);
        if gave_up && matches!(shared.pool, LocalPool::Thread(_)) {
            // Its threads cannot be stopped; what they run was handed back already.
            tracing::warn!(worker = %shared.id, "leaving tasks running on the thread pool");
        } else {
            shared.pool.shutdown();
        }
        result
    }
}
