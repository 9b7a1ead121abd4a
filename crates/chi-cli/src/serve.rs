//! `chi serve`: flags → `ServerConfig` → bind → `listening on …` → run until a signal.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use chi_net::{Server, ServerConfig};

use crate::args::ServeArgs;

/// Builds the server configuration the flags describe (signals handled: SIGINT/SIGTERM drain).
fn config(args: &ServeArgs) -> Result<ServerConfig, chi_net::ConfigError> {
    let mut builder = ServerConfig::builder()
        .addr(args.addr)
        .model(args.model.into())
        .max_connections(args.max_connections)
        .idle_timeout(args.idle_timeout)
        .output_cap(args.output_cap)
        .reuse_port(args.reuse_port)
        .drain_timeout(args.drain_timeout)
        .handle_signals(true);
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

/// Runs `chi serve` until SIGINT/SIGTERM; logs a summary at shutdown.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let server = Server::bind(config)?;
    announce(server.local_addr());
    let stats = server.run().context("the server failed")?;
    tracing::info!(
        "shut down: served {} connections ({} rejected over the limit, {} closed at the drain \
         deadline), {} bytes in, {} bytes out",
        stats.accepted,
        stats.rejected,
        stats.forced,
        stats.bytes_in,
        stats.bytes_out,
    );
    Ok(ExitCode::SUCCESS)
}
