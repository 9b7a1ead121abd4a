//! `chi client`: send a message every interval and print each answer on stdout, one per line.

use std::io::ErrorKind;
use std::process::ExitCode;
use std::time::Duration;

use chi_net::{ClientConfig, ClientError};

use crate::{addr, exit, units};

fn after_help() -> String {
    format!(
        "ADDR may be a name (localhost:8080) or an IP; every address the name resolves to is\n\
         tried until one connects. Without --count the client runs until interrupted.\n\n{}",
        exit::section(&[
            exit::SUCCESS,
            exit::FAILURE,
            exit::USAGE,
            exit::CONNECT_FAILED,
        ])
    )
}

/// Flags of `chi client`.
#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
pub(crate) struct ClientArgs {
    /// The server.
    #[command(flatten)]
    pub(crate) server: addr::ServerArg,
    /// The message to send each time.
    #[arg(short, long, default_value = "hello world", value_parser = parse_message)]
    pub(crate) message: String,
    /// Pause after each answer (e.g. 2s, 500ms, 0).
    #[arg(short, long, value_name = "DURATION", value_parser = units::duration, default_value = "2s")]
    pub(crate) interval: Duration,
    /// Stop after this many answers; without it the client runs until interrupted.
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Fail if an answer takes longer than this; without it the client waits (a pooled
    /// server with every worker busy keeps new clients waiting).
    #[arg(long, value_name = "DURATION", value_parser = units::positive_duration)]
    pub(crate) timeout: Option<Duration>,
}

fn parse_message(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty: there would be nothing to send".to_owned());
    }
    Ok(s.to_owned())
}

/// Runs `chi client`; a closed stdout (`chi client | head -3`) ends it successfully.
pub(crate) fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let config = ClientConfig::builder()
        .addr(args.server.host())
        .message(args.message.into_bytes())
        .interval(args.interval)
        .count(args.count)
        .reply_timeout(args.timeout)
        .build()?;
    let mut stdout = std::io::stdout().lock();
    match chi_net::client::run(&config, &mut stdout) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e @ (ClientError::Connect { .. } | ClientError::Resolve { .. })) => {
            exit::report(&e.into());
            Ok(ExitCode::from(exit::CONNECT_FAILED))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// `chi client` alone, as the top-level command line would hand it over.
    #[derive(Parser, Debug)]
    struct Client {
        #[command(flatten)]
        args: super::ClientArgs,
    }

    fn parse(args: &[&str]) -> Result<super::ClientArgs, clap::Error> {
        Client::try_parse_from(["chi-client"].iter().chain(args)).map(|c| c.args)
    }

    #[test]
    fn client_takes_a_positional_address_and_short_flags() {
        let args = parse(&["localhost:9", "-n", "3", "-i", "0"]).unwrap();
        assert_eq!(args.server.host(), "localhost:9");
        assert_eq!(args.count, Some(3));
        assert!(args.interval.is_zero());
    }

    #[test]
    fn client_bad_values_are_usage_errors() {
        for argv in [
            &["--count", "0"][..],
            &["--interval", "soon"],
            &["--message", ""],
            &["a:1", "--addr", "b:2"],
        ] {
            let err = parse(argv).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(crate::exit::USAGE), "{argv:?}");
        }
    }
}
