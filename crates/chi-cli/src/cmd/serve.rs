//! `chi serve`: flags → `ServerConfig` → bind → signal handlers → run, printing
//! `listening on …` once the server is ready → a summary at shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chi_net::{Server, ServerConfig};
use clap::ValueEnum;

use crate::signals::ShutdownOnSignal;
use crate::{addr, exit, units};

fn after_help() -> String {
    format!(
        "Every byte a client sends comes back with ASCII letters upper-cased. The first line on\n\
         stdout is `listening on <ip>:<port>` (the real port when the port is 0). SIGINT or\n\
         SIGTERM drains: no new connections, the data received is answered, then the server\n\
         exits; a second signal stops at once.\n\n\
         Every setting can also come from the environment variable shown next to it (the flag\n\
         wins). --addr takes a name (localhost:8080) or an IP; each address the name resolves to\n\
         is tried until one can be bound.\n\n{}",
        exit::section(&[exit::SUCCESS, exit::FAILURE, exit::USAGE])
    )
}

/// How `chi serve` runs its connections.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelArg {
    /// One event loop per core, the handler inline; many clients, bounded memory per client.
    Event,
    /// The classic thread-pool server design: each client is served by one pool worker for
    /// its whole connection; with N workers, client N+1 waits until one leaves.
    Pooled,
    /// As `event`, on io_uring (Linux 6.1+): fewer system calls per message; fails at start
    /// where io_uring is unavailable (see /proc/sys/kernel/io_uring_disabled).
    Uring,
}

impl From<ModelArg> for chi_net::Model {
    fn from(model: ModelArg) -> Self {
        match model {
            ModelArg::Event => chi_net::Model::Event,
            ModelArg::Pooled => chi_net::Model::Pooled,
            ModelArg::Uring => chi_net::Model::Uring,
        }
    }
}

/// Flags of `chi serve`.
#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
pub(crate) struct ServeArgs {
    /// Address to listen on: HOST:PORT, or HOST with --port; port 0 picks a free port.
    #[arg(long, env = "CHI_ADDR", default_value = "127.0.0.1:8080", value_name = "HOST[:PORT]",
          value_parser = addr::parse_host)]
    pub(crate) addr: String,
    /// Port to listen on (replaces the port of --addr).
    #[arg(short, long, env = "CHI_PORT", value_name = "PORT")]
    pub(crate) port: Option<u16>,
    /// Concurrency model.
    #[arg(long, value_enum, env = "CHI_MODEL", default_value_t = ModelArg::Event)]
    pub(crate) model: ModelArg,
    /// Event loops (event model; default one per core) or pool workers, i.e. clients served
    /// at once (pooled model; default 3).
    #[arg(long, env = "CHI_WORKERS", value_name = "N", value_parser = units::workers)]
    pub(crate) workers: Option<usize>,
    /// Most connections open at once (served or waiting); one more is closed at once,
    /// without an answer.
    #[arg(long, env = "CHI_MAX_CONNECTIONS", value_name = "N", value_parser = units::positive,
          default_value_t = chi_net::DEFAULT_MAX_CONNECTIONS)]
    pub(crate) max_connections: usize,
    /// Close a connection after this long without a byte in or out (e.g. 30s, 500ms, 2m).
    /// Off unless given.
    #[arg(long, env = "CHI_IDLE_TIMEOUT", value_name = "DURATION",
          value_parser = units::positive_duration)]
    pub(crate) idle_timeout: Option<Duration>,
    /// Event model: stop reading from a client while this much of its output is unsent
    /// (e.g. 256KiB, 1MiB), so a client that never reads costs bounded memory.
    #[arg(long, env = "CHI_OUTPUT_CAP", value_name = "BYTES", value_parser = units::positive_size,
          default_value = "256KiB")]
    pub(crate) output_cap: usize,
    /// Set SO_REUSEPORT, so several `chi serve` processes can listen on the same port and the
    /// kernel spreads connections among them.
    #[arg(long, env = "CHI_REUSE_PORT")]
    pub(crate) reuse_port: bool,
    /// On SIGINT/SIGTERM, how long to finish the data already received before closing what
    /// is left (a second signal stops at once).
    #[arg(long, env = "CHI_DRAIN_TIMEOUT", value_name = "DURATION",
          value_parser = units::positive_duration, default_value = "5s")]
    pub(crate) drain_timeout: Duration,
}

/// Builds the server configuration the flags describe for one address.
fn config(args: &ServeArgs, addr: SocketAddr) -> Result<ServerConfig, chi_net::ConfigError> {
    let mut builder = ServerConfig::builder()
        .addr(addr)
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

/// Binds the first address the host resolves to that can be bound.
fn bind(args: &ServeArgs) -> anyhow::Result<Server> {
    let host = addr::with_port(&args.addr, args.port, chi_net::DEFAULT_ADDR.port());
    let mut last = None;
    for candidate in addr::resolve(&host)? {
        match Server::bind(config(args, candidate)?) {
            Ok(server) => return Ok(server),
            Err(e) => {
                tracing::debug!(addr = %candidate, error = %e, "cannot listen; trying the next address");
                last = Some(e);
            }
        }
    }
    Err(last.map_or_else(
        || anyhow::anyhow!("{host}: no address to listen on"),
        Into::into,
    ))
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
    let server = bind(&args)?;
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// `chi serve` alone, as the top-level command line would hand it over.
    #[derive(Parser, Debug)]
    struct Serve {
        #[command(flatten)]
        args: super::ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<super::ServeArgs, clap::Error> {
        Serve::try_parse_from(["chi-serve"].iter().chain(args)).map(|s| s.args)
    }

    fn serve(args: &[&str]) -> super::ServeArgs {
        parse(args).unwrap()
    }

    #[test]
    fn serve_defaults() {
        let args = serve(&[]);
        assert_eq!(args.addr, "127.0.0.1:8080");
        assert_eq!(args.port, None);
        assert_eq!(args.model, super::ModelArg::Event);
        assert_eq!(args.workers, None);
        assert_eq!(args.idle_timeout, None);
        assert_eq!(args.output_cap, 256 * 1024);
    }

    #[test]
    fn serve_port_and_host_names() {
        let args = serve(&["-p", "9000", "--addr", "localhost"]);
        assert_eq!((args.addr.as_str(), args.port), ("localhost", Some(9000)));
    }

    #[test]
    fn serve_bad_values_are_usage_errors() {
        for argv in [
            &["--workers", "0"][..],
            &["--model", "threads"],
            &["--addr", ""],
            &["--port", "65536"],
            &["--idle-timeout", "0s"],
            &["--output-cap", "lots"],
            &["--bogus"],
        ] {
            let err = parse(argv).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(crate::exit::USAGE), "{argv:?}");
        }
    }
}
