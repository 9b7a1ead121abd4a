//! [`Server`]: bind, report the address, run one of the models until shut down.

mod acceptor;
mod chunk;
mod conn;
mod event;
mod handle;
mod idle;
mod listener;
mod loops;
mod pooled;
mod slab;
mod state;
#[cfg(test)]
mod tests;
#[cfg(all(feature = "uring", target_os = "linux"))]
mod uring;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use handle::ServerHandle;
pub use state::ServerStats;

use crate::config::{Model, ServerConfig};
use crate::handler::{AsciiUpper, Handler};
use state::Shared;

/// Bytes a server reads from a connection at once: the most one `Handler::handle` call sees.
pub const READ_CHUNK: usize = 64 * 1024;

/// The `tracing` target under which each received message is logged at DEBUG level, so
/// `chi serve -v` shows every message. The level is checked once per `run`, not per read.
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
    listeners: Listeners,
    local_addr: SocketAddr,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds a server speaking the upper-casing protocol ([`AsciiUpper`]).
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
        let (addr, reuse_port, backlog) = (config.addr(), config.reuse_port(), config.backlog());
        let listeners = match config.model() {
            Model::Uring => listener::bind_group(addr, config.workers(), reuse_port, backlog)
                .map(Listeners::PerLoop),
            _ => listener::bind(addr, reuse_port, backlog).map(Listeners::One),
        };
        let listeners = listeners.map_err(|error| ServerError::Bind { addr, error })?;
        let local_addr = listeners.local_addr().map_err(ServerError::Setup)?;
        Ok(Server {
            listeners,
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

    /// Serves connections until a shutdown is requested through a [`ServerHandle`], drains,
    /// and returns the final counters. Same as [`run_with_ready`](Self::run_with_ready) with
    /// nothing to do when ready.
    pub fn run(self) -> Result<ServerStats, ServerError> {
        self.run_with_ready(|| {})
    }

    /// As [`run`](Self::run), calling `ready` once the server is ready to serve: every thread
    /// it needs has started and every descriptor it needs is open, so nothing but a dying
    /// thread can make it fail afterwards. (`chi serve` prints `listening on …` there.) A
    /// start-up failure returns before `ready` is called. The pooled model's workers are
    /// `chi::ThreadPool` threads, which start on demand.
    ///
    /// Accept errors never end the server: per-connection failures are skipped, and running
    /// out of descriptors (EMFILE/ENFILE) pauses accepting until a connection closes or a
    /// short back-off passes. It returns an error when it cannot start (poll, threads, pool)
    /// or when one of its threads died ([`ServerError::ThreadDied`]); in that case it stops
    /// the others first.
    pub fn run_with_ready(self, ready: impl FnOnce()) -> Result<ServerStats, ServerError> {
        let log_messages = tracing::enabled!(target: MESSAGE_LOG_TARGET, tracing::Level::DEBUG);
        let (addr, model, workers) = (self.local_addr, self.config.model(), self.config.workers());
        let mut ready = Some(ready);
        let mut on_ready = move || {
            tracing::info!(%addr, %model, workers, "serving");
            if let Some(ready) = ready.take() {
                ready();
            }
        };
        let shared = Arc::clone(&self.shared);
        let ctx = RunContext {
            listeners: self.listeners,
            config: self.config,
            handler: self.handler,
            shared: Arc::clone(&shared),
            log_messages,
        };
        // The acceptor runs here: a panic in it stops the model's threads (they are told as
        // it unwinds) and becomes an error like any other thread's death.
        let outcome = catch_unwind(AssertUnwindSafe(|| match model {
            Model::Event => event::run(ctx, &mut on_ready),
            Model::Pooled => pooled::run(ctx, &mut on_ready),
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Model::Uring => uring::run(ctx, &mut on_ready),
            #[cfg(not(all(feature = "uring", target_os = "linux")))]
            Model::Uring => Err(ServerError::Uring(uring_not_built())),
        }));
        match outcome {
            Ok(result) => result?,
            Err(panic) => shared.thread_died("the acceptor", &panic_message(&*panic)),
        }
        match shared.failure() {
            Some(cause) => Err(ServerError::ThreadDied(cause)),
            None => Ok(shared.stats()),
        }
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

/// Where a model accepts connections.
pub(crate) enum Listeners {
    /// One listener, on which the acceptor accepts and from which it deals (event, pooled).
    One(TcpListener),
    /// One per loop, each loop accepting on its own (uring); they share the port through
    /// `SO_REUSEPORT` (see `listener::bind_group`).
    PerLoop(Vec<TcpListener>),
}

impl Listeners {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listeners::One(listener) => listener.local_addr(),
            Listeners::PerLoop(group) => group
                .first()
                .ok_or_else(|| io::Error::other("no listener"))?
                .local_addr(),
        }
    }

    /// The acceptor's listener, and the loops'.
    fn split(self) -> (Option<TcpListener>, Vec<TcpListener>) {
        match self {
            Listeners::One(listener) => (Some(listener), Vec::new()),
            Listeners::PerLoop(group) => (None, group),
        }
    }
}

/// What a model needs to run: the listeners, the settings, the handler and the shared state.
pub(crate) struct RunContext {
    pub(crate) listeners: Listeners,
    pub(crate) config: ServerConfig,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) shared: Arc<Shared>,
    /// Whether DEBUG is on for [`MESSAGE_LOG_TARGET`], checked once.
    pub(crate) log_messages: bool,
}

impl RunContext {
    /// Takes the listeners out (leaving none): the acceptor's, and the loops'.
    pub(crate) fn take_listeners(&mut self) -> (Option<TcpListener>, Vec<TcpListener>) {
        std::mem::replace(&mut self.listeners, Listeners::PerLoop(Vec::new())).split()
    }
}

/// `now + after`, or `None` ("never") when that is past what an `Instant` can hold.
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Option<Instant> {
    now.checked_add(after)
}

/// The message a panic carried, for logs and errors.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Why a server could not bind or start, or stopped on its own.
///
/// Each message includes the underlying error, so none of them also reports it as a
/// `source` (a chain printer would show it twice).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {error}{hint}", hint = bind_hint(.error))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error (part of the message, so not also a `source`).
        error: io::Error,
    },
    /// Creating the poller, a waker or a thread failed.
    #[error("cannot start the server: {0}")]
    Setup(io::Error),
    /// The pooled model's `chi::ThreadPool` could not be built.
    #[error("cannot start the connection pool: {0}")]
    Pool(chi::BuildError),
    /// A server thread (the acceptor, an event or uring loop, a pooled worker) died: it
    /// panicked or its poll failed. The server stopped the other threads and closed every connection.
    #[error("the server stopped because {0}")]
    ThreadDied(String),
    /// The `uring` model cannot run here: io_uring is disabled (see
    /// `/proc/sys/kernel/io_uring_disabled`), the kernel is older than 6.1, a seccomp policy
    /// forbids it, or chi-net was built without its `uring` feature.
    #[error(
        "cannot start the uring model: {0} (io_uring may be disabled: see /proc/sys/kernel/io_uring_disabled; it needs Linux 6.1+ and no seccomp policy forbidding it; --model event works everywhere)"
    )]
    Uring(io::Error),
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
