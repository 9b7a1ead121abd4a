//! [`Server`]: bind, report the address, run one of the two models until shut down.

mod acceptor;
mod conn;
mod event;
mod pooled;
#[cfg(all(feature = "uring", target_os = "linux"))]
mod uring;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use crate::config::{Model, ServerConfig};
use crate::handler::{AsciiUpper, Handler};
use crate::listener;
use crate::shutdown::{ServerHandle, Shared, SignalThread};

/// Bytes a server reads from a connection at once: the most one `Handler::handle` call sees.
pub const READ_CHUNK: usize = 64 * 1024;

/// The `tracing` target under which each received message is logged at DEBUG level, as the
/// seed prints every message (`chi serve -v`). The level is checked once per `run`, not per read.
pub const MESSAGE_LOG_TARGET: &str = "chi_net::message";

/// A bound TCP server, ready to [`run`](Server::run).
///
/// ```no_run
/// use chi_net::{Server, ServerConfig};
///
/// let server = Server::bind(ServerConfig::default())?; // 127.0.0.1:8080, event model
/// println!("listening on {}", server.local_addr());
/// let stats = server.run()?; // blocks until shut down
/// println!("served {} connections", stats.accepted);
/// # Ok::<(), chi_net::ServerError>(())
/// ```
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds a server speaking the seed's protocol ([`AsciiUpper`]).
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        Server::bind_with(config, AsciiUpper)
    }

    /// Binds a server that answers with `handler`. With [`Model::Uring`] it first checks that
    /// an io_uring can be set up here, and fails with [`ServerError::Uring`] if not.
    pub fn bind_with<H: Handler>(config: ServerConfig, handler: H) -> Result<Server, ServerError> {
        if config.model() == Model::Uring {
            // Before listening, so nothing announces a server that cannot run.
            #[cfg(all(feature = "uring", target_os = "linux"))]
            uring::check_available().map_err(ServerError::Uring)?;
            #[cfg(not(all(feature = "uring", target_os = "linux")))]
            return Err(ServerError::Uring(uring_not_built()));
        }
        let addr = config.addr();
        let listener = listener::bind(addr, config.reuse_port(), config.backlog())
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(ServerError::Setup)?;
        Ok(Server {
            listener,
            local_addr,
            config,
            handler: Arc::new(handler),
            shared: Arc::new(Shared::default()),
        })
    }

    /// The address the server listens on, with the real port when the configured port was 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configuration the server was bound with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A handle to shut the server down or read its counters from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves connections until a shutdown is requested (through a [`ServerHandle`] or, when
    /// configured, SIGINT/SIGTERM), drains, and returns the final counters.
    ///
    /// Accept errors never end it: per-connection failures are skipped, and running out of
    /// descriptors (EMFILE/ENFILE) pauses accepting until a connection closes or a short
    /// back-off passes. It returns an error only when it cannot start (poll, threads, pool,
    /// signal handlers).
    pub fn run(self) -> Result<ServerStats, ServerError> {
        let _signals = if self.config.handle_signals() {
            Some(SignalThread::spawn(self.handle()).map_err(ServerError::Signals)?)
        } else {
            None
        };
        let log_messages = tracing::enabled!(target: MESSAGE_LOG_TARGET, tracing::Level::DEBUG);
        tracing::info!(
            addr = %self.local_addr,
            model = %self.config.model(),
            workers = self.config.workers(),
            "serving"
        );
        let shared = Arc::clone(&self.shared);
        let ctx = RunContext {
            listener: self.listener,
            config: self.config,
            handler: self.handler,
            shared: Arc::clone(&shared),
            log_messages,
        };
        match ctx.config.model() {
            Model::Event => event::run(ctx)?,
            Model::Pooled => pooled::run(ctx)?,
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Model::Uring => uring::run(ctx)?,
            #[cfg(not(all(feature = "uring", target_os = "linux")))]
            Model::Uring => return Err(ServerError::Uring(uring_not_built())),
        }
        Ok(shared.stats())
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a model needs to run: the listener, the settings, the handler and the shared state.
pub(crate) struct RunContext {
    pub(crate) listener: TcpListener,
    pub(crate) config: ServerConfig,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) shared: Arc<Shared>,
    /// Whether DEBUG is on for [`MESSAGE_LOG_TARGET`], checked once.
    pub(crate) log_messages: bool,
}

/// A server's counters: a snapshot from [`ServerHandle::stats`], or the final ones from
/// [`Server::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now: being served, or (pooled) waiting for a worker.
    pub open: usize,
    /// Pooled model: connections accepted and waiting for a free worker.
    pub waiting: usize,
    /// Connections accepted and served (not counting rejected ones).
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub rejected: u64,
    /// Served connections that have closed.
    pub closed: u64,
    /// Connections closed by the drain deadline or `shutdown_now` rather than by finishing.
    pub forced: u64,
    /// Bytes received, counted when each connection closes.
    pub bytes_in: u64,
    /// Bytes sent, counted when each connection closes.
    pub bytes_out: u64,
    /// Times accepting paused because the process or system ran out of descriptors or memory.
    pub accept_backoffs: u64,
    /// The most unsent output any one connection held. Event model: what the socket did not
    /// take at once, queued on the connection (0 while every answer is written whole), at most
    /// the output cap plus one chunk's answer. Pooled: the answer to one chunk, held while its
    /// worker writes it.
    pub peak_output_buffer: usize,
}

/// Why a server could not bind or start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}{hint}", hint = bind_hint(.source))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// Creating the poller, a waker or a thread failed.
    #[error("cannot start the server: {0}")]
    Setup(#[source] io::Error),
    /// The pooled model's `chi::ThreadPool` could not be built.
    #[error("cannot start the connection pool: {0}")]
    Pool(#[source] chi::BuildError),
    /// The `uring` model cannot run here: io_uring is disabled (see
    /// `/proc/sys/kernel/io_uring_disabled`), the kernel is older than 6.1, a seccomp policy
    /// forbids it, or chi-net was built without its `uring` feature.
    #[error(
        "cannot start the uring model: {0} (io_uring may be disabled: see /proc/sys/kernel/io_uring_disabled; it needs Linux 6.1+ and no seccomp policy forbidding it; --model event works everywhere)"
    )]
    Uring(io::Error),
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(#[source] io::Error),
}

#[cfg(not(all(feature = "uring", target_os = "linux")))]
fn uring_not_built() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this build has no io_uring support (chi-net's `uring` feature, Linux only)",
    )
}

fn bind_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::AddrInUse => {
            " (another process holds the port: stop it, choose another port, or set SO_REUSEPORT, `--reuse-port`, on both)"
        }
        io::ErrorKind::AddrNotAvailable => " (the address is not one of this machine's)",
        io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
}
