//! The `chi` binary: parse the command line, set up logging, run the subcommand, map the
//! outcome to an exit status (`exit.rs`, listed in every `--help`). Process-wide policy —
//! signal handlers, exit statuses, parsing of durations and sizes — lives here, not in the
//! libraries.
#![forbid(unsafe_code)]

mod addr;
mod cli;
mod cluster;
mod cmd;
mod color;
mod exit;
mod logging;
mod output;
mod progress;
mod signals;
mod units;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

fn main() -> ExitCode {
    chi::process_pool::init(); // a process-pool worker (chi demo) stops here
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet, cli.color.stderr());
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Client(args) => cmd::client::run(args),
        Command::Load(args) => cmd::load::run(args, cli.color),
        Command::Demo(args) => cmd::demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
        Command::Cluster(args) => cluster::run(args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        exit::report(&err);
        ExitCode::from(status_of(&err))
    })
}

/// A setting a library rejected is a bad command line (2); anything else failed at run time
/// (1). (A closed stdout is success; the subcommands that print turn it into `Ok` themselves,
/// since only they can tell it from a broken connection.)
fn status_of(err: &anyhow::Error) -> u8 {
    let usage = err.downcast_ref::<chi_net::ConfigError>().is_some()
        || err
            .downcast_ref::<chi_net::load::LoadConfigError>()
            .is_some()
        || err.downcast_ref::<chi_net::ClientConfigError>().is_some()
        || matches!(
            err.downcast_ref::<chi_cluster::ClusterError>(),
            Some(chi_cluster::ClusterError::Config(_))
        );
    if usage { exit::USAGE } else { exit::FAILURE }
}
