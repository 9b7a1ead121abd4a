//! The command line, as clap derive types: `chi [-v|-q] <serve|client|load|demo> [flags]`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Exit status: a failure at run time.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit status: a bad command line (clap uses 2 for its own usage errors too).
pub(crate) const EXIT_USAGE: u8 = 2;

const AFTER_HELP: &str = "\
Exit status:
  0  success (also when stdout is closed early, e.g. piped into `head`)
  1  failure at run time: cannot listen on the address, server unreachable or gone, I/O error
  2  bad command line: unknown subcommand or flag, missing or invalid value
  `chi load` adds its own codes; see `chi load --help`.

Logging goes to stderr; RUST_LOG (e.g. RUST_LOG=chi_net=debug) overrides -v/-q.";

/// chi: bounded thread and process pools, and the seed's pooled TCP server built on them.
#[derive(Parser, Debug)]
#[command(name = "chi", version, after_help = AFTER_HELP, propagate_version = true)]
pub(crate) struct Cli {
    /// More log output on stderr: -v adds debug (connections opened and closed, and every
    /// message `chi serve` receives, as the seed prints them); -vv adds trace.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet", display_order = 100)]
    pub(crate) verbose: u8,
    /// Less log output on stderr: -q only warnings and errors, -qq only errors.
    #[arg(short, long, action = ArgAction::Count, global = true, display_order = 101)]
    pub(crate) quiet: u8,
    /// What to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the upper-casing TCP server (the seed's pooled server); SIGINT/SIGTERM drain it.
    ///
    /// Every byte a client sends comes back with ASCII letters upper-cased. The first line on
    /// stdout is `listening on <ip>:<port>` (the real port when --addr has port 0).
    #[command(after_help = AFTER_HELP)]
    Serve(ServeArgs),
    /// Send a message every interval and print each answer (the seed's client).
    #[command(after_help = AFTER_HELP)]
    Client(ClientArgs),
    /// Load-test a server: connections × messages, every answer checked, latency percentiles.
    Load(crate::load::LoadArgs),
    /// The seed's pool walkthrough: tasks with callbacks on a thread pool and a process pool.
    Demo(crate::demo::DemoArgs),
    /// Past one machine: a worker, a demo and the status of queues on Redis Streams.
    Cluster(crate::cluster::ClusterArgs),
}

/// How `chi serve` runs its connections.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelArg {
    /// One event loop per core, the handler inline; many clients, bounded memory per client.
    Event,
    /// The seed's design: each client served by one pool worker for its whole connection;
    /// with N workers, client N+1 waits until one leaves.
    Pooled,
}

impl From<ModelArg> for chi_net::Model {
    fn from(model: ModelArg) -> Self {
        match model {
            ModelArg::Event => chi_net::Model::Event,
            ModelArg::Pooled => chi_net::Model::Pooled,
        }
    }
}

/// Flags of `chi serve`.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub(crate) addr: SocketAddr,
    /// Concurrency model.
    #[arg(long, value_enum, default_value_t = ModelArg::Event)]
    pub(crate) model: ModelArg,
    /// Event loops (event model; default one per core) or pool workers, i.e. clients served
    /// at once (pooled model; default 3, as in the seed).
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    pub(crate) workers: Option<usize>,
    /// Most connections open at once (served or waiting); one more is closed at once,
    /// without an answer.
    #[arg(long, value_name = "N", value_parser = parse_positive,
          default_value_t = chi_net::DEFAULT_MAX_CONNECTIONS)]
    pub(crate) max_connections: usize,
    /// Close a connection after this long without a byte in or out (e.g. 30s, 500ms, 2m).
    /// Off unless given, as in the seed.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub(crate) idle_timeout: Option<Duration>,
    /// Event model: stop reading from a client while this much of its output is unsent
    /// (e.g. 256KiB, 1MiB), so a client that never reads costs bounded memory.
    #[arg(long, value_name = "BYTES", value_parser = parse_output_cap, default_value = "256KiB")]
    pub(crate) output_cap: usize,
    /// Set SO_REUSEPORT, so several `chi serve` processes can listen on the same port and the
    /// kernel spreads connections among them.
    #[arg(long)]
    pub(crate) reuse_port: bool,
    /// On SIGINT/SIGTERM, how long to finish the data already received before closing what
    /// is left (a second signal stops at once).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, default_value = "5s")]
    pub(crate) drain_timeout: Duration,
}

/// Flags of `chi client`.
#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub(crate) addr: String,
    /// The message to send each time.
    #[arg(long, default_value = "hello world", value_parser = parse_message)]
    pub(crate) message: String,
    /// Pause after each answer (e.g. 2s, 500ms, 0).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub(crate) interval: Duration,
    /// Stop after this many answers; without it the client runs until interrupted, as the
    /// seed's `while True`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Fail if an answer takes longer than this; without it the client waits (a pooled
    /// server with every worker busy keeps new clients waiting).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub(crate) timeout: Option<Duration>,
}

fn parse_positive(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(n)
}

fn parse_workers(s: &str) -> Result<usize, String> {
    let n = parse_positive(s)?;
    if n > chi_net::MAX_WORKERS {
        return Err(format!("must be at most {}", chi_net::MAX_WORKERS));
    }
    Ok(n)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    chi_net::units::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(d)
}

fn parse_output_cap(s: &str) -> Result<usize, String> {
    let bytes = chi_net::units::parse_size(s).map_err(|e| e.to_string())?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_owned());
    }
    usize::try_from(bytes).map_err(|_| "too large for this machine".to_owned())
}

fn parse_message(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty: there would be nothing to send".to_owned());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults_follow_the_seed() {
        let cli = Cli::try_parse_from(["chi", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.model, ModelArg::Event);
        assert_eq!(args.workers, None);
        assert_eq!(args.idle_timeout, None);
        assert_eq!(args.output_cap, 256 * 1024);
    }

    #[test]
    fn client_defaults_follow_the_seed() {
        let cli = Cli::try_parse_from(["chi", "client"]).unwrap();
        let Command::Client(args) = cli.command else {
            panic!("not client")
        };
        assert_eq!(args.addr, "127.0.0.1:8080");
        assert_eq!(args.message, "hello world");
        assert_eq!(args.interval, Duration::from_secs(2));
        assert_eq!(args.count, None);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            &["chi", "serve", "--workers", "0"][..],
            &["chi", "serve", "--model", "threads"],
            &["chi", "serve", "--addr", "localhost"],
            &["chi", "serve", "--idle-timeout", "0s"],
            &["chi", "serve", "--output-cap", "lots"],
            &["chi", "client", "--count", "0"],
            &["chi", "client", "--interval", "soon"],
            &["chi", "client", "--message", ""],
            &["chi", "serve", "--bogus"],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{argv:?}");
        }
    }

    #[test]
    fn verbosity_flags_are_global() {
        let cli = Cli::try_parse_from(["chi", "serve", "-vv"]).unwrap();
        assert_eq!(cli.verbose, 2);
        let cli = Cli::try_parse_from(["chi", "-q", "client"]).unwrap();
        assert_eq!(cli.quiet, 1);
        assert!(Cli::try_parse_from(["chi", "-v", "-q", "serve"]).is_err());
    }
}
