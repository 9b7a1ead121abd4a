//! SIGINT/SIGTERM for `chi serve`: the first one drains the server, any later one stops it at
//! once. The binary owns this policy; the server library only offers the handle.

use std::io;
use std::thread::JoinHandle;

use chi_net::ServerHandle;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// A thread that turns SIGINT/SIGTERM into `shutdown` (the first) and `shutdown_now` (any
/// later one). Dropping it stops the thread; the signals stay caught by signal-hook, so a
/// signal arriving after that is ignored rather than killing the process mid-cleanup.
pub(crate) struct ShutdownOnSignal {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl ShutdownOnSignal {
    /// Installs the handlers and starts the thread.
    pub(crate) fn install(server: ServerHandle) -> io::Result<ShutdownOnSignal> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("chi-signals".into())
            .spawn(move || {
                for (n, signal) in signals.forever().enumerate() {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    if n == 0 {
                        tracing::info!("{name} received: draining (send it again to stop at once)");
                        server.shutdown();
                    } else {
                        tracing::warn!("{name} received again: closing every connection now");
                        server.shutdown_now();
                    }
                }
            })?;
        Ok(ShutdownOnSignal {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for ShutdownOnSignal {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
