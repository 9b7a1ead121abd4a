//! [`LoadConfig`]: what a load run does, built and validated by [`LoadConfigBuilder`] in the
//! same shape as the server's configuration (`ServerConfig::builder() … build()`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{DEFAULT_ADDR, MAX_WORKERS};

/// Measured messages per connection when not set.
pub const DEFAULT_MESSAGES: u64 = 1_000;
/// Active connections when not set.
pub const DEFAULT_CONNECTIONS: u64 = 50;
/// Bytes per message when not set.
pub const DEFAULT_SIZE: usize = 64;
/// How long one answer may take when not set; past it the connection is given up (its
/// answer counts as short or missing).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A validated load-run configuration. Build one with [`LoadConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use chi_net::load::LoadConfig;
///
/// let config = LoadConfig::builder()
///     .addr("127.0.0.1:8080".parse().unwrap())
///     .connections(1_000)
///     .messages(None)                            // no count: the duration ends the run
///     .duration(Some(Duration::from_secs(30)))
///     .rate(Some(20_000))                        // open loop: 20,000 messages/s in all
///     .build()
///     .unwrap();
/// assert_eq!(config.size(), 64);
///
/// let err = LoadConfig::builder().size(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "the message size must be at least 1 byte");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: u64,
    pub(crate) messages: Option<u64>,
    pub(crate) size: usize,
    pub(crate) threads: usize,
    pub(crate) warmup: u64,
    pub(crate) idle: u64,
    pub(crate) duration: Option<Duration>,
    pub(crate) reply_timeout: Option<Duration>,
    pub(crate) rate: Option<u64>,
    pub(crate) record_intervals: bool,
}

impl Default for LoadConfig {
    /// 50 connections × 1,000 messages × 64 bytes to `127.0.0.1:8080`, a thread per core, no
    /// warm-up, no idle connections, no duration, [`DEFAULT_REPLY_TIMEOUT`], closed loop.
    fn default() -> Self {
        LoadConfig {
            addr: DEFAULT_ADDR,
            connections: DEFAULT_CONNECTIONS,
            messages: Some(DEFAULT_MESSAGES),
            size: DEFAULT_SIZE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            warmup: 0,
            idle: 0,
            duration: None,
            reply_timeout: Some(DEFAULT_REPLY_TIMEOUT),
            rate: None,
            record_intervals: false,
        }
    }
}

impl LoadConfig {
    /// A builder starting from the defaults (see [`LoadConfig::default`]).
    pub fn builder() -> LoadConfigBuilder {
        LoadConfigBuilder {
            config: LoadConfig::default(),
        }
    }

    /// The server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Active connections (C); 0 holds idle connections only.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Measured messages per active connection (M); `None`: as many as the duration allows.
    pub fn messages(&self) -> Option<u64> {
        self.messages
    }

    /// Bytes per message (S).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Client threads, each an event loop for its share of the connections.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Unmeasured messages per active connection before the measured ones.
    pub fn warmup(&self) -> u64 {
        self.warmup
    }

    /// Idle connections (K), opened before the active ones and silent until the run ends.
    pub fn idle(&self) -> u64 {
        self.idle
    }

    /// The whole run ends after this long (answers in flight then are counted as in flight);
    /// `None`: when the messages are done (or on a stop).
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// The longest one answer may take; a connection waiting longer is given up.
    pub fn reply_timeout(&self) -> Option<Duration> {
        self.reply_timeout
    }

    /// Open-loop rate in messages per second across all connections; `None`: closed loop
    /// (each connection sends its next message as soon as the answer is in).
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// Whether the run keeps a latency histogram per interval for
    /// [`LoadRun::take_interval`](super::LoadRun::take_interval).
    pub fn record_intervals(&self) -> bool {
        self.record_intervals
    }

    /// Messages each active connection sends, warm-up included; `None` when only the
    /// duration (or a stop) ends the run.
    pub(crate) fn total_messages(&self) -> Option<u64> {
        self.messages.map(|m| m + self.warmup)
    }
}

/// Builds a [`LoadConfig`]; [`build`](LoadConfigBuilder::build) checks every setting.
#[derive(Debug, Clone)]
#[must_use]
pub struct LoadConfigBuilder {
    config: LoadConfig,
}

impl LoadConfigBuilder {
    /// The server to load.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.config.addr = addr;
        self
    }

    /// Active connections (C); 0 with `idle > 0` holds idle connections only.
    pub fn connections(mut self, connections: u64) -> Self {
        self.config.connections = connections;
        self
    }

    /// Measured messages per active connection; `None` leaves the count open (a duration is
    /// then required).
    pub fn messages(mut self, messages: Option<u64>) -> Self {
        self.config.messages = messages;
        self
    }

    /// Bytes per message, at least 1.
    pub fn size(mut self, size: usize) -> Self {
        self.config.size = size;
        self
    }

    /// Client threads, 1 to `MAX_WORKERS` (never more are started than there are connections).
    pub fn threads(mut self, threads: usize) -> Self {
        self.config.threads = threads;
        self
    }

    /// Unmeasured messages per active connection before the measured ones.
    pub fn warmup(mut self, warmup: u64) -> Self {
        self.config.warmup = warmup;
        self
    }

    /// Idle connections, opened first and silent until the run ends.
    pub fn idle(mut self, idle: u64) -> Self {
        self.config.idle = idle;
        self
    }

    /// Ends the whole run after this long; more than zero, or `None`.
    pub fn duration(mut self, duration: Option<Duration>) -> Self {
        self.config.duration = duration;
        self
    }

    /// The longest one answer may take; more than zero, or `None` to wait as long as it takes.
    pub fn reply_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.reply_timeout = timeout;
        self
    }

    /// Open-loop rate (messages per second across all connections, at least 1), or `None`
    /// for closed loop.
    pub fn rate(mut self, rate: Option<u64>) -> Self {
        self.config.rate = rate;
        self
    }

    /// Keep a latency histogram per interval (see `LoadRun::take_interval`).
    pub fn record_intervals(mut self, on: bool) -> Self {
        self.config.record_intervals = on;
        self
    }

    /// Checks every setting and returns the configuration, or the first problem found.
    pub fn build(self) -> Result<LoadConfig, LoadConfigError> {
        let c = &self.config;
        let fail = |kind| Err(LoadConfigError { kind });
        if c.size == 0 {
            return fail(LoadConfigErrorKind::ZeroSize);
        }
        if c.threads == 0 {
            return fail(LoadConfigErrorKind::ZeroThreads);
        }
        if c.threads > MAX_WORKERS {
            return fail(LoadConfigErrorKind::TooManyThreads(c.threads));
        }
        if c.connections == 0 && c.idle == 0 {
            return fail(LoadConfigErrorKind::NothingToDo);
        }
        if c.messages == Some(0) {
            return fail(LoadConfigErrorKind::ZeroMessages);
        }
        if c.duration == Some(Duration::ZERO) {
            return fail(LoadConfigErrorKind::ZeroDuration);
        }
        if c.reply_timeout == Some(Duration::ZERO) {
            return fail(LoadConfigErrorKind::ZeroReplyTimeout);
        }
        if c.rate == Some(0) {
            return fail(LoadConfigErrorKind::ZeroRate);
        }
        if c.connections > 0 && c.messages.is_none() && c.duration.is_none() {
            return fail(LoadConfigErrorKind::NoEnd);
        }
        let too_many = match c.messages {
            Some(m) => m
                .checked_add(c.warmup)
                .and_then(|total| total.checked_mul(c.connections))
                .is_none(),
            None => false,
        };
        if too_many {
            return fail(LoadConfigErrorKind::TooManyMessages);
        }
        Ok(self.config)
    }
}

/// A setting of [`LoadConfig`] is out of range. [`kind`](LoadConfigError::kind) says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfigError {
    kind: LoadConfigErrorKind,
}

impl LoadConfigError {
    /// Which setting is wrong.
    pub fn kind(&self) -> &LoadConfigErrorKind {
        &self.kind
    }
}

/// The settings [`LoadConfigError`] can reject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadConfigErrorKind {
    /// `size(0)`.
    ZeroSize,
    /// `threads(0)`.
    ZeroThreads,
    /// More threads than `MAX_WORKERS`.
    TooManyThreads(usize),
    /// No active and no idle connections.
    NothingToDo,
    /// `messages(Some(0))`.
    ZeroMessages,
    /// `duration(Some(0))`.
    ZeroDuration,
    /// `reply_timeout(Some(0))`.
    ZeroReplyTimeout,
    /// `rate(Some(0))`.
    ZeroRate,
    /// Active connections with neither a message count nor a duration: nothing would end the
    /// run.
    NoEnd,
    /// `connections × (warmup + messages)` does not fit a `u64`.
    TooManyMessages,
}

impl fmt::Display for LoadConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LoadConfigErrorKind as K;
        match &self.kind {
            K::ZeroSize => f.write_str("the message size must be at least 1 byte"),
            K::ZeroThreads => f.write_str("threads must be at least 1"),
            K::TooManyThreads(n) => write!(f, "threads must be at most {MAX_WORKERS} (got {n})"),
            K::NothingToDo => f.write_str("nothing to do: no active and no idle connections"),
            K::ZeroMessages => f.write_str("messages per connection must be at least 1"),
            K::ZeroDuration => f.write_str("the duration must be more than zero"),
            K::ZeroReplyTimeout => f.write_str("the answer timeout must be more than zero"),
            K::ZeroRate => f.write_str("the rate must be at least 1 message per second"),
            K::NoEnd => f.write_str("nothing ends the run: give a message count or a duration"),
            K::TooManyMessages => f.write_str("too many messages to count"),
        }
    }
}

impl std::error::Error for LoadConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(builder: LoadConfigBuilder) -> LoadConfigErrorKind {
        builder.build().unwrap_err().kind().clone()
    }

    #[test]
    fn load_config_defaults() {
        let c = LoadConfig::builder().build().unwrap();
        assert_eq!(c.addr(), DEFAULT_ADDR);
        assert_eq!(c.connections(), DEFAULT_CONNECTIONS);
        assert_eq!(c.messages(), Some(DEFAULT_MESSAGES));
        assert_eq!(c.size(), DEFAULT_SIZE);
        assert_eq!(c.duration(), None);
        assert_eq!(c.reply_timeout(), Some(DEFAULT_REPLY_TIMEOUT));
        assert_eq!(c.rate(), None);
        assert!(c.threads() >= 1);
    }

    #[test]
    fn load_config_rejects_each_bad_setting() {
        use LoadConfigErrorKind as K;
        let b = LoadConfig::builder;
        assert_eq!(kind_of(b().size(0)), K::ZeroSize);
        assert_eq!(kind_of(b().threads(0)), K::ZeroThreads);
        assert_eq!(
            kind_of(b().threads(MAX_WORKERS + 1)),
            K::TooManyThreads(MAX_WORKERS + 1)
        );
        assert_eq!(kind_of(b().connections(0)), K::NothingToDo);
        assert_eq!(kind_of(b().messages(Some(0))), K::ZeroMessages);
        assert_eq!(kind_of(b().duration(Some(Duration::ZERO))), K::ZeroDuration);
        assert_eq!(
            kind_of(b().reply_timeout(Some(Duration::ZERO))),
            K::ZeroReplyTimeout
        );
        assert_eq!(kind_of(b().rate(Some(0))), K::ZeroRate);
        assert_eq!(kind_of(b().messages(None)), K::NoEnd);
        assert_eq!(
            kind_of(b().connections(u64::MAX).messages(Some(2))),
            K::TooManyMessages
        );
        // Idle-only runs need no end: a stop ends them.
        assert!(b().connections(0).idle(3).messages(None).build().is_ok());
    }
}
