//! The `chi` binary: thin glue. Parse the command line, set up logging, run the subcommand,
//! map the outcome to an exit status (documented in `chi --help`).
#![forbid(unsafe_code)]

mod args;
mod client;
mod cluster;
mod demo;
mod demo_process;
mod load;
mod logging;
mod serve;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, EXIT_FAILURE, EXIT_USAGE};

fn main() -> ExitCode {
    chi::process_pool::init(); // a process-pool worker (chi demo) stops here
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Client(args) => client::run(args),
        Command::Load(args) => load::run(args),
        Command::Demo(args) => demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Cluster(args) => cluster::run(args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| report(&err))
}

/// Prints the error chain on stderr and picks the exit status. (A closed stdout is success;
/// the subcommands that print turn it into `Ok` themselves, since only they can tell it from
/// a broken connection.)
fn report(err: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "chi: error: {err:#}");
    if err.downcast_ref::<chi_net::ConfigError>().is_some() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
