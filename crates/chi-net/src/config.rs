//! [`ServerConfig`]: where to listen, which concurrency model, and the limits; validated by
//! [`ServerConfigBuilder::build`] into a [`ConfigError`] that says what is wrong.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

/// The seed's address: `127.0.0.1:8080`.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Workers of the `pooled` model when not set: 3, as the seed's `ThreadPoolExecutor(3)`.
pub const DEFAULT_POOLED_WORKERS: usize = 3;
/// Connections open at once when not set.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Unsent output per connection above which the `event` model stops reading from it.
pub const DEFAULT_OUTPUT_CAP: usize = 256 * 1024;
/// How long a graceful shutdown may take before the remaining connections are closed.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The listen backlog when not set.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// The most workers (event loops or pool threads) a configuration may ask for.
pub const MAX_WORKERS: usize = 4096;

/// How the server runs its connections.
///
/// ```
/// assert_eq!("pooled".parse::<chi_net::Model>().unwrap(), chi_net::Model::Pooled);
/// assert_eq!(chi_net::Model::default().to_string(), "event");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Model {
    /// One mio event loop per core; every connection lives on one loop and the handler runs
    /// inline. Scales to many thousands of mostly idle clients. The default.
    #[default]
    Event,
    /// The seed's design: each connection is served by one `chi::ThreadPool` worker for its
    /// whole life. With W workers, W clients are served at once and the next ones wait.
    Pooled,
    /// As `Event`, with one io_uring loop per core instead of one epoll loop: multishot
    /// receives into provided buffers and every send of a loop turn submitted at once. Needs
    /// Linux 6.1 or later with io_uring enabled, and chi-net's `uring` feature; where it is
    /// unavailable `Server::run` fails at start (no fallback).
    Uring,
}

impl Model {
    /// The lower-case name used on command lines (`event`, `pooled`, `uring`).
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Event => "event",
            Model::Pooled => "pooled",
            Model::Uring => "uring",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Model::from_str` got a name other than `event` or `pooled`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model `{0}`: expected `event`, `pooled` or `uring`")]
pub struct ParseModelError(String);

impl FromStr for Model {
    type Err = ParseModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "event" => Ok(Model::Event),
            "pooled" => Ok(Model::Pooled),
            "uring" => Ok(Model::Uring),
            other => Err(ParseModelError(other.to_owned())),
        }
    }
}

/// A validated server configuration. Build one with [`ServerConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use chi_net::{Model, ServerConfig};
///
/// let config = ServerConfig::builder()
///     .addr("127.0.0.1:0".parse().unwrap())
///     .model(Model::Pooled)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .build()
///     .unwrap();
/// assert_eq!(config.workers(), 3); // the seed's pool size
///
/// let err = ServerConfig::builder().workers(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "workers must be at least 1");
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    addr: SocketAddr,
    model: Model,
    workers: Option<usize>,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    output_cap: usize,
    reuse_port: bool,
    drain_timeout: Duration,
    handle_signals: bool,
    backlog: u32,
}

impl Default for ServerConfig {
    /// The seed's server: `127.0.0.1:8080`, event model, no idle timeout.
    fn default() -> Self {
        ServerConfig {
            addr: DEFAULT_ADDR,
            model: Model::Event,
            workers: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: None,
            output_cap: DEFAULT_OUTPUT_CAP,
            reuse_port: false,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            handle_signals: false,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

impl ServerConfig {
    /// A builder starting from the defaults (see [`ServerConfig::default`]).
    pub fn builder() -> ServerConfigBuilder {
        ServerConfigBuilder {
            config: ServerConfig::default(),
        }
    }

    /// The address to listen on (port 0 picks a free port; see `Server::local_addr`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The concurrency model.
    pub fn model(&self) -> Model {
        self.model
    }

    /// Event loops (`event`) or pool workers (`pooled`): the value set, or the model's default
    /// (one loop per core; 3 workers).
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| match self.model {
            Model::Event | Model::Uring => {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            }
            Model::Pooled => DEFAULT_POOLED_WORKERS,
        })
    }

    /// The most connections open at once (served or, in the pooled model, waiting for a
    /// worker). A connection accepted over the limit is closed at once, without an answer.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Close a connection after this long without a byte read or written; `None` (the
    /// default, as in the seed) keeps silent clients forever.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Unsent output a connection may have before the `event` model stops reading from it.
    pub fn output_cap(&self) -> usize {
        self.output_cap
    }

    /// Whether the listening socket sets `SO_REUSEPORT` (several processes on one port).
    pub fn reuse_port(&self) -> bool {
        self.reuse_port
    }

    /// The longest a graceful shutdown waits before closing the remaining connections.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// Whether `Server::run` turns SIGINT/SIGTERM into a graceful shutdown (a second signal
    /// stops at once).
    pub fn handle_signals(&self) -> bool {
        self.handle_signals
    }

    /// The listen backlog: connections the kernel holds before the server accepts them.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }
}

/// Sets the fields of a [`ServerConfig`]; [`build`](ServerConfigBuilder::build) validates them.
#[derive(Debug, Clone)]
pub struct ServerConfigBuilder {
    config: ServerConfig,
}

impl ServerConfigBuilder {
    /// The address to listen on. Default `127.0.0.1:8080`.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.config.addr = addr;
        self
    }

    /// The concurrency model. Default [`Model::Event`].
    pub fn model(mut self, model: Model) -> Self {
        self.config.model = model;
        self
    }

    /// Event loops (`event`) or pool workers (`pooled`). At least 1, at most [`MAX_WORKERS`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = Some(workers);
        self
    }

    /// The most connections open at once; at least 1. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// Idle timeout; `None` turns it off (the default). `Some(Duration::ZERO)` is an error.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Unsent output per connection over which reading pauses; at least 1 byte.
    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.config.output_cap = bytes;
        self
    }

    /// Set `SO_REUSEPORT` on the listening socket. Default off.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.config.reuse_port = on;
        self
    }

    /// How long a graceful shutdown may take; more than zero. Default 5 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// Let `Server::run` handle SIGINT/SIGTERM (drain; a second signal stops at once).
    /// Default off: a library user usually owns its signals.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.config.handle_signals = on;
        self
    }

    /// The listen backlog; at least 1. Default [`DEFAULT_BACKLOG`].
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.config.backlog = backlog;
        self
    }

    /// Checks every setting and returns the configuration, or the first problem found.
    pub fn build(self) -> Result<ServerConfig, ConfigError> {
        let c = &self.config;
        let fail = |kind| Err(ConfigError { kind });
        match c.workers {
            Some(0) => return fail(ConfigErrorKind::ZeroWorkers),
            Some(n) if n > MAX_WORKERS => return fail(ConfigErrorKind::TooManyWorkers(n)),
            _ => {}
        }
        if c.max_connections == 0 {
            return fail(ConfigErrorKind::ZeroMaxConnections);
        }
        if c.idle_timeout == Some(Duration::ZERO) {
            return fail(ConfigErrorKind::ZeroIdleTimeout);
        }
        if c.output_cap == 0 {
            return fail(ConfigErrorKind::ZeroOutputCap);
        }
        if c.drain_timeout.is_zero() {
            return fail(ConfigErrorKind::ZeroDrainTimeout);
        }
        if c.backlog == 0 {
            return fail(ConfigErrorKind::ZeroBacklog);
        }
        Ok(self.config)
    }
}

/// A setting of [`ServerConfig`] is out of range. [`kind`](ConfigError::kind) says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
}

impl ConfigError {
    /// Which setting is wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

/// The settings [`ConfigError`] can reject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// `workers(0)`.
    ZeroWorkers,
    /// More workers than [`MAX_WORKERS`].
    TooManyWorkers(usize),
    /// `max_connections(0)`.
    ZeroMaxConnections,
    /// `idle_timeout(Some(0))`; use `None` to turn the timeout off.
    ZeroIdleTimeout,
    /// `output_cap(0)`.
    ZeroOutputCap,
    /// `drain_timeout(0)`.
    ZeroDrainTimeout,
    /// `backlog(0)`.
    ZeroBacklog,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ConfigErrorKind::ZeroWorkers => f.write_str("workers must be at least 1"),
            ConfigErrorKind::TooManyWorkers(n) => {
                write!(f, "workers must be at most {MAX_WORKERS} (got {n})")
            }
            ConfigErrorKind::ZeroMaxConnections => {
                f.write_str("max connections must be at least 1")
            }
            ConfigErrorKind::ZeroIdleTimeout => {
                f.write_str("idle timeout must be more than zero (leave it unset to turn it off)")
            }
            ConfigErrorKind::ZeroOutputCap => f.write_str("output cap must be at least 1 byte"),
            ConfigErrorKind::ZeroDrainTimeout => {
                f.write_str("drain timeout must be more than zero")
            }
            ConfigErrorKind::ZeroBacklog => f.write_str("listen backlog must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(builder: ServerConfigBuilder) -> ConfigErrorKind {
        builder.build().unwrap_err().kind().clone()
    }

    #[test]
    fn config_defaults_follow_the_seed() {
        let c = ServerConfig::builder().build().unwrap();
        assert_eq!(c.addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.model(), Model::Event);
        assert_eq!(c.idle_timeout(), None);
        assert!(!c.reuse_port());
        let pooled = ServerConfig::builder()
            .model(Model::Pooled)
            .build()
            .unwrap();
        assert_eq!(pooled.workers(), 3);
        assert!(c.workers() >= 1);
    }

    #[test]
    fn config_rejects_each_bad_setting() {
        let b = ServerConfig::builder;
        assert_eq!(kind_of(b().workers(0)), ConfigErrorKind::ZeroWorkers);
        assert_eq!(
            kind_of(b().workers(MAX_WORKERS + 1)),
            ConfigErrorKind::TooManyWorkers(MAX_WORKERS + 1)
        );
        assert_eq!(
            kind_of(b().max_connections(0)),
            ConfigErrorKind::ZeroMaxConnections
        );
        assert_eq!(
            kind_of(b().idle_timeout(Some(Duration::ZERO))),
            ConfigErrorKind::ZeroIdleTimeout
        );
        assert_eq!(kind_of(b().output_cap(0)), ConfigErrorKind::ZeroOutputCap);
        assert_eq!(
            kind_of(b().drain_timeout(Duration::ZERO)),
            ConfigErrorKind::ZeroDrainTimeout
        );
        assert_eq!(kind_of(b().backlog(0)), ConfigErrorKind::ZeroBacklog);
    }

    #[test]
    fn config_error_messages_name_the_setting() {
        let err = ServerConfig::builder()
            .max_connections(0)
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "max connections must be at least 1");
        let err = ServerConfig::builder().workers(10_000).build().unwrap_err();
        assert!(err.to_string().contains("at most 4096"), "{err}");
    }

    #[test]
    fn model_parses_and_displays() {
        for model in [Model::Event, Model::Pooled, Model::Uring] {
            assert_eq!(model.to_string().parse::<Model>(), Ok(model));
        }
        let err = "threads".parse::<Model>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown model `threads`: expected `event`, `pooled` or `uring`"
        );
    }
}
