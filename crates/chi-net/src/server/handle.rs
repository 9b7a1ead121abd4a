//! [`ServerHandle`]: stop a server (graceful drain or at once) and read its counters from any
//! thread. The library never installs signal handlers; a program that wants SIGINT/SIGTERM to
//! stop the server calls the handle from its own handler (as `chi serve` does).

use std::fmt;
use std::sync::Arc;

use super::state::{RunState, ServerStats, Shared};

/// Controls a server from any thread: ask it to stop, read its counters.
///
/// Get one from `Server::handle` before calling `Server::run` (which blocks). Requests made
/// before `run` starts are honoured as soon as it does.
///
/// ```
/// use chi_net::{Server, ServerConfig};
///
/// let config = ServerConfig::builder().addr("127.0.0.1:0".parse().unwrap()).build().unwrap();
/// let server = Server::bind(config).unwrap();
/// let handle = server.handle();
/// let thread = std::thread::spawn(move || server.run());
/// handle.shutdown(); // stop accepting, answer what was received, close, return
/// let stats = thread.join().unwrap().unwrap();
/// assert_eq!(stats.open, 0);
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ServerHandle {
    /// Graceful shutdown: stop accepting, answer the data already received, send all pending
    /// output and FIN, close each connection once its client has closed too, and let `run`
    /// return — at the latest after the drain timeout, when the remaining connections are
    /// closed. Calling it again changes nothing; use [`shutdown_now`](Self::shutdown_now) to
    /// cut a drain short.
    pub fn shutdown(&self) {
        self.shared.request(RunState::Draining);
    }

    /// Immediate shutdown: stop accepting and close every connection now, unsent output lost.
    pub fn shutdown_now(&self) {
        self.shared.request(RunState::Stopping);
    }

    /// True once `shutdown` or `shutdown_now` was called (or a server thread died).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.state() != RunState::Running
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("state", &self.shared.state())
            .finish_non_exhaustive()
    }
}
