//! The line client: connect, then send a message, print the answer, wait, and again —
//! forever, or `count` times.
//!
//! Unlike a client that does one `recv(1024)` (and may print half an answer, or several),
//! [`Client::exchange`] reads exactly as many bytes as it sent, since the protocol answers
//! byte for byte. A server that is down, closes, or resets gives a [`ClientError`], never a
//! panic or a silent loop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long [`Client::connect`] tries each address of the host.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After this long without an answer the client logs that it is still waiting (a pooled
/// server whose workers are all busy queues new clients).
const WAIT_NOTICE: Duration = Duration::from_secs(5);

/// What [`run`] does: where to connect, what to send, how often, how many times. Build one
/// with [`ClientConfig::builder`].
///
/// ```
/// use std::time::Duration;
///
/// // 127.0.0.1:8080, "hello world", every 2 s, forever — here 3 times, every 10 ms:
/// let config = chi_net::ClientConfig::builder()
///     .count(Some(3))
///     .interval(Duration::from_millis(10))
///     .build()
///     .unwrap();
/// assert_eq!(config.message(), b"hello world");
///
/// let err = chi_net::ClientConfig::builder().message(Vec::new()).build().unwrap_err();
/// assert_eq!(err.to_string(), "the message is empty: there is nothing to send");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    addr: String,
    message: Vec<u8>,
    interval: Duration,
    count: Option<u64>,
    reply_timeout: Option<Duration>,
    connect_timeout: Duration,
}

impl Default for ClientConfig {
    /// `127.0.0.1:8080`, `hello world`, every 2 s, until an error, no answer timeout.
    fn default() -> Self {
        ClientConfig {
            addr: "127.0.0.1:8080".to_owned(),
            message: b"hello world".to_vec(),
            interval: Duration::from_secs(2),
            count: None,
            reply_timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl ClientConfig {
    /// A builder starting from the defaults (see [`ClientConfig::default`]).
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder {
            config: ClientConfig::default(),
        }
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The bytes sent each time.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// The pause after each answer (not after the last one).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many exchanges; `None` runs until an error.
    pub fn count(&self) -> Option<u64> {
        self.count
    }

    /// The longest an answer may take; `None` waits as long as the server takes.
    pub fn reply_timeout(&self) -> Option<Duration> {
        self.reply_timeout
    }

    /// How long connecting to each address of the host may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// Builds a [`ClientConfig`]; [`build`](ClientConfigBuilder::build) checks every setting.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientConfigBuilder {
    config: ClientConfig,
}

impl ClientConfigBuilder {
    /// `host:port` of the server (a name is resolved when connecting; every address is tried).
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.config.addr = addr.into();
        self
    }

    /// The bytes to send each time; not empty.
    pub fn message(mut self, message: impl Into<Vec<u8>>) -> Self {
        self.config.message = message.into();
        self
    }

    /// The pause after each answer.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// How many exchanges (at least 1), or `None` for no limit.
    pub fn count(mut self, count: Option<u64>) -> Self {
        self.config.count = count;
        self
    }

    /// The longest an answer may take (more than zero), or `None`.
    pub fn reply_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.reply_timeout = timeout;
        self
    }

    /// How long connecting to each address may take; more than zero.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Checks every setting and returns the configuration, or the first problem found.
    pub fn build(self) -> Result<ClientConfig, ClientConfigError> {
        let c = &self.config;
        let fail = |kind| Err(ClientConfigError { kind });
        if c.message.is_empty() {
            return fail(ClientConfigErrorKind::EmptyMessage);
        }
        if c.count == Some(0) {
            return fail(ClientConfigErrorKind::ZeroCount);
        }
        if c.reply_timeout == Some(Duration::ZERO) {
            return fail(ClientConfigErrorKind::ZeroReplyTimeout);
        }
        if c.connect_timeout.is_zero() {
            return fail(ClientConfigErrorKind::ZeroConnectTimeout);
        }
        Ok(self.config)
    }
}

/// A setting of [`ClientConfig`] is out of range. [`kind`](ClientConfigError::kind) says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfigError {
    kind: ClientConfigErrorKind,
}

impl ClientConfigError {
    /// Which setting is wrong.
    pub fn kind(&self) -> &ClientConfigErrorKind {
        &self.kind
    }
}

/// The settings [`ClientConfigError`] can reject.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientConfigErrorKind {
    /// `message` with no bytes.
    EmptyMessage,
    /// `count(Some(0))`.
    ZeroCount,
    /// `reply_timeout(Some(0))`.
    ZeroReplyTimeout,
    /// `connect_timeout(0)`.
    ZeroConnectTimeout,
}

impl std::fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            ClientConfigErrorKind::EmptyMessage => "the message is empty: there is nothing to send",
            ClientConfigErrorKind::ZeroCount => "the count must be at least 1",
            ClientConfigErrorKind::ZeroReplyTimeout => "the answer timeout must be more than zero",
            ClientConfigErrorKind::ZeroConnectTimeout => {
                "the connect timeout must be more than zero"
            }
        })
    }
}

impl std::error::Error for ClientConfigError {}

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address did not resolve.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// The address given.
        addr: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of the host accepted the connection.
    #[error("cannot connect to {addr}: {source} (is `chi serve` running there?)")]
    Connect {
        /// The address given.
        addr: String,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// The server closed the connection before answering in full.
    #[error("the server at {addr} closed the connection")]
    ServerClosed {
        /// The server's address.
        addr: SocketAddr,
    },
    /// Sending or receiving failed (reset by the server, broken pipe, ...).
    #[error("lost the connection to {addr}: {source}")]
    Connection {
        /// The server's address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// No full answer within the reply timeout.
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The server's address.
        addr: SocketAddr,
        /// The reply timeout.
        after: Duration,
    },
    /// Printing an answer failed (for example stdout was closed).
    #[error("cannot write the answer: {0}")]
    Output(#[source] io::Error),
}

/// A connection to a server speaking chi's upper-casing protocol.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    peer: SocketAddr,
}

impl Client {
    /// Connects to `addr` (`host:port`), trying each address it resolves to.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let addrs = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::Resolve {
                addr: addr.to_owned(),
                source,
            })?;
        let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no address found");
        for candidate in addrs {
            match TcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => {
                    // Each message is one small write; do not let Nagle hold it back.
                    let _ = stream.set_nodelay(true);
                    return Ok(Client {
                        stream,
                        peer: candidate,
                    });
                }
                Err(e) => last_err = e,
            }
        }
        Err(ClientError::Connect {
            addr: addr.to_owned(),
            source: last_err,
        })
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends `message` and reads exactly `message.len()` bytes of answer.
    pub fn exchange(
        &mut self,
        message: &[u8],
        reply_timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ClientError> {
        let peer = self.peer;
        let lost = |source: io::Error| match source.kind() {
            io::ErrorKind::UnexpectedEof => ClientError::ServerClosed { addr: peer },
            _ => ClientError::Connection { addr: peer, source },
        };
        self.stream.write_all(message).map_err(lost)?;
        let mut answer = vec![0; message.len()];
        let mut filled = 0;
        let started = Instant::now();
        let mut noticed = false;
        while filled < answer.len() {
            let slice = match reply_timeout {
                Some(limit) => {
                    let left = limit.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(ClientError::Timeout {
                            addr: peer,
                            after: limit,
                        });
                    }
                    left.min(WAIT_NOTICE)
                }
                None => WAIT_NOTICE,
            };
            self.stream.set_read_timeout(Some(slice)).map_err(lost)?;
            match self.stream.read(&mut answer[filled..]) {
                Ok(0) => return Err(ClientError::ServerClosed { addr: peer }),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if !noticed {
                        noticed = true;
                        tracing::info!(
                            server = %peer,
                            "no answer yet; still waiting (a pooled server with every worker busy queues new clients)"
                        );
                    }
                }
                Err(e) => return Err(lost(e)),
            }
        }
        Ok(answer)
    }
}

/// What a finished [`run`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSummary {
    /// Messages sent and answered.
    pub exchanges: u64,
}

/// The client loop: connect, then send `config.message`, print the answer as a line on
/// `out` (invalid UTF-8 shown with U+FFFD), wait `config.interval`, repeat — `count` times or
/// until an error.
///
/// ```no_run
/// let config = chi_net::ClientConfig::builder().count(Some(1)).build().unwrap();
/// let summary = chi_net::client::run(&config, &mut std::io::stdout())?;
/// assert_eq!(summary.exchanges, 1);
/// # Ok::<(), chi_net::ClientError>(())
/// ```
pub fn run(config: &ClientConfig, out: &mut dyn Write) -> Result<ClientSummary, ClientError> {
    let mut client = Client::connect(&config.addr, config.connect_timeout)?;
    tracing::debug!(server = %client.peer_addr(), "connected");
    let mut summary = ClientSummary::default();
    loop {
        let answer = client.exchange(&config.message, config.reply_timeout)?;
        summary.exchanges += 1;
        writeln!(out, "{}", String::from_utf8_lossy(&answer))
            .and_then(|()| out.flush())
            .map_err(ClientError::Output)?;
        if config.count.is_some_and(|count| summary.exchanges >= count) {
            return Ok(summary);
        }
        std::thread::sleep(config.interval);
    }
}
