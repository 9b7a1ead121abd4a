//! `chi serve`: flags → `ServerConfig` → bind → signal handlers → run, printing
//! `listening on …` once the server is ready → a summary at shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use chi_net::{Server, ServerConfig};

use crate::args::ServeArgs;
use crate::signals::ShutdownOnSignal;

/// Builds the server configuration the flags describe.
fn config(args: &ServeArgs) -> Result<ServerConfig, chi_net::ConfigError> {
    let mut builder = ServerConfig::builder()
        .addr(args.addr)
        .model(args.model.into())
        .max_connections(args.max_connections)
        .idle_timeout(args.idle_timeout)
        .output_cap(args.output_cap)
        .reuse_port(args.reuse_port)
        .drain_timeout(args.drain_timeout);
    if let Some(workers) = args.workers {
        builder = builder.workers(workers);
    }
    builder.build()
}

/// Prints the first stdout line scripts wait for, flushed at once. A closed stdout is not an
/// error: the server still runs.
fn announce(addr: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
}

/// Runs `chi serve` until SIGINT/SIGTERM (or a server thread dies); logs a summary at
/// shutdown.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let server = Server::bind(config)?;
    let addr = server.local_addr();
    let _signals = ShutdownOnSignal::install(server.handle())
        .context("cannot install the SIGINT/SIGTERM handlers")?;
    let stats = server.run_with_ready(|| announce(addr))?;
    tracing::info!(
        "shut down: served {} connections ({} rejected over the limit; {} drained, {} closed at \
         the drain deadline), {} bytes in, {} bytes out",
        stats.accepted,
        stats.rejected,
        stats.drained,
        stats.forced,
        stats.bytes_in,
        stats.bytes_out,
    );
    Ok(ExitCode::SUCCESS)
}
