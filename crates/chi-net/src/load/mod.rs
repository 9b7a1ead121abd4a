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
//! let config = LoadConfig::builder()
//!     .addr(addr)
//!     .connections(4)
//!     .messages(Some(100))
//!     .size(64)
//!     .build()?;
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
//!    one is in. With a [rate](LoadConfigBuilder::rate) (open loop, as wrk2) each connection's
//!    requests are due at fixed times instead (`rate / connections` per second, the
//!    connections' schedules spread over the period); a request goes out at its time, or as
//!    soon as the previous answer is in if that is later. Each connection sends `warmup` unmeasured messages, then `messages` measured
//!    ones, then closes at once (so a pooled server's worker moves on to a waiting client, as
//!    with line clients). Idle connections stay silent.
//! 4. **End.** When every active connection has finished its messages, or at the end of the
//!    duration, or on [`StopHandle::stop`] (the `chi` binary calls it on SIGINT/SIGTERM).
//!    At the end of the duration the answers under way are counted as `in_flight` and the
//!    messages not yet sent are not counted at all; on a stop, whatever is unfinished is
//!    counted as short or missing. The report is built from what finished.
//!
//! A run with no active connections (`connections == 0`, `idle > 0`) opens the idle
//! connections and holds them until the duration ends or a stop: run it in a second process to
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
//! - `missing`: not a byte of it arrived (connection failed, closed, or the run was stopped);
//! - `in_flight`: sent, and not yet answered in full when the duration ended the run.
//!
//! An answer that takes longer than the [reply timeout](LoadConfigBuilder::reply_timeout)
//! gives its connection up (counted in `timed_out`; the answer is short or missing).
//!
//! `ok + wrong + short + missing + in_flight == expected` (`connections × (warmup + messages)`
//! unless the duration ended the run first), and
//! [`LoadReport::passed`] holds only when `wrong`, `short`, `missing`, `connect_failed` and
//! `idle_failed` are all zero.
//!
//! Lockstep means a server that drops a byte leaves its client waiting for the rest of the
//! answer: its connection is given up at the reply timeout, and the answer counts as `short`.
//!
//! # Measurements
//! - **Latency**: from writing a request's first byte (open loop: from the moment it was due,
//!   so that a server that stalls shows in the percentiles — "coordinated omission"
//!   corrected; the workers wake for a due request with the poller's millisecond granularity,
//!   so open-loop latencies include up to about 1 ms of sending late) to reading its answer's
//!   last byte, for
//!   measured correct answers, in an HDR histogram of nanoseconds with 3 significant digits
//!   (reported in µs: p50, p90, p99, p99.9, max, mean).
//! - **Throughput**: measured correct answers divided by the time from the first measured
//!   request to the last measured answer; MB/s counts answer bytes (10^6 bytes; the requests
//!   carry as much the other way).
//! - **First answers**: for each connection, when its first correct answer arrived after the
//!   requests went out. With a server that serves only W clients at a time (the classic
//!   thread-pool design, `Model::Pooled`) and more than W connections, `first_answer_ms.max` is how long the last client
//!   waited for a worker.
//!
//! # JSON schema (`chi load --json`, [`LoadReport`] with serde)
//! One object; counts are JSON integers, rates and times are JSON numbers with a fraction.
//! `schema` changes when a field is renamed, removed or changes meaning; new fields may be
//! added without changing it.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | `"chi-load/2"` |
//! | `addr` | string | server address connected to |
//! | `connections` | integer | active connections asked for (C) |
//! | `messages_per_connection` | integer or null | measured messages per connection (M); null: the duration ended the run |
//! | `rate` | integer or null | open-loop rate asked for (messages/s in all); null: closed loop |
//! | `size` | integer | bytes per message (S) |
//! | `threads` | integer | client threads (T) |
//! | `warmup` | integer | unmeasured messages per connection before the measured ones |
//! | `idle` | integer | idle connections asked for (K) |
//! | `duration_s` | number or null | the run's duration, null for none |
//! | `timeout_s` | number or null | the longest one answer could take, null for no limit |
//! | `end` | string | `"completed"`, `"duration"` or `"interrupted"` |
//! | `connected` | integer | active connections established |
//! | `connect_failed` | integer | active connections that could not connect |
//! | `connect_error` | string or null | the first connect error |
//! | `idle_connected` | integer | idle connections established |
//! | `idle_failed` | integer | idle connections that could not connect |
//! | `idle_closed` | integer | idle connections the server closed during the run |
//! | `answers` | object | `expected`, `ok`, `wrong`, `short`, `missing`, `in_flight`: integers, see above |
//! | `timed_out` | integer | connections given up at the reply timeout |
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
//! - A server of the classic thread-pool design (`Model::Pooled`) with W workers serves at most W connections at
//!   once: the others' requests wait in the server's queue until earlier connections finish,
//!   which shows in their latency and `first_answer_ms.max`. A server that never serves a
//!   connection (its workers held by idle clients) leaves the run waiting until the time
//!   limit.

mod config;
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

pub use config::{
    DEFAULT_CONNECTIONS, DEFAULT_MESSAGES, DEFAULT_REPLY_TIMEOUT, DEFAULT_SIZE, LoadConfig,
    LoadConfigBuilder, LoadConfigError, LoadConfigErrorKind,
};
pub use hdrhistogram::Histogram;
pub use report::{Answers, End, FirstAnswer, Latency, LoadReport, ReportParseError, SCHEMA};
pub use tally::LoadPhase;

use gate::Gate;
use payload::Payload;
use tally::{Progress, Tally};

/// Why a load run could not start or finish. (Wrong or missing answers are not errors of the
/// run: they are counted in the [`LoadReport`].)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
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

/// Stops a run early: unfinished answers count as short or missing
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
    /// Answers the run expects in all, `connections × (warmup + messages)`; `None` when the
    /// duration alone ends the run.
    pub expected: Option<u64>,
    /// Time since the run started (connecting included).
    pub elapsed: Duration,
    /// The run's duration, if it has one.
    pub duration: Option<Duration>,
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
    /// Messages per active connection, warm-up included; `None`: until the deadline.
    total: Option<u64>,
    deadline: Option<Instant>,
    reply_timeout: Option<Duration>,
    /// Open loop: seconds between two requests of one connection (`connections / rate`).
    period: Option<f64>,
    stop: Arc<AtomicBool>,
    /// The latencies of the current interval, when asked for.
    intervals: Option<Mutex<Histogram<u64>>>,
    gate: Gate,
    /// When the first requests went out (set by the first worker past the connect gate).
    go: OnceLock<Instant>,
    progress: Progress,
    /// Workers that have exited, and its condition.
    exited: Mutex<usize>,
    exited_changed: Condvar,
}

impl Shared {
    /// Messages per active connection, warm-up included (`u64::MAX`: no count, a duration).
    fn total_messages(&self) -> u64 {
        self.total.unwrap_or(u64::MAX)
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
/// let config = LoadConfig::builder().addr("127.0.0.1:8080".parse().unwrap()).build().unwrap();
/// let run = LoadRun::start(config)?;
/// while !run.wait_timeout(Duration::from_millis(100)) {
///     let p = run.progress();
///     eprint!("\r{} / {:?} answers", p.answers, p.expected);
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
    started: Instant,
}

impl LoadRun {
    /// Raises the descriptor limit, checks the connections fit, and starts the worker threads.
    pub fn start(mut config: LoadConfig) -> Result<LoadRun, LoadError> {
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
            total: config.total_messages(),
            deadline: config.duration.and_then(|t| Instant::now().checked_add(t)),
            reply_timeout: config.reply_timeout,
            period: config.rate.map(|r| config.connections as f64 / r as f64),
            stop: Arc::new(AtomicBool::new(false)),
            intervals: config
                .record_intervals
                .then(|| Mutex::new(tally::new_histogram())),
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
            started: Instant::now(),
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

    /// The latencies (nanoseconds) recorded since the last call, when the run was configured
    /// with [`LoadConfigBuilder::record_intervals`]; `None` otherwise. Workers hand their
    /// recordings over at least every 100 ms, so an interval taken every second is exact to
    /// that. For an interval log (`chi load --hdr-log`).
    pub fn take_interval(&self) -> Option<Histogram<u64>> {
        let shared = self.shared.intervals.as_ref()?;
        let mut h = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = h.clone();
        h.reset();
        Some(taken)
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
            expected: self.shared.total.map(|t| self.shared.connections * t),
            elapsed: self.started.elapsed(),
            duration: self.config.duration,
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
        let mut total = Tally::new(false);
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
        rate: config.rate,
        size: config.size as u64,
        threads: config.threads as u64,
        warmup: config.warmup,
        idle: config.idle,
        duration_s: config.duration.map(|t| t.as_secs_f64()),
        timeout_s: config.reply_timeout.map(|t| t.as_secs_f64()),
        end: t.cut_short.unwrap_or(End::Completed),
        connected: t.connected,
        connect_failed: t.connect_failed,
        connect_error: t.connect_error,
        idle_connected: t.idle_connected,
        idle_failed: t.idle_failed,
        idle_closed: t.idle_closed,
        answers: Answers {
            expected: t.ok + errors + t.in_flight,
            ok: t.ok,
            wrong: t.wrong,
            short: t.short,
            missing: t.missing,
            in_flight: t.in_flight,
        },
        timed_out: t.timed_out,
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
