//! The seed's client: connect, then send a message, print the answer, wait, and again —
//! forever, or `count` times.
//!
//! Unlike the seed (which does one `recv(1024)` and may print half an answer, or several),
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

/// What [`run`] does: where to connect, what to send, how often, how many times.
///
/// ```
/// use std::time::Duration;
///
/// let mut config = chi_net::ClientConfig::default(); // 127.0.0.1:8080, "hello world", every 2 s, forever
/// config.count = Some(3);
/// config.interval = Duration::from_millis(10);
/// assert_eq!(config.message, b"hello world");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub addr: String,
    /// The bytes to send each time; must not be empty.
    pub message: Vec<u8>,
    /// The pause after each answer (not after the last one).
    pub interval: Duration,
    /// How many exchanges; `None` runs until an error (the seed's `while True`).
    pub count: Option<u64>,
    /// Give up when an answer takes longer; `None` waits as long as the server takes.
    pub reply_timeout: Option<Duration>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl Default for ClientConfig {
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

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The message to send is empty.
    #[error("the message is empty: there is nothing to send")]
    EmptyMessage,
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

/// A connection to a server speaking the seed's protocol.
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

/// The seed's client loop: connect, then send `config.message`, print the answer as a line on
/// `out` (invalid UTF-8 shown with U+FFFD), wait `config.interval`, repeat — `count` times or
/// until an error.
///
/// ```no_run
/// let mut config = chi_net::ClientConfig::default();
/// config.count = Some(1);
/// let summary = chi_net::client::run(&config, &mut std::io::stdout())?;
/// assert_eq!(summary.exchanges, 1);
/// # Ok::<(), chi_net::ClientError>(())
/// ```
pub fn run(config: &ClientConfig, out: &mut dyn Write) -> Result<ClientSummary, ClientError> {
    if config.message.is_empty() {
        return Err(ClientError::EmptyMessage);
    }
    let mut client = Client::connect(&config.addr, config.connect_timeout)?;
    tracing::debug!(server = %client.peer_addr(), "connected");
    let mut summary = ClientSummary::default();
    if config.count == Some(0) {
        return Ok(summary);
    }
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
