//! [`ServerConfig`]: where to listen, which concurrency model, and the limits; validated by
//! [`ServerConfigBuilder::build`] into a [`ConfigError`] that says what is wrong.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

/// The default address: `127.0.0.1:8080`.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Workers of the `pooled` model when not set: 3, the classic thread-pool server's pool size.
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
/// The longest idle or drain timeout a configuration may ask for: 365 days. Longer ones are
/// rejected rather than risking deadlines past what the clock can represent.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The most connections a configuration may allow open at once: 2^20, Linux's default ceiling
/// on descriptors per process (`fs.nr_open`).
pub const MAX_CONNECTIONS: usize = 1 << 20;
/// The largest output cap a configuration may ask for: 1 GiB of unsent output per connection.
pub const MAX_OUTPUT_CAP: usize = 1 << 30;
/// The largest listen backlog a configuration may ask for (the kernel clamps it further to
/// `net.core.somaxconn`).
pub const MAX_BACKLOG: u32 = 1 << 20;

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
    /// The classic thread-pool server design: each connection is served by one `chi::ThreadPool` worker for its
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
/// assert_eq!(config.workers(), 3); // the classic pool size
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
    backlog: u32,
}

impl Default for ServerConfig {
    /// The defaults: `127.0.0.1:8080`, event model, no idle timeout.
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
    /// default) keeps silent clients forever.
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

    /// The most connections open at once; at least 1, at most [`MAX_CONNECTIONS`]. Default
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// Idle timeout; `None` turns it off (the default). `Some(Duration::ZERO)` and more than
    /// [`MAX_DURATION`] are errors.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Unsent output per connection over which reading pauses; at least 1 byte, at most
    /// [`MAX_OUTPUT_CAP`].
    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.config.output_cap = bytes;
        self
    }

    /// Set `SO_REUSEPORT` on the listening socket. Default off.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.config.reuse_port = on;
        self
    }

    /// How long a graceful shutdown may take; more than zero, at most [`MAX_DURATION`].
    /// Default 5 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// The listen backlog; at least 1, at most [`MAX_BACKLOG`]. Default [`DEFAULT_BACKLOG`].
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.config.backlog = backlog;
        self
    }

    /// Checks every setting and returns the configuration, or the first problem found.
    pub fn build(self) -> Result<ServerConfig, ConfigError> {
        use ConfigErrorKind as K;
        let c = &self.config;
        let problem = match c.workers {
            Some(0) => Some(K::ZeroWorkers),
            Some(n) if n > MAX_WORKERS => Some(K::TooManyWorkers(n)),
            _ => None,
        };
        let problem = problem.or(match c.max_connections {
            0 => Some(K::ZeroMaxConnections),
            n if n > MAX_CONNECTIONS => Some(K::TooManyConnections(n)),
            _ => None,
        });
        let problem = problem.or(match c.idle_timeout {
            Some(Duration::ZERO) => Some(K::ZeroIdleTimeout),
            Some(d) if d > MAX_DURATION => Some(K::IdleTimeoutTooLong(d)),
            _ => None,
        });
        let problem = problem.or(match c.output_cap {
            0 => Some(K::ZeroOutputCap),
            n if n > MAX_OUTPUT_CAP => Some(K::OutputCapTooLarge(n)),
            _ => None,
        });
        let problem = problem.or(match c.drain_timeout {
            Duration::ZERO => Some(K::ZeroDrainTimeout),
            d if d > MAX_DURATION => Some(K::DrainTimeoutTooLong(d)),
            _ => None,
        });
        let problem = problem.or(match c.backlog {
            0 => Some(K::ZeroBacklog),
            n if n > MAX_BACKLOG => Some(K::BacklogTooLarge(n)),
            _ => None,
        });
        match problem {
            Some(kind) => Err(ConfigError { kind }),
            None => Ok(self.config),
        }
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
    /// More connections than [`MAX_CONNECTIONS`].
    TooManyConnections(usize),
    /// `idle_timeout(Some(0))`; use `None` to turn the timeout off.
    ZeroIdleTimeout,
    /// An idle timeout longer than [`MAX_DURATION`].
    IdleTimeoutTooLong(Duration),
    /// `output_cap(0)`.
    ZeroOutputCap,
    /// An output cap over [`MAX_OUTPUT_CAP`].
    OutputCapTooLarge(usize),
    /// `drain_timeout(0)`.
    ZeroDrainTimeout,
    /// A drain timeout longer than [`MAX_DURATION`].
    DrainTimeoutTooLong(Duration),
    /// `backlog(0)`.
    ZeroBacklog,
    /// A backlog over [`MAX_BACKLOG`].
    BacklogTooLarge(u32),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind as K;
        const MAX_DAYS: u64 = MAX_DURATION.as_secs() / 86_400;
        match &self.kind {
            K::ZeroWorkers => f.write_str("workers must be at least 1"),
            K::TooManyWorkers(n) => write!(f, "workers must be at most {MAX_WORKERS} (got {n})"),
            K::ZeroMaxConnections => f.write_str("max connections must be at least 1"),
            K::TooManyConnections(n) => {
                write!(
                    f,
                    "max connections must be at most {MAX_CONNECTIONS} (got {n})"
                )
            }
            K::ZeroIdleTimeout => {
                f.write_str("idle timeout must be more than zero (leave it unset to turn it off)")
            }
            K::IdleTimeoutTooLong(d) => write!(
                f,
                "idle timeout must be at most {MAX_DAYS} days (got {} s; leave it unset to turn it off)",
                d.as_secs()
            ),
            K::ZeroOutputCap => f.write_str("output cap must be at least 1 byte"),
            K::OutputCapTooLarge(n) => {
                write!(
                    f,
                    "output cap must be at most {MAX_OUTPUT_CAP} bytes (1 GiB; got {n})"
                )
            }
            K::ZeroDrainTimeout => f.write_str("drain timeout must be more than zero"),
            K::DrainTimeoutTooLong(d) => write!(
                f,
                "drain timeout must be at most {MAX_DAYS} days (got {} s)",
                d.as_secs()
            ),
            K::ZeroBacklog => f.write_str("listen backlog must be at least 1"),
            K::BacklogTooLarge(n) => {
                write!(f, "listen backlog must be at most {MAX_BACKLOG} (got {n})")
            }
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
    fn config_defaults_are_the_classic_server() {
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
    fn config_rejects_each_setting_over_its_maximum() {
        let b = ServerConfig::builder;
        let long = MAX_DURATION + Duration::from_nanos(1);
        let huge = Duration::from_secs(10_000_000_000_000_000_000);
        for d in [long, huge, Duration::MAX] {
            assert_eq!(
                kind_of(b().idle_timeout(Some(d))),
                ConfigErrorKind::IdleTimeoutTooLong(d)
            );
            assert_eq!(
                kind_of(b().drain_timeout(d)),
                ConfigErrorKind::DrainTimeoutTooLong(d)
            );
        }
        assert_eq!(
            kind_of(b().max_connections(MAX_CONNECTIONS + 1)),
            ConfigErrorKind::TooManyConnections(MAX_CONNECTIONS + 1)
        );
        assert_eq!(
            kind_of(b().output_cap(MAX_OUTPUT_CAP + 1)),
            ConfigErrorKind::OutputCapTooLarge(MAX_OUTPUT_CAP + 1)
        );
        assert_eq!(
            kind_of(b().backlog(MAX_BACKLOG + 1)),
            ConfigErrorKind::BacklogTooLarge(MAX_BACKLOG + 1)
        );
        // Each maximum itself is accepted.
        b().idle_timeout(Some(MAX_DURATION))
            .drain_timeout(MAX_DURATION)
            .max_connections(MAX_CONNECTIONS)
            .output_cap(MAX_OUTPUT_CAP)
            .backlog(MAX_BACKLOG)
            .build()
            .unwrap();
        let err = b().idle_timeout(Some(huge)).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "idle timeout must be at most 365 days (got 10000000000000000000 s; leave it unset to turn it off)"
        );
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
