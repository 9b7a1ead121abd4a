//! `chi load`: flags → `LoadConfig` → run (progress bar when stderr is a terminal, SIGINT
//! stops it, interval log on request) → the report as text or JSON → exit status.

mod hdr_log;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chi_net::load::{End, LoadConfig, LoadPhase, LoadReport, LoadRun};
use clap::ValueEnum;

use crate::color::ColorChoice;
use crate::progress::Progress;
use crate::{addr, exit, output, units};

fn after_help() -> String {
    format!(
        "Each of the C connections sends its messages of S bytes in lockstep (the next goes when\n\
         the whole answer is in) and checks every answer byte for byte against the upper-cased\n\
         request. The connections are spread over T threads, each an event loop.\n\n\
         Runs: -n M sends M messages per connection; -d 30s runs for 30 seconds (answers still\n\
         under way then are reported as in flight, not as missing); with both, whichever comes\n\
         first. Neither: -n 1000. --rate R sends R messages per second in all, on a fixed\n\
         schedule (open loop, as wrk2): latency counts from each message's intended send time,\n\
         so a server that stalls shows in the percentiles. --timeout bounds each answer.\n\n\
         Output: a report on stdout (or in --output FILE), text by default, one JSON object\n\
         (schema \"chi-load/2\") with --json; a progress bar on stderr when stderr is a terminal.\n\
         --hdr-log FILE writes each second's latencies in HdrHistogram's interval log format.\n\n\
         -c 0 --idle K opens K idle connections and holds them until -d or Ctrl-C (either\n\
         way it exits 0 when they all connected); it prints `holding K idle connections to\n\
         ADDR` on stderr once they are open.\n\n{}",
        exit::section(&exit::ALL)
    )
}

/// How the report is written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// A few lines for a person.
    Human,
    /// One JSON object on one line.
    Json,
}

/// Flags of `chi load`.
#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
pub(crate) struct LoadArgs {
    /// The server.
    #[command(flatten)]
    pub(crate) server: addr::ServerArg,
    /// Active connections (C); 0 with --idle only holds idle connections.
    #[arg(short, long, value_name = "C", default_value_t = chi_net::load::DEFAULT_CONNECTIONS)]
    pub(crate) connections: u64,
    /// Measured messages per connection (M) [default: 1000 without -d].
    #[arg(short = 'n', long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) messages: Option<u64>,
    /// Run for this long, e.g. 10s, 2m.
    #[arg(short, long, value_name = "DURATION", value_parser = units::positive_duration)]
    pub(crate) duration: Option<Duration>,
    /// Bytes per message (S), e.g. 11, 64, 1MiB.
    #[arg(short, long, value_name = "BYTES", default_value = "64", value_parser = units::positive_size)]
    pub(crate) size: usize,
    /// Client threads (T), each an event loop for its share of the connections [default: one
    /// per core].
    #[arg(short, long, value_name = "T", value_parser = units::workers)]
    pub(crate) threads: Option<usize>,
    /// Open loop: messages per second across all connections, on a fixed schedule.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) rate: Option<u64>,
    /// Give a connection up when one answer takes longer than this.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = units::positive_duration)]
    pub(crate) timeout: Duration,
    /// Unmeasured messages per connection before the measured ones.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) warmup: u64,
    /// Extra connections that stay silent during the run (K), opened before the active ones.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub(crate) idle: u64,
    /// The report as one JSON object (the same as --format json).
    #[arg(long)]
    pub(crate) json: bool,
    /// The report's format.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Human)]
    pub(crate) format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Write each second's latencies to this file (HdrHistogram interval log).
    #[arg(long, value_name = "FILE")]
    pub(crate) hdr_log: Option<PathBuf>,
}

impl LoadArgs {
    fn json(&self) -> bool {
        self.json || self.format == Format::Json
    }

    fn config(&self, addr: SocketAddr) -> Result<LoadConfig, chi_net::load::LoadConfigError> {
        let messages = match (self.messages, self.duration) {
            (None, None) => Some(chi_net::load::DEFAULT_MESSAGES),
            (m, _) => m,
        };
        let mut builder = LoadConfig::builder()
            .addr(addr)
            .connections(self.connections)
            .messages(messages)
            .duration(self.duration)
            .size(self.size)
            .rate(self.rate)
            .reply_timeout(Some(self.timeout))
            .warmup(self.warmup)
            .idle(self.idle)
            .record_intervals(self.hdr_log.is_some());
        if let Some(threads) = self.threads {
            builder = builder.threads(threads);
        }
        builder.build()
    }
}

/// The address to load: the first one the host resolves to, or, when it resolves to several,
/// the first that accepts a connection.
fn target(host: &str) -> Result<SocketAddr, String> {
    let addrs = addr::resolve(host).map_err(|e| e.to_string())?;
    if addrs.len() == 1 {
        return Ok(addrs[0]);
    }
    addr::first_reachable(&addrs, chi_net::client::DEFAULT_CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {host}: {e}"))
}

/// Runs `chi load`.
pub(crate) fn run(args: LoadArgs, color: ColorChoice) -> anyhow::Result<ExitCode> {
    let host = args.server.host();
    let addr = match target(&host) {
        Ok(addr) => addr,
        Err(reason) => {
            exit::report(&anyhow::anyhow!(reason));
            return Ok(ExitCode::from(exit::CONNECT_FAILED));
        }
    };
    let config = args.config(addr)?;
    let interrupted = stop_on_signals()?;
    let run = LoadRun::start(config)?;
    let mut sink = args
        .hdr_log
        .as_deref()
        .map(hdr_log::Sink::create)
        .transpose()?;
    let mut log = sink.as_mut().map(hdr_log::Sink::begin).transpose()?;
    watch(&run, &interrupted, log.as_mut())?;
    drop(log);
    if let Some(sink) = sink {
        sink.finish()?;
    }
    let report = run.wait()?;
    let text = if args.json() {
        report.to_json()
    } else {
        let on = args.output.is_none() && color.stdout();
        format!("{report}\n{}", verdict(&report, on))
    };
    output::write_text(args.output.as_deref(), &text)?;
    let code = status(&report);
    if code != exit::SUCCESS {
        tracing::warn!(
            "{} answers wrong, {} short, {} missing; {} connections and {} idle connections \
             failed to connect",
            report.answers.wrong,
            report.answers.short,
            report.answers.missing,
            report.connect_failed,
            report.idle_failed,
        );
    }
    Ok(ExitCode::from(code))
}

/// The exit status a report earns: a wrong answer first (it is the worst news), then an
/// interruption (not for an idle-only run, which a signal ends as planned), then connections
/// that could not connect, then short or missing answers.
fn status(report: &LoadReport) -> u8 {
    if report.answers.wrong > 0 {
        exit::WRONG_ANSWERS
    } else if report.end == End::Interrupted && report.connections > 0 {
        exit::INTERRUPTED
    } else if report.connect_failed > 0 || report.idle_failed > 0 {
        exit::CONNECT_FAILED
    } else if report.errors > 0 {
        exit::WRONG_ANSWERS
    } else {
        exit::SUCCESS
    }
}

/// The report's last line: what the exit status means.
fn verdict(report: &LoadReport, color: bool) -> String {
    let (text, ok) = match status(report) {
        exit::SUCCESS => ("result: every answer right".to_owned(), true),
        exit::INTERRUPTED => (
            "result: interrupted (the counts cover what finished)".to_owned(),
            false,
        ),
        exit::CONNECT_FAILED => (
            "result: some connections could not connect".to_owned(),
            false,
        ),
        _ => (
            format!(
                "result: {} answers wrong, {} short, {} missing",
                report.answers.wrong, report.answers.short, report.answers.missing
            ),
            false,
        ),
    };
    format!("  {}", crate::color::verdict(&text, ok, color))
}

/// SIGINT/SIGTERM set the returned flag (the watch loop then stops the run); a second one
/// ends the process at once with status 130.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag before the second registration sets it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(exit::INTERRUPTED),
            Arc::clone(&flag),
        )
        .context("cannot install the SIGINT/SIGTERM handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&flag))
            .context("cannot install the SIGINT/SIGTERM handlers")?;
    }
    Ok(flag)
}

/// Follows the run until it ends: stops it on a signal, updates the bar, writes the interval
/// log, and announces once that idle connections are being held (a line scripts wait for).
fn watch(
    run: &LoadRun,
    interrupted: &AtomicBool,
    mut log: Option<&mut hdr_log::HdrLog<'_>>,
) -> anyhow::Result<()> {
    let config = run.config();
    let sockets = config.connections() + config.idle();
    let mut bar = Progress::on_stderr(&run.progress());
    let mut announced = false;
    let mut stopped = false;
    while !run.wait_timeout(Duration::from_millis(100)) {
        // ORDERING: the signal handler's flag carries no data.
        if !stopped && interrupted.load(Ordering::Relaxed) {
            stopped = true;
            run.stop_handle().stop();
        }
        let p = run.progress();
        if p.phase == LoadPhase::Holding && !announced {
            announced = true;
            let line = format!(
                "holding {} idle connections to {}",
                p.idle_connected,
                config.addr()
            );
            match &bar {
                Some(bar) => bar.println(&line),
                None => eprintln!("{line}"),
            }
        }
        if let Some(bar) = &mut bar {
            bar.update(&p, sockets);
        }
        if let Some(log) = log.as_deref_mut()
            && log.due()
            && let Some(h) = run.take_interval()
        {
            log.write(&h)?;
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    if let Some(log) = log
        && let Some(h) = run.take_interval()
    {
        log.write(&h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `chi load` alone, as the top-level command line would hand it over.
    #[derive(Parser, Debug)]
    struct Load {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn load(args: &[&str]) -> LoadArgs {
        Load::try_parse_from(["chi-load"].iter().chain(args))
            .unwrap()
            .args
    }

    #[test]
    fn load_takes_the_short_flags_of_wrk_and_oha() {
        let args = load(&[
            "localhost:9",
            "-c",
            "10",
            "-n",
            "5",
            "-t",
            "2",
            "-d",
            "3s",
            "-s",
            "1KiB",
        ]);
        assert_eq!(args.server.host(), "localhost:9");
        assert_eq!(args.connections, 10);
        assert_eq!(args.messages, Some(5));
        assert_eq!(args.threads, Some(2));
        assert_eq!(args.duration, Some(Duration::from_secs(3)));
        assert_eq!(args.size, 1024);
    }

    #[test]
    fn load_message_count_defaults_only_without_a_duration() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let counted = load(&[]).config(addr).unwrap();
        assert_eq!(counted.messages(), Some(chi_net::load::DEFAULT_MESSAGES));
        let timed = load(&["-d", "1s"]).config(addr).unwrap();
        assert_eq!(timed.messages(), None);
        assert_eq!(timed.duration(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn load_json_either_way() {
        assert!(load(&["--json"]).json());
        assert!(load(&["--format", "json"]).json());
        assert!(!load(&[]).json());
    }
}
