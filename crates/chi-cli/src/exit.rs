//! Every exit status `chi` uses, in one place; each subcommand's `--help` lists the ones it
//! can return (the texts here), and `main` maps errors to them.

/// Success (also when stdout is closed early, e.g. piped into `head`).
pub(crate) const SUCCESS: u8 = 0;
/// A failure at run time: cannot listen, an I/O error, a thread failure, a lost connection.
pub(crate) const FAILURE: u8 = 1;
/// A bad command line: unknown subcommand or flag, missing or invalid value (clap uses 2 for
/// its own usage errors too).
pub(crate) const USAGE: u8 = 2;
/// `chi load`: the run finished but some answers were wrong, short or missing.
pub(crate) const WRONG_ANSWERS: u8 = 3;
/// Could not connect to the server (`chi client`; `chi load`: some connection could not).
pub(crate) const CONNECT_FAILED: u8 = 4;
/// Interrupted by SIGINT/SIGTERM before the end (`chi load` still prints its report); 128 + 2,
/// as a shell reports a process that SIGINT ended.
pub(crate) const INTERRUPTED: u8 = 130;

/// Prints an error's chain on stderr, on one line: `chi: error: …`.
pub(crate) fn report(err: &anyhow::Error) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "chi: error: {err:#}");
}

/// Every status, in order: the statuses `chi load` (and `chi` as a whole) can return.
pub(crate) const ALL: [u8; 6] = [
    SUCCESS,
    FAILURE,
    USAGE,
    WRONG_ANSWERS,
    CONNECT_FAILED,
    INTERRUPTED,
];

/// The "Exit status" section that ends a `--help` text, for the given statuses.
pub(crate) fn section(codes: &[u8]) -> String {
    let mut text = String::from("Exit status:");
    for &code in codes {
        text.push('\n');
        text.push_str(line(code));
    }
    text
}

/// One line of the "Exit status" section.
const fn line(code: u8) -> &'static str {
    match code {
        SUCCESS => "  0    success (also when stdout is closed early, e.g. piped into `head`)",
        FAILURE => "  1    failure at run time (cannot listen, I/O error, connection lost)",
        USAGE => "  2    bad command line: unknown flag, missing or invalid value",
        WRONG_ANSWERS => "  3    some answers were wrong, short or missing (the report is printed)",
        CONNECT_FAILED => "  4    could not connect to the server",
        INTERRUPTED => "  130  interrupted by SIGINT/SIGTERM (chi load prints what finished)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_help_line() {
        for code in ALL {
            assert!(
                line(code).trim_start().starts_with(&code.to_string()),
                "{code}"
            );
        }
        assert!(section(&[SUCCESS, USAGE]).ends_with("invalid value"));
    }
}
