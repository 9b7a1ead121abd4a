//! The load generator behind `chi load`: C connections × M messages of S bytes in lockstep,
//! every answer checked byte for byte, latency in an HDR histogram, optional idle connections.
//!
//! ```
//! use chi_net::load::{self, LoadConfig};
//! use chi_net::{Server, ServerConfig};
//!
//! let config = ServerConfig::builder().addr("127.0.0.1:0".parse().unwrap()).build()?;
//! let server = Server::bind(config)?;
//! let (addr, handle) = (server.local_addr(), server.handle());
//! let thread = std::thread::spawn(move || server.run());
//!
//! let mut config = LoadConfig::new(addr);
//! config.connections = 4;
//! config.messages = 100;
//! config.size = 64;
//! let report = load::run(config)?;
//! assert!(report.passed());
//! assert_eq!(report.messages, 400);
//! println!("{} msgs/s, p99 {} µs", report.msgs_per_s, report.latency_us.p99);
//!
//! handle.shutdown();
//! thread.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a run does
//! 1. **Raise the descriptor limit.** The soft `RLIMIT_NOFILE` is raised to the hard limit;
//!    if C + K connections (plus a few spare descriptors) still do not fit,
//!    [`LoadRun::start`] fails with [`LoadError::FdLimit`], which says what to change.
//! 2. **Connect.** T worker threads, each a mio event loop (not a thread per connection:
//!    10,000 connections take T threads), open the K idle connections first and then the C
//!    active ones, at most 128 handshakes in flight per thread. The run waits until every
//!    connection is open or has failed.
//! 3. **Exchange.** Every active connection writes its first request at the same moment, and
//!    from then on in lockstep: the next request goes out when the whole answer to the last
//!    one is in. Each connection sends `warmup` unmeasured messages, then `messages` measured
//!    ones, then closes at once (so a pooled server's worker moves on to a waiting client, as
//!    with the seed's clients). Idle connections stay silent.
//! 4. **End.** When every active connection has finished, or at the time limit, or on
//!    [`StopHandle::stop`] (SIGINT/SIGTERM with [`LoadRun::stop_on_signals`]): whatever is
//!    unfinished is counted as short or missing, and the report is built from what finished.
//!
//! A run with no active connections (`connections == 0`, `idle > 0`) opens the idle
//! connections and holds them until the time limit or a stop: run it in a second process to
//! load a server with idle clients while another `chi load` measures it.
//!
//! # Checking answers
//! Request *n* of connection *c* is a 12-letter header encoding (*c*, *n*) — fewer letters if S
//! is smaller — followed by a fixed pattern mixing lower-case letters with every other byte
//! value. Every received byte is compared with the upper-cased request as it arrives, so an
//! answer that is wrong anywhere (not upper-cased, a non-letter changed, another message's
//! bytes) is counted. An answer is one of:
//! - `ok`: S bytes, byte for byte the upper-cased request;
//! - `wrong`: S bytes that differ (the connection carries on with its next message);
//! - `short`: part of the answer arrived, then the connection closed or the run ended;
//! - `missing`: not a byte of it arrived (connection failed, closed, or the run ended first).
//!
//! `ok + wrong + short + missing == expected == connections × (warmup + messages)`, and
//! [`LoadReport::passed`] holds only when `wrong`, `short`, `missing`, `connect_failed` and
//! `idle_failed` are all zero.
//!
//! Lockstep means a server that drops a byte leaves its client waiting for the rest of the
//! answer: such a run ends at the time limit, and the waiting answers count as `short`.
//!
//! # Measurements
//! - **Latency**: from writing a request's first byte to reading its answer's last byte, for
//!   measured correct answers, in an HDR histogram of nanoseconds with 3 significant digits
//!   (reported in µs: p50, p90, p99, p99.9, max, mean).
//! - **Throughput**: measured correct answers divided by the time from the first measured
//!   request to the last measured answer; MB/s counts answer bytes (10^6 bytes; the requests
//!   carry as much the other way).
//! - **First answers**: for each connection, when its first correct answer arrived after the
//!   requests went out. With a server that serves only W clients at a time (the seed's pooled
//!   design) and more than W connections, `first_answer_ms.max` is how long the last client
//!   waited for a worker.
//!
//! # JSON schema (`chi load --json`, [`LoadReport`] with serde)
//! One object; counts are JSON integers, rates and times are JSON numbers with a fraction.
//! `schema` changes when a field is renamed, removed or changes meaning; new fields may be
//! added without changing it.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | `"chi-load/1"` |
//! | `addr` | string | server address connected to |
//! | `connections` | integer | active connections asked for (C) |
//! | `messages_per_connection` | integer | measured messages per connection (M) |
//! | `size` | integer | bytes per message (S) |
//! | `threads` | integer | client threads (T) |
//! | `warmup` | integer | unmeasured messages per connection before the measured ones |
//! | `idle` | integer | idle connections asked for (K) |
//! | `timeout_s` | number or null | the time limit, null for none |
//! | `end` | string | `"completed"`, `"timeout"` or `"interrupted"` |
//! | `connected` | integer | active connections established |
//! | `connect_failed` | integer | active connections that could not connect |
//! | `connect_error` | string or null | the first connect error |
//! | `idle_connected` | integer | idle connections established |
//! | `idle_failed` | integer | idle connections that could not connect |
//! | `idle_closed` | integer | idle connections the server closed during the run |
//! | `answers` | object | `expected`, `ok`, `wrong`, `short`, `missing`: integers, see above |
//! | `errors` | integer | `wrong + short + missing` |
//! | `messages` | integer | measured correct answers |
//! | `elapsed_s` | number | first measured request to last measured answer |
//! | `msgs_per_s` | number | `messages / elapsed_s` |
//! | `mb_per_s` | number | correct answer bytes per second / 10^6 |
//! | `latency_us` | object | `count` (integer), `min`, `mean`, `p50`, `p90`, `p99`, `p99_9`, `max` (numbers, µs) |
//! | `first_answer_ms` | object | `min`, `max` (numbers, ms after the first requests) |
//!
//! # Limits
//! - Descriptors: C + K + about 64 per process. Past the hard limit (`ulimit -Hn`), split the
//!   connections over several processes (idle ones with `connections = 0`).
//! - Ports: every connection to one server address takes a local port from
//!   `net.ipv4.ip_local_port_range` (about 28,000 by default), across all processes.
//! - A server of the seed's pooled design with W workers serves at most W connections at
//!   once: the others' requests wait in the server's queue until earlier connections finish,
//!   which shows in their latency and `first_answer_ms.max`. A server that never serves a
//!   connection (its workers held by idle clients) leaves the run waiting until the time
//!   limit.

mod conn;
mod fdlimit;
mod gate;
mod payload;
mod report;
mod tally;
mod worker;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use report::{Answers, End, FirstAnswer, Latency, LoadReport, ReportParseError, SCHEMA};
pub use tally::LoadPhase;

use gate::Gate;
use payload::Payload;
use tally::{Progress, Tally};

/// The time limit of a run when none is set by [`LoadConfig::new`]: ten minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a load run does. Start from [`LoadConfig::new`] and set the fields.
///
/// ```
/// let mut config = chi_net::load::LoadConfig::new("127.0.0.1:8080".parse().unwrap());
/// config.connections = 1_000;
/// config.messages = 100;
/// config.idle = 5_000;
/// assert_eq!(config.size, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadConfig {
    /// The server.
    pub addr: SocketAddr,
    /// Active connections (C). 0 with `idle > 0` holds idle connections only.
    pub connections: u64,
    /// Measured messages per active connection (M).
    pub messages: u64,
    /// Bytes per message (S), at least 1.
    pub size: usize,
    /// Client threads, each an event loop for its share of the connections; at least 1, and
    /// never more than there are connections.
    pub threads: usize,
    /// Unmeasured messages per active connection before the measured ones.
    pub warmup: u64,
    /// Idle connections (K), opened before the active ones and silent until the run ends.
    pub idle: u64,
    /// The run ends with a report of what finished when this passes; `None`: no limit.
    pub timeout: Option<Duration>,
}

impl LoadConfig {
    /// 50 connections × 1,000 messages × 64 bytes to `addr`, a thread per core, no warm-up,
    /// no idle connections, [`DEFAULT_TIMEOUT`].
    pub fn new(addr: SocketAddr) -> LoadConfig {
        LoadConfig {
            addr,
            connections: 50,
            messages: 1_000,
            size: 64,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            warmup: 0,
            idle: 0,
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        if self.size == 0 {
            return Err(LoadError::Invalid(
                "the message size must be at least 1 byte",
            ));
        }
        if self.threads == 0 {
            return Err(LoadError::Invalid("threads must be at least 1"));
        }
        if self.connections == 0 && self.idle == 0 {
            return Err(LoadError::Invalid(
                "nothing to do: no active and no idle connections",
            ));
        }
        if self
            .connections
            .checked_mul(self.warmup.saturating_add(self.messages))
            .is_none()
            || self.warmup.checked_add(self.messages).is_none()
        {
            return Err(LoadError::Invalid("too many messages to count"));
        }
        Ok(())
    }
}

/// Why a load run could not start or finish. (Wrong or missing answers are not errors of the
/// run: they are counted in the [`LoadReport`].)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The configuration cannot run (size 0, no connections, ...).
    #[error("invalid load settings: {0}")]
    Invalid(&'static str),
    /// The connections do not fit the process's file-descriptor limit, even raised to the
    /// hard limit.
    #[error(
        "{connections} connections need about {needed} file descriptors, but this process may \
         open only {limit} (the hard limit, `ulimit -Hn`); lower --connections/--idle, split \
         the idle connections over several `chi load --connections 0 --idle K` processes, or \
         raise the hard limit (root: `ulimit -Hn N`, limits.conf, systemd LimitNOFILE=)"
    )]
    FdLimit {
        /// Active plus idle connections asked for.
        connections: u64,
        /// Descriptors the run needs.
        needed: u64,
        /// The soft limit after raising it as far as allowed.
        limit: u64,
    },
    /// A worker thread or its poller could not be created.
    #[error("cannot start the load generator: {0}")]
    Setup(#[source] io::Error),
    /// A worker thread panicked (a bug); the run's counts are lost.
    #[error("a load generator thread panicked: {0}")]
    Panicked(String),
}

/// Stops a run early, as the time limit would: unfinished answers count as short or missing
/// and [`LoadRun::wait`] returns the report of what finished. Cloneable, `Send`.
#[derive(Debug, Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks every worker to stop; they notice within 50 ms.
    pub fn stop(&self) {
        // ORDERING: the flag carries no data; workers poll it at least every 50 ms.
        self.flag.store(true, Ordering::Relaxed);
    }
}

/// A snapshot of a run's progress, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadProgress {
    /// Where the run is.
    pub phase: LoadPhase,
    /// Active connections established so far.
    pub connected: u64,
    /// Idle connections established so far.
    pub idle_connected: u64,
    /// Answers accounted for so far (ok, wrong, short or missing).
    pub answers: u64,
    /// Answers so far that were wrong, short or missing.
    pub errors: u64,
    /// Answers the run expects in all: `connections × (warmup + messages)`.
    pub expected: u64,
}

/// What the workers share.
#[derive(Debug)]
pub(crate) struct Shared {
    addr: SocketAddr,
    payload: Payload,
    connections: u64,
    idle: u64,
    threads: usize,
    warmup: u64,
    messages: u64,
    deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
    gate: Gate,
    /// When the first requests went out (set by the first worker past the connect gate).
    go: OnceLock<Instant>,
    progress: Progress,
    /// Workers that have exited, and its condition.
    exited: Mutex<usize>,
    exited_changed: Condvar,
}

impl Shared {
    fn total_messages(&self) -> u64 {
        self.warmup + self.messages
    }
}

/// Counts a worker as exited when dropped, also when it panics.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        *self.0.exited.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.exited_changed.notify_all();
    }
}

/// A started load run: watch its [progress](LoadRun::progress), [stop](LoadRun::stop_handle)
/// it, [wait](LoadRun::wait) for its report.
///
/// ```no_run
/// use std::time::Duration;
/// use chi_net::load::{LoadConfig, LoadRun};
///
/// let run = LoadRun::start(LoadConfig::new("127.0.0.1:8080".parse().unwrap()))?;
/// while !run.wait_timeout(Duration::from_millis(100)) {
///     let p = run.progress();
///     eprint!("\r{} / {} answers", p.answers, p.expected);
/// }
/// let report = run.wait()?;
/// println!("{}", serde_json::to_string(&report).unwrap());
/// # Ok::<(), chi_net::load::LoadError>(())
/// ```
#[derive(Debug)]
pub struct LoadRun {
    config: LoadConfig,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<Tally>>,
}

impl LoadRun {
    /// Raises the descriptor limit, checks the connections fit, and starts the worker threads.
    pub fn start(mut config: LoadConfig) -> Result<LoadRun, LoadError> {
        config.validate()?;
        let sockets = config.connections.saturating_add(config.idle);
        config.threads = config
            .threads
            .min(usize::try_from(sockets).unwrap_or(usize::MAX));
        let limits = fdlimit::raise();
        let needed = fdlimit::needed(sockets, config.threads as u64);
        if needed > limits.soft {
            return Err(LoadError::FdLimit {
                connections: sockets,
                needed,
                limit: limits.soft,
            });
        }
        tracing::debug!(%limits, needed, "file-descriptor limit");
        let shared = Arc::new(Shared {
            addr: config.addr,
            payload: Payload::new(config.size),
            connections: config.connections,
            idle: config.idle,
            threads: config.threads,
            warmup: config.warmup,
            messages: config.messages,
            deadline: config.timeout.and_then(|t| Instant::now().checked_add(t)),
            stop: Arc::new(AtomicBool::new(false)),
            gate: Gate::new(config.threads),
            go: OnceLock::new(),
            progress: Progress::default(),
            exited: Mutex::new(0),
            exited_changed: Condvar::new(),
        });
        let mut run = LoadRun {
            config,
            shared,
            workers: Vec::new(),
        };
        for index in 0..run.config.threads {
            if let Err(e) = run.spawn_worker(index) {
                // The missing workers must not hold the others at the gate.
                for missing in index..run.config.threads {
                    drop(run.shared.gate.seat(missing));
                    drop(ExitGuard(Arc::clone(&run.shared)));
                }
                run.stop_handle().stop();
                let _ = run.wait();
                return Err(LoadError::Setup(e));
            }
        }
        Ok(run)
    }

    fn spawn_worker(&mut self, index: usize) -> io::Result<()> {
        let worker = worker::Worker::new(index, Arc::clone(&self.shared))?;
        let guard = ExitGuard(Arc::clone(&self.shared));
        let handle = std::thread::Builder::new()
            .name(format!("chi-load-{index}"))
            .spawn(move || {
                let _guard = guard;
                worker.run()
            })?;
        self.workers.push(handle);
        Ok(())
    }

    /// The configuration the run uses (threads capped at the number of connections).
    pub fn config(&self) -> &LoadConfig {
        &self.config
    }

    /// A handle that stops the run early.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: Arc::clone(&self.shared.stop),
        }
    }

    /// Makes SIGINT and SIGTERM stop the run (as [`StopHandle::stop`]); a second SIGINT or
    /// SIGTERM ends the process at once with status 130. Process-wide and permanent: for a
    /// binary's one run, not for a library that runs many.
    pub fn stop_on_signals(&self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let flag = &self.shared.stop;
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag before the second registration sets it.
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(flag))?;
            signal_hook::flag::register(signal, Arc::clone(flag))?;
        }
        Ok(())
    }

    /// What the workers have published so far.
    pub fn progress(&self) -> LoadProgress {
        let p = &self.shared.progress;
        // ORDERING: display counters (see `Tally::publish`).
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        LoadProgress {
            phase: if self.is_finished() {
                LoadPhase::Done
            } else {
                p.phase()
            },
            connected: load(&p.connected),
            idle_connected: load(&p.idle_connected),
            answers: load(&p.answers),
            errors: load(&p.errors),
            expected: self.shared.connections * self.shared.total_messages(),
        }
    }

    fn is_finished(&self) -> bool {
        *self.lock_exited() >= self.config.threads
    }

    fn lock_exited(&self) -> std::sync::MutexGuard<'_, usize> {
        self.shared
            .exited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until the run has finished or `timeout` has passed; true if it has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let threads = self.config.threads;
        let exited = self.lock_exited();
        let (exited, _) = self
            .shared
            .exited_changed
            .wait_timeout_while(exited, timeout, |n| *n < threads)
            .unwrap_or_else(PoisonError::into_inner);
        *exited >= threads
    }

    /// Waits for every worker and builds the report.
    pub fn wait(self) -> Result<LoadReport, LoadError> {
        let mut total = Tally::new();
        let mut panic = None;
        for handle in self.workers {
            match handle.join() {
                Ok(tally) => total.merge(tally),
                Err(payload) => {
                    panic.get_or_insert_with(|| panic_message(payload.as_ref()));
                }
            }
        }
        if let Some(msg) = panic {
            return Err(LoadError::Panicked(msg));
        }
        Ok(build_report(&self.config, total))
    }
}

/// Runs a load test to the end and returns its report.
///
/// See the [module docs](self) for what a run does and an example.
pub fn run(config: LoadConfig) -> Result<LoadReport, LoadError> {
    LoadRun::start(config)?.wait()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_owned())
}

fn build_report(config: &LoadConfig, t: Tally) -> LoadReport {
    let elapsed = t.measured.map_or(Duration::ZERO, |(start, end)| {
        end.saturating_duration_since(start)
    });
    let elapsed_s = elapsed.as_secs_f64();
    let per_s = |n: f64| if elapsed_s > 0.0 { n / elapsed_s } else { 0.0 };
    let msgs_per_s = per_s(t.measured_ok as f64);
    let errors = t.errors();
    LoadReport {
        schema: SCHEMA.to_owned(),
        addr: config.addr.to_string(),
        connections: config.connections,
        messages_per_connection: config.messages,
        size: config.size as u64,
        threads: config.threads as u64,
        warmup: config.warmup,
        idle: config.idle,
        timeout_s: config.timeout.map(|t| t.as_secs_f64()),
        end: t.cut_short.unwrap_or(End::Completed),
        connected: t.connected,
        connect_failed: t.connect_failed,
        connect_error: t.connect_error,
        idle_connected: t.idle_connected,
        idle_failed: t.idle_failed,
        idle_closed: t.idle_closed,
        answers: Answers {
            expected: config.connections * (config.warmup + config.messages),
            ok: t.ok,
            wrong: t.wrong,
            short: t.short,
            missing: t.missing,
        },
        errors,
        messages: t.measured_ok,
        elapsed_s,
        msgs_per_s,
        mb_per_s: per_s(t.measured_ok as f64 * config.size as f64) / 1e6,
        latency_us: Latency::from_histogram(&t.latency),
        first_answer_ms: FirstAnswer::from_range(t.first_answers),
    }
}

impl fmt::Display for LoadPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadPhase::Connecting => "connecting",
            LoadPhase::Running => "running",
            LoadPhase::Holding => "holding idle connections",
            LoadPhase::Done => "done",
        })
    }
}
