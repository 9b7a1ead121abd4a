//! `chi client`: the seed's client loop, answers on stdout, one per line.

use std::io::ErrorKind;
use std::process::ExitCode;

use chi_net::{ClientConfig, ClientError};

use crate::args::ClientArgs;

/// Runs `chi client`; a closed stdout (`chi client | head -3`) ends it successfully.
pub(crate) fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut config = ClientConfig::default();
    config.addr = args.addr;
    config.message = args.message.into_bytes();
    config.interval = args.interval;
    config.count = args.count;
    config.reply_timeout = args.timeout;
    let mut stdout = std::io::stdout().lock();
    match chi_net::client::run(&config, &mut stdout) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}
