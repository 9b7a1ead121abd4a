//! The command line's top level: `chi [-v|-q] [--color WHEN] <subcommand> [flags]`. Each
//! subcommand's flags live with its code, in `cmd/<name>.rs` (an `Args` struct and `run`).

use clap::{ArgAction, Parser, Subcommand};

use crate::cmd;
use crate::color::ColorChoice;
use crate::exit;

/// The end of `chi --help`.
fn after_help() -> String {
    format!(
        "Logging goes to stderr; RUST_LOG (e.g. RUST_LOG=chi_net=debug) overrides -v/-q.\n\
         Each subcommand's --help lists its flags, environment variables and exit codes.\n\n{}",
        exit::section(&exit::ALL)
    )
}

/// chi: bounded thread and process pools, and a TCP server built on them that answers every
/// byte upper-cased; with its client and a load generator.
#[derive(Parser, Debug)]
#[command(name = "chi", version, after_help = after_help(), propagate_version = true)]
pub(crate) struct Cli {
    /// More log output on stderr: -v adds debug (connections opened and closed, and every
    /// message `chi serve` receives); -vv adds trace.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet", display_order = 100)]
    pub(crate) verbose: u8,
    /// Less log output on stderr: -q only warnings and errors, -qq only errors.
    #[arg(short, long, action = ArgAction::Count, global = true, display_order = 101)]
    pub(crate) quiet: u8,
    /// Colours in logs and reports: auto (on a terminal, unless NO_COLOR is set), always,
    /// never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto,
          global = true, display_order = 102)]
    pub(crate) color: ColorChoice,
    /// What to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the upper-casing TCP server; SIGINT/SIGTERM drain it.
    Serve(cmd::serve::ServeArgs),
    /// Send a message every interval and print each answer.
    Client(cmd::client::ClientArgs),
    /// Load-test a server: connections × messages (or a duration), every answer checked,
    /// latency percentiles.
    Load(cmd::load::LoadArgs),
    /// A walkthrough of chi's pools: tasks with callbacks on a thread pool and a process pool.
    Demo(cmd::demo::DemoArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions(cmd::completions::CompletionsArgs),
    /// Past one machine: a worker, a demo and the status of queues on Redis Streams.
    Cluster(crate::cluster::ClusterArgs),
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
    fn verbosity_and_colour_flags_are_global() {
        let cli = Cli::try_parse_from(["chi", "serve", "-vv"]).unwrap();
        assert_eq!(cli.verbose, 2);
        let cli = Cli::try_parse_from(["chi", "-q", "client"]).unwrap();
        assert_eq!(cli.quiet, 1);
        assert!(Cli::try_parse_from(["chi", "-v", "-q", "serve"]).is_err());
        let cli = Cli::try_parse_from(["chi", "load", "--color", "never"]).unwrap();
        assert_eq!(cli.color, ColorChoice::Never);
    }

    #[test]
    fn every_help_ends_with_its_exit_codes() {
        let mut cli = Cli::command();
        let top = cli.render_long_help().to_string();
        assert!(
            top.trim_end()
                .ends_with(exit::section(&[exit::INTERRUPTED]).lines().last().unwrap())
        );
        for sub in cli.get_subcommands_mut().filter(|s| s.get_name() != "help") {
            let help = sub.render_long_help().to_string();
            let tail: Vec<&str> = help
                .trim_end()
                .lines()
                .rev()
                .take_while(|l| l.starts_with("  "))
                .collect();
            assert!(
                !tail.is_empty(),
                "{}: no exit codes at the end:\n{help}",
                sub.get_name()
            );
            assert!(help.contains("Exit status:"), "{}", sub.get_name());
            assert!(
                tail.iter()
                    .all(|l| l.trim_start().as_bytes()[0].is_ascii_digit()),
                "{help}"
            );
        }
    }
}
