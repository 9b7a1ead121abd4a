//! Peer adapters and scenarios for the side-by-side thread-pool benchmarks.
//!
//! Every pool under test (chi and each peer) is wrapped in a [`Pool`]: submit a closure, get a
//! handle, block on the handle for the value. The scenario functions in [`scenario`] are
//! generic over [`Pool`], so chi and every peer run exactly the same code, the same closures
//! and the same checks; only the adapter differs. Both the criterion bench
//! (`benches/pools.rs`) and the interleaved runner (`src/bin/pool_bench.rs`) call them.
//!
//! The peers:
//!
//! | id | pool | handle |
//! |---|---|---|
//! | `chi` | `chi::ThreadPool` | `chi::Task` |
//! | `rayon` | `rayon::ThreadPool::spawn` | `oneshot` channel |
//! | `tokio_blocking` | tokio multi-thread runtime, `spawn_blocking` (blocking threads = workers) | `JoinHandle` |
//! | `tokio_spawn` | tokio multi-thread runtime (async workers = workers), `spawn` | `JoinHandle` |
//! | `threadpool` | the `threadpool` crate | `oneshot` channel |
//! | `channel_pool` | N threads reading boxed closures from a crossbeam channel | `oneshot` channel |
//! | `bare_channel` | the same channel pool, closures sent without any handle (scenario 4 only) | none |

use std::fmt;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use scenario::{IdleCpu, Spin, WarmUp};

// ===== the adapter =====

/// One pool under test, seen through the three operations every scenario needs.
pub trait Pool: Sync + Sized {
    /// What `submit` returns; `join` turns it into the value.
    type Handle<T: Send + 'static>: Send;

    /// A pool of `workers` threads.
    fn with_workers(workers: usize) -> Self;

    /// Queues `f` and returns its handle.
    fn submit<F, T>(&self, f: F) -> Self::Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;

    /// Blocks until the task behind `handle` finished and returns its value. Panics if the
    /// pool lost the task: a benchmark has no sensible way to go on.
    fn join<T: Send + 'static>(&self, handle: Self::Handle<T>) -> T;

    /// Joins every handle in order, passing each value to `each`. The default joins one at a
    /// time; an adapter may override it with its peer's idiomatic way of waiting for many.
    fn join_all<T: Send + 'static>(&self, handles: Vec<Self::Handle<T>>, mut each: impl FnMut(T)) {
        for h in handles {
            each(self.join(h));
        }
    }
}

/// Runs generic code on whichever pool a [`Peer`] names (see [`Peer::with_pool`]).
pub trait PoolVisitor {
    /// What the visit returns.
    type Output;
    /// Called with a freshly built pool, dropped right after.
    fn visit<P: Pool>(self, peer: Peer, pool: &P) -> Self::Output;
}

/// The peers that have handles (everything but the bare channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// `chi::ThreadPool`.
    Chi,
    /// `rayon::ThreadPool::spawn` + `oneshot`.
    Rayon,
    /// tokio `spawn_blocking` + `JoinHandle`.
    TokioBlocking,
    /// tokio `spawn` + `JoinHandle`.
    TokioSpawn,
    /// The `threadpool` crate + `oneshot`.
    Threadpool,
    /// [`ChannelPool`] + `oneshot`.
    ChannelPool,
}

/// The id of the handle-less channel peer of scenario 4.
pub const BARE_CHANNEL: &str = "bare_channel";

impl Peer {
    /// Every peer, chi first.
    pub const ALL: [Peer; 6] = [
        Peer::Chi,
        Peer::Rayon,
        Peer::TokioBlocking,
        Peer::TokioSpawn,
        Peer::Threadpool,
        Peer::ChannelPool,
    ];

    /// The short id used in tables, files and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Peer::Chi => "chi",
            Peer::Rayon => "rayon",
            Peer::TokioBlocking => "tokio_blocking",
            Peer::TokioSpawn => "tokio_spawn",
            Peer::Threadpool => "threadpool",
            Peer::ChannelPool => "channel_pool",
        }
    }

    /// The peer with this id.
    pub fn from_id(id: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.id() == id)
    }

    /// Builds this peer's pool with `workers` threads, hands it to `visitor`, then drops it.
    pub fn with_pool<V: PoolVisitor>(self, workers: usize, visitor: V) -> V::Output {
        match self {
            Peer::Chi => visitor.visit(self, &ChiPool::with_workers(workers)),
            Peer::Rayon => visitor.visit(self, &RayonPool::with_workers(workers)),
            Peer::TokioBlocking => visitor.visit(self, &TokioBlockingPool::with_workers(workers)),
            Peer::TokioSpawn => visitor.visit(self, &TokioSpawnPool::with_workers(workers)),
            Peer::Threadpool => visitor.visit(self, &ThreadpoolPool::with_workers(workers)),
            Peer::ChannelPool => visitor.visit(self, &ChannelPool::with_workers(workers)),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

// ===== chi =====

/// `chi::ThreadPool`; the handle is `chi::Task`.
#[derive(Debug)]
pub struct ChiPool(chi::ThreadPool);

impl Pool for ChiPool {
    type Handle<T: Send + 'static> = chi::Task<T>;

    fn with_workers(workers: usize) -> Self {
        ChiPool(chi::ThreadPool::new(workers).expect("chi pool"))
    }

    fn submit<F, T>(&self, f: F) -> chi::Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.0.submit(f).expect("chi refused a task")
    }

    fn join<T: Send + 'static>(&self, handle: chi::Task<T>) -> T {
        handle.result().expect("chi task failed")
    }
}

// ===== rayon =====

/// Wraps `f` so its value goes back through a `oneshot` channel: the handle the peers that
/// have none of their own (rayon, threadpool, the channel pool) are measured with.
fn oneshot_job<F, T>(f: F) -> (impl FnOnce() + Send + 'static, oneshot::Receiver<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    (
        move || {
            let _ = tx.send(f());
        },
        rx,
    )
}

/// Waits for a value sent by a job made with [`oneshot_job`].
fn oneshot_join<T>(handle: oneshot::Receiver<T>, peer: &str) -> T {
    match handle.recv() {
        Ok(v) => v,
        Err(_) => panic!("{peer} task lost"),
    }
}

/// `rayon::ThreadPool::spawn`, the value sent back through a `oneshot` channel.
#[derive(Debug)]
pub struct RayonPool(rayon::ThreadPool);

impl Pool for RayonPool {
    type Handle<T: Send + 'static> = oneshot::Receiver<T>;

    fn with_workers(workers: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("rayon-{i}"))
            .build()
            .expect("rayon pool");
        RayonPool(pool)
    }

    fn submit<F, T>(&self, f: F) -> oneshot::Receiver<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, rx) = oneshot_job(f);
        self.0.spawn(job);
        rx
    }

    fn join<T: Send + 'static>(&self, handle: oneshot::Receiver<T>) -> T {
        oneshot_join(handle, "rayon")
    }
}

// ===== tokio =====

fn tokio_runtime(
    async_workers: usize,
    blocking_threads: usize,
    name: &str,
) -> tokio::runtime::Runtime {
    // No IO or time driver: no scenario needs one, and an idle driver could only add work.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(async_workers)
        .max_blocking_threads(blocking_threads)
        .thread_name(name)
        .build()
        .expect("tokio runtime")
}

/// The `join` and `join_all` of both tokio adapters (a runtime in field 0, tokio's
/// `JoinHandle` as the handle). `join_all` waits for many handles in one `block_on`, the
/// idiomatic way from synchronous code (entering the runtime once instead of once per handle).
macro_rules! tokio_joins {
    () => {
        fn join<T: Send + 'static>(&self, handle: tokio::task::JoinHandle<T>) -> T {
            self.0.block_on(handle).expect("tokio task failed")
        }

        fn join_all<T: Send + 'static>(
            &self,
            handles: Vec<tokio::task::JoinHandle<T>>,
            mut each: impl FnMut(T),
        ) {
            self.0.block_on(async {
                for h in handles {
                    each(h.await.expect("tokio task failed"));
                }
            });
        }
    };
}

/// A tokio multi-thread runtime used through `spawn_blocking`: `workers` blocking threads
/// (and as many async workers, which stay idle).
#[derive(Debug)]
pub struct TokioBlockingPool(tokio::runtime::Runtime);

impl Pool for TokioBlockingPool {
    type Handle<T: Send + 'static> = tokio::task::JoinHandle<T>;

    fn with_workers(workers: usize) -> Self {
        TokioBlockingPool(tokio_runtime(workers, workers, "tokio-blocking"))
    }

    fn submit<F, T>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.0.spawn_blocking(f)
    }

    tokio_joins!();
}

/// A tokio multi-thread runtime with `workers` async workers, used through `spawn` (the
/// closure runs inside an `async` block, blocking its worker while it runs).
#[derive(Debug)]
pub struct TokioSpawnPool(tokio::runtime::Runtime);

impl Pool for TokioSpawnPool {
    type Handle<T: Send + 'static> = tokio::task::JoinHandle<T>;

    fn with_workers(workers: usize) -> Self {
        TokioSpawnPool(tokio_runtime(workers, workers, "tokio-spawn"))
    }

    fn submit<F, T>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.0.spawn(async move { f() })
    }

    tokio_joins!();
}

// ===== threadpool =====

/// The `threadpool` crate, the value sent back through a `oneshot` channel.
#[derive(Debug)]
pub struct ThreadpoolPool(threadpool::ThreadPool);

impl Pool for ThreadpoolPool {
    type Handle<T: Send + 'static> = oneshot::Receiver<T>;

    fn with_workers(workers: usize) -> Self {
        let pool = threadpool::Builder::new()
            .num_threads(workers)
            .thread_name("threadpool".to_owned())
            .build();
        ThreadpoolPool(pool)
    }

    fn submit<F, T>(&self, f: F) -> oneshot::Receiver<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, rx) = oneshot_job(f);
        self.0.execute(job);
        rx
    }

    fn join<T: Send + 'static>(&self, handle: oneshot::Receiver<T>) -> T {
        oneshot_join(handle, "threadpool")
    }
}

impl Drop for ThreadpoolPool {
    /// The crate's own drop only closes the channel; wait for the threads' work like the
    /// other pools do, so nothing of this pool is left running into the next measurement.
    fn drop(&mut self) {
        self.0.join();
    }
}

// ===== plain crossbeam-channel pool =====

/// A boxed job of [`ChannelPool`].
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// The simplest pool there is: `workers` threads reading boxed closures from one unbounded
/// crossbeam channel. With `oneshot` handles it is the `channel_pool` peer; through
/// [`execute`](Self::execute) alone it is the handle-less `bare_channel` peer.
#[derive(Debug)]
pub struct ChannelPool {
    tx: Option<crossbeam_channel::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl ChannelPool {
    /// Sends `job` to the workers, with no handle.
    pub fn execute(&self, job: Job) {
        self.tx
            .as_ref()
            .expect("pool open")
            .send(job)
            .expect("channel pool workers alive");
    }

    /// Returns once every job sent before the call has finished. Sends one barrier job per
    /// worker: the channel is FIFO and each worker runs one job at a time, so when all of them
    /// stand at the barrier, every earlier job has run.
    pub fn quiesce(&self) {
        let barrier = Arc::new(Barrier::new(self.threads.len() + 1));
        for _ in 0..self.threads.len() {
            let b = Arc::clone(&barrier);
            self.execute(Box::new(move || {
                b.wait();
            }));
        }
        barrier.wait();
    }
}

impl Pool for ChannelPool {
    type Handle<T: Send + 'static> = oneshot::Receiver<T>;

    fn with_workers(workers: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let threads = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("channel-pool-{i}"))
                    .spawn(move || {
                        for job in rx {
                            job();
                        }
                    })
                    .expect("spawn channel pool worker")
            })
            .collect();
        ChannelPool {
            tx: Some(tx),
            threads,
        }
    }

    fn submit<F, T>(&self, f: F) -> oneshot::Receiver<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, rx) = oneshot_job(f);
        self.execute(Box::new(job));
        rx
    }

    fn join<T: Send + 'static>(&self, handle: oneshot::Receiver<T>) -> T {
        oneshot_join(handle, "channel pool")
    }
}

impl Drop for ChannelPool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ===== helpers shared by the scenarios =====

/// A gate that opens once `n` parties arrived, or gives up after a timeout (unlike
/// `std::sync::Barrier`, a pool that cannot run `n` tasks at once makes this fail, not hang).
#[derive(Debug)]
pub struct Rendezvous {
    n: usize,
    arrived: Mutex<usize>,
    all_here: Condvar,
}

impl Rendezvous {
    /// A gate for `n` parties.
    pub fn new(n: usize) -> Self {
        Rendezvous {
            n,
            arrived: Mutex::new(0),
            all_here: Condvar::new(),
        }
    }

    /// Arrives and waits for the others at most `timeout`; true if all `n` arrived.
    pub fn arrive(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut arrived = self.arrived.lock().expect("rendezvous lock");
        *arrived += 1;
        if *arrived >= self.n {
            self.all_here.notify_all();
            return true;
        }
        while *arrived < self.n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            arrived = self
                .all_here
                .wait_timeout(arrived, left)
                .expect("rendezvous lock")
                .0;
        }
        true
    }
}

// ===== the scenarios =====

/// The scenarios, each a function generic over [`Pool`] that returns what it measured.
///
/// Every function checks the values it got back (a wrong sum panics), so no pool can skip
/// work and no compiler can optimise it away.
pub mod scenario {
    use super::{ChannelPool, Pool, Rendezvous};
    use std::collections::HashMap;
    use std::hint::black_box;
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    /// How long warm-up waits for every worker to run at the same time.
    const WARM_UP_TIMEOUT: Duration = Duration::from_secs(5);

    /// What warm-up found out about a pool.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct WarmUp {
        /// `workers` tasks ran at the same time (within 5 s).
        pub all_workers_met: bool,
        /// No task ran on the thread that submitted and waited for it: a pool that runs work
        /// inline in its wait would win every scenario without doing the same work.
        pub ran_off_caller: bool,
    }

    impl WarmUp {
        /// Both checks passed.
        pub fn ok(self) -> bool {
            self.all_workers_met && self.ran_off_caller
        }
    }

    /// Gets a pool ready for timing: runs `workers` tasks that wait for each other (so every
    /// worker thread is started and has run once), 100 round trips and a batch of tiny tasks,
    /// checking on the way that the pool really runs `workers` tasks at once and never runs a
    /// task on the waiting thread. A failed check is reported, not fatal.
    pub fn warm_up<P: Pool>(pool: &P, workers: usize) -> WarmUp {
        let gate = Arc::new(Rendezvous::new(workers));
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let gate = Arc::clone(&gate);
                pool.submit(move || gate.arrive(WARM_UP_TIMEOUT))
            })
            .collect();
        let mut all_workers_met = true;
        pool.join_all(handles, |met| all_workers_met &= met);

        let caller = std::thread::current().id();
        let mut ran_off_caller = true;
        for _ in 0..100 {
            ran_off_caller &= pool.join(pool.submit(|| std::thread::current().id())) != caller;
        }
        let handles: Vec<_> = (0..1_000)
            .map(|_| pool.submit(|| std::thread::current().id()))
            .collect();
        pool.join_all(handles, |id| ran_off_caller &= id != caller);

        tiny_tasks(pool, 2_000);
        WarmUp {
            all_workers_met,
            ran_off_caller,
        }
    }

    /// Scenario 1: one thread submits `n` tasks `move || x + 1` (x = 0..n), keeping every
    /// handle, then joins them in submission order. Returns the wall time from the first
    /// submit to the last value.
    pub fn tiny_tasks<P: Pool>(pool: &P, n: u64) -> Duration {
        let start = Instant::now();
        let handles: Vec<_> = (0..n).map(|x| pool.submit(move || x + 1)).collect();
        let mut sum = 0u64;
        pool.join_all(handles, |v| sum += v);
        let elapsed = start.elapsed();
        assert_eq!(sum, n * (n + 1) / 2, "tiny tasks: wrong sum");
        elapsed
    }

    /// Scenario 2: submit one task, wait for its value, repeat `iters` times. Returns each
    /// round trip (submit to value in hand), in order.
    pub fn round_trips<P: Pool>(pool: &P, iters: usize) -> Vec<Duration> {
        let mut out = Vec::with_capacity(iters);
        for i in 0..iters as u64 {
            let start = Instant::now();
            let v = pool.join(pool.submit(move || i + 1));
            out.push(start.elapsed());
            assert_eq!(v, i + 1, "round trip: wrong value");
        }
        out
    }

    /// Scenario 6: like [`round_trips`], but before each submit the caller sleeps `gap`, so
    /// the workers have parked: measures the first wake after idleness, the common case of a
    /// service with sporadic requests. Returns the round trips and the CPU time the whole
    /// process spent over the loop (every thread, the sleeps included).
    pub fn round_trips_after_idle<P: Pool>(
        pool: &P,
        iters: usize,
        gap: Duration,
    ) -> (Vec<Duration>, Duration) {
        let mut out = Vec::with_capacity(iters);
        let cpu0 = process_cpu();
        for i in 0..iters as u64 {
            std::thread::sleep(gap);
            let start = Instant::now();
            let v = pool.join(pool.submit(move || i + 1));
            out.push(start.elapsed());
            assert_eq!(v, i + 1, "round trip after idle: wrong value");
        }
        (out, process_cpu().saturating_sub(cpu0))
    }

    /// CPU time of the whole process so far: every thread, including those that exited.
    pub fn process_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call's duration, and
        // CLOCK_PROCESS_CPUTIME_ID is a clock id every Linux kernel accepts.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// The `p` quantile (0..=1, nearest rank) of `sorted`, which must be sorted and non-empty.
    pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
        assert!(!sorted.is_empty(), "percentile of nothing");
        // ceil(p * n) in integers, so that 0.99 * 20_000 is exactly rank 19_800.
        let millionths = (p * 1e6).round() as u128;
        let rank = (millionths * sorted.len() as u128).div_ceil(1_000_000) as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// Scenario 3: submit `n` tasks that each run `spin` (a fixed amount of CPU work), then
    /// join them all. Returns the wall time; compare it with `n * spin.per_task / workers`.
    pub fn cpu_tasks<P: Pool>(pool: &P, n: usize, spin: Spin) -> Duration {
        let start = Instant::now();
        let handles: Vec<_> = (0..n).map(|_| pool.submit(move || spin.run())).collect();
        let mut check = 0u64;
        let mut count = 0usize;
        pool.join_all(handles, |v| {
            check ^= v;
            count += 1;
        });
        let elapsed = start.elapsed();
        black_box(check);
        assert_eq!(count, n, "cpu tasks: lost a task");
        elapsed
    }

    /// Scenario 4: `submitters` threads each submit `per_submitter` tasks `move || x + 1` and
    /// keep their handles; once they are done the calling thread joins every handle. Returns
    /// the wall time from the moment all submitters are released to the last value (thread
    /// start-up is excluded).
    pub fn multi_submit<P: Pool>(pool: &P, submitters: usize, per_submitter: u64) -> Duration {
        let gate = Barrier::new(submitters + 1);
        let (elapsed, sum) = std::thread::scope(|s| {
            let threads: Vec<_> = (0..submitters)
                .map(|_| {
                    s.spawn(|| {
                        gate.wait();
                        (0..per_submitter)
                            .map(|x| pool.submit(move || x + 1))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            gate.wait();
            let start = Instant::now();
            let batches: Vec<_> = threads
                .into_iter()
                .map(|t| t.join().expect("submitter panicked"))
                .collect();
            let mut sum = 0u64;
            for handles in batches {
                pool.join_all(handles, |v| sum += v);
            }
            (start.elapsed(), sum)
        });
        let per = per_submitter;
        assert_eq!(
            sum,
            submitters as u64 * (per * (per + 1) / 2),
            "multi submit: wrong sum"
        );
        elapsed
    }

    /// Scenario 4, `bare_channel` peer: like [`multi_submit`] but the closures go straight
    /// into a [`ChannelPool`] with no handle and no result; the run ends when every closure
    /// has run ([`ChannelPool::quiesce`]).
    pub fn multi_submit_bare(
        pool: &ChannelPool,
        submitters: usize,
        per_submitter: u64,
    ) -> Duration {
        let gate = Barrier::new(submitters + 1);
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..submitters)
                .map(|_| {
                    s.spawn(|| {
                        gate.wait();
                        for x in 0..per_submitter {
                            pool.execute(Box::new(move || {
                                black_box(x + 1);
                            }));
                        }
                    })
                })
                .collect();
            gate.wait();
            let start = Instant::now();
            for t in threads {
                t.join().expect("submitter panicked");
            }
            pool.quiesce();
            start.elapsed()
        })
    }

    // ----- scenario 5: idle CPU -----

    /// What a pool cost while idle (scenario 5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IdleCpu {
        /// utime + stime of the whole process (`/proc/self/stat`), in clock ticks.
        pub ticks: u64,
        /// CPU time of every thread but the measuring one (`/proc/self/task/*/schedstat`), ns.
        pub cpu_ns: u64,
        /// Context switches of every thread but the measuring one (`/proc/self/task/*/status`):
        /// how often a pool thread woke up or was preempted.
        pub wakeups: u64,
    }

    /// Scenario 5: runs one task on a freshly built pool, then measures what the process
    /// spends over `window` while the measuring thread sleeps. Linux only (`/proc`).
    pub fn idle_cpu<P: Pool>(pool: &P, window: Duration) -> IdleCpu {
        assert_eq!(pool.join(pool.submit(|| 41u64 + 1)), 42);
        let before = CpuSnapshot::take(true);
        std::thread::sleep(window);
        let after = CpuSnapshot::take(false);
        after.since(&before)
    }

    /// Per-thread counters of this process (all threads but the calling one) and the
    /// process's tick count.
    struct CpuSnapshot {
        ticks: u64,
        threads: HashMap<u64, (u64, u64)>,
    }

    impl CpuSnapshot {
        /// Reads the per-thread files and the process ticks; `ticks_last` orders the reads so
        /// the cost of reading the thread files falls outside the tick window.
        fn take(ticks_last: bool) -> CpuSnapshot {
            let ticks = if ticks_last {
                None
            } else {
                Some(process_ticks())
            };
            let threads = thread_counters();
            let ticks = ticks.unwrap_or_else(process_ticks);
            CpuSnapshot { ticks, threads }
        }

        fn since(&self, before: &CpuSnapshot) -> IdleCpu {
            let (mut cpu_ns, mut wakeups) = (0, 0);
            for (tid, &(ns, switches)) in &self.threads {
                let (ns0, switches0) = before.threads.get(tid).copied().unwrap_or((0, 0));
                cpu_ns += ns.saturating_sub(ns0);
                wakeups += switches.saturating_sub(switches0);
            }
            IdleCpu {
                ticks: self.ticks.saturating_sub(before.ticks),
                cpu_ns,
                wakeups,
            }
        }
    }

    fn read_proc(path: &str) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("idle CPU needs Linux /proc: {path}: {e}"))
    }

    /// utime + stime from `/proc/self/stat` (fields 14 and 15; the name in field 2 may hold
    /// spaces, so count from the last ')').
    fn process_ticks() -> u64 {
        let stat = read_proc("/proc/self/stat");
        let after_name = &stat[stat.rfind(')').expect("stat format") + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // after_name starts at field 3 (state), so field 14 is index 11.
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .expect("stat field")
        };
        field(11) + field(12)
    }

    /// tid -> (ns on CPU, context switches) for every thread but the calling one.
    fn thread_counters() -> HashMap<u64, (u64, u64)> {
        let me = std::fs::read_link("/proc/thread-self").ok().and_then(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok())
        });
        let mut out = HashMap::new();
        let dir = std::fs::read_dir("/proc/self/task").expect("idle CPU needs Linux /proc");
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if Some(tid) == me {
                continue;
            }
            // A thread may exit between read_dir and these reads: skip it.
            let (Ok(sched), Ok(status)) = (
                std::fs::read_to_string(entry.path().join("schedstat")),
                std::fs::read_to_string(entry.path().join("status")),
            ) else {
                continue;
            };
            let ns = sched
                .split_whitespace()
                .next()
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            let switches = status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .sum();
            out.insert(tid, (ns, switches));
        }
        out
    }

    // ----- the CPU-bound task -----

    /// A fixed amount of CPU work standing for a 50 µs task: `iters` rounds of a dependent
    /// multiply-xorshift chain (no sleeping, no memory traffic, nothing to vectorise).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Spin {
        /// Rounds of the chain per task.
        pub iters: u64,
        /// What one task costs on one otherwise idle thread: the minimum over several timed
        /// batches, since interference only ever adds time.
        pub per_task: Duration,
    }

    /// `iters` rounds of the chain; the result depends on every round.
    #[inline(never)]
    pub fn spin(iters: u64) -> u64 {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..black_box(iters) {
            x = x.wrapping_mul(0x5851_F42D_4C95_7F2D).wrapping_add(i);
            x ^= x >> 33;
        }
        black_box(x)
    }

    impl Spin {
        /// Finds the number of rounds that takes `target` on this thread.
        pub fn calibrate(target: Duration) -> Spin {
            let mut iters = 1_000u64;
            let mut took = time(|| {
                spin(iters);
            });
            while took < Duration::from_millis(2) && iters < 1 << 40 {
                iters *= 2;
                took = time(|| {
                    spin(iters);
                });
            }
            let mut iters = scale(iters, target, took);
            for _ in 0..2 {
                iters = scale(iters, target, Spin::measure(iters));
            }
            Spin {
                iters,
                per_task: Spin::measure(iters),
            }
        }

        /// The cost of one task of `iters` rounds: the minimum over 7 batches of 100.
        pub fn measure(iters: u64) -> Duration {
            (0..7)
                .map(|_| {
                    time(|| {
                        for _ in 0..100 {
                            spin(iters);
                        }
                    }) / 100
                })
                .min()
                .expect("seven batches")
        }

        /// Runs one task's worth of work.
        pub fn run(self) -> u64 {
            spin(self.iters)
        }
    }

    fn time(f: impl FnOnce()) -> Duration {
        let start = Instant::now();
        f();
        start.elapsed()
    }

    fn scale(iters: u64, target: Duration, took: Duration) -> u64 {
        let took = took.as_nanos().max(1);
        ((iters as u128 * target.as_nanos() / took) as u64).max(1)
    }
}
