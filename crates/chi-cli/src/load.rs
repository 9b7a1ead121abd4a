//! `chi load`: flags → `LoadConfig` → run with a progress bar (on a terminal) → the report as
//! text or JSON → exit status 0 (every answer right) or 3 (errors counted).

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chi_net::load::{LoadConfig, LoadError, LoadPhase, LoadReport, LoadRun};
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::args::EXIT_USAGE;

/// Exit status of `chi load` when the run finished but some answer was wrong, short or missing,
/// or some connection failed.
pub(crate) const EXIT_ERRORS: u8 = 3;

const AFTER_HELP: &str = "\
Each of the C connections sends M messages of S bytes in lockstep (the next goes when the whole
answer is in) and checks every answer byte for byte against the upper-cased request. The
connections are spread over T threads, each an event loop, so 10,000 connections take T
threads. The soft file-descriptor limit is raised to the hard limit.

Output: on a terminal, a progress bar on stderr and a summary on stdout. With --json, or when
stdout is not a terminal, one JSON object on stdout (schema \"chi-load/1\": see the chi_net::load
docs) and no bar.

--connections 0 --idle K opens K idle connections and holds them until --timeout or
SIGINT/SIGTERM; it prints `holding K idle connections to ADDR` on stderr once they are open.
Use it from a second process to load a server with idle clients while another `chi load`
measures it.

Exit status:
  0  every answer right, every connection connected
  1  could not run: address does not resolve, too few file descriptors, thread failure
  2  bad command line
  3  the run finished but some answers were wrong, short or missing, or connections failed
     (the report is printed all the same)

Logging goes to stderr; RUST_LOG (e.g. RUST_LOG=chi_net=debug) overrides -v/-q.";

/// Flags of `chi load`.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct LoadArgs {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub(crate) addr: String,
    /// Active connections (C); 0 with --idle only holds idle connections.
    #[arg(long, value_name = "C", default_value_t = 50)]
    pub(crate) connections: u64,
    /// Measured messages per connection (M).
    #[arg(long, value_name = "M", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) messages: u64,
    /// Bytes per message (S), e.g. 11, 64, 1MiB.
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_size)]
    pub(crate) size: usize,
    /// Client threads, each an event loop for its share of the connections [default: one per
    /// core the process may run on].
    #[arg(long, value_name = "T", value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// Unmeasured messages per connection before the measured ones.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) warmup: u64,
    /// Extra connections that stay silent during the run (K), opened before the active ones.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub(crate) idle: u64,
    /// Print one JSON object instead of the summary (the default when stdout is not a terminal).
    #[arg(long)]
    pub(crate) json: bool,
    /// End the run after this long and report what finished (unfinished answers count as
    /// short or missing), e.g. 30s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_timeout)]
    pub(crate) timeout: Duration,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let bytes = chi_net::units::parse_size(s).map_err(|e| e.to_string())?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_owned());
    }
    usize::try_from(bytes).map_err(|_| "too large for this machine".to_owned())
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) if n > chi_net::MAX_WORKERS => {
            Err(format!("must be at most {}", chi_net::MAX_WORKERS))
        }
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = chi_net::units::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(d)
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

/// Runs `chi load`.
pub(crate) fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let mut config = LoadConfig::new(resolve(&args.addr)?);
    config.connections = args.connections;
    config.messages = args.messages;
    config.size = args.size;
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    config.warmup = args.warmup;
    config.idle = args.idle;
    config.timeout = Some(args.timeout);

    let run = match LoadRun::start(config) {
        Ok(run) => run,
        Err(LoadError::Invalid(what)) => {
            let _ = writeln!(std::io::stderr(), "chi: error: {what}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(e) => return Err(e.into()),
    };
    run.stop_on_signals()
        .context("cannot install the SIGINT/SIGTERM handlers")?;

    let json = args.json || !std::io::stdout().is_terminal();
    let bar = (!json).then(|| progress_bar(&run));
    watch(&run, bar.as_ref());
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = run.wait()?;
    print_report(&report, json)?;
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        tracing::warn!(
            "{} answers wrong, {} short, {} missing; {} connections and {} idle connections \
             failed to connect",
            report.answers.wrong,
            report.answers.short,
            report.answers.missing,
            report.connect_failed,
            report.idle_failed,
        );
        Ok(ExitCode::from(EXIT_ERRORS))
    }
}

/// Follows the run until it ends: updates the bar, and announces once that idle connections
/// are being held (a line scripts wait for).
fn watch(run: &LoadRun, bar: Option<&ProgressBar>) {
    let config = run.config().clone();
    let mut announced = false;
    let mut running = false;
    while !run.wait_timeout(Duration::from_millis(100)) {
        let p = run.progress();
        if p.phase == LoadPhase::Holding && !announced {
            announced = true;
            let line = format!(
                "holding {} idle connections to {}",
                p.idle_connected, config.addr
            );
            match bar {
                Some(bar) if !bar.is_hidden() => bar.println(line),
                _ => {
                    let mut stderr = std::io::stderr().lock();
                    let _ = writeln!(stderr, "{line}").and_then(|()| stderr.flush());
                }
            }
        }
        let Some(bar) = bar else { continue };
        match p.phase {
            LoadPhase::Connecting => bar.set_message(format!(
                "connecting {}/{}",
                p.connected + p.idle_connected,
                config.connections + config.idle
            )),
            LoadPhase::Holding => bar.set_message(format!(
                "holding {} idle connections (Ctrl-C ends)",
                p.idle_connected
            )),
            LoadPhase::Running | LoadPhase::Done => {
                if !running {
                    running = true;
                    // Restart the rate estimate when the messages start.
                    bar.reset();
                }
                bar.set_message(if p.errors > 0 {
                    format!("{} errors", p.errors)
                } else {
                    String::new()
                });
            }
            _ => {}
        }
        bar.set_position(p.answers);
    }
}

fn progress_bar(run: &LoadRun) -> ProgressBar {
    let expected = run.progress().expected;
    let bar = ProgressBar::with_draw_target(Some(expected), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} messages, {rate} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{} msgs/s", HumanCount(state.per_sec().round() as u64));
        },
    )
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Prints the report on stdout; a closed stdout (`chi load | head -1`) is not an error.
fn print_report(report: &LoadReport, json: bool) -> anyhow::Result<()> {
    let text = if json {
        report.to_json()
    } else {
        report.to_string()
    };
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("cannot write the report"),
    }
}
