//! `--color auto|always|never` and `NO_COLOR` (<https://no-color.org>): whether a stream gets
//! ANSI colours.

use std::io::IsTerminal;

/// When to colour logs and reports.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ColorChoice {
    /// Colour when the stream is a terminal and NO_COLOR is unset or empty.
    #[default]
    Auto,
    /// Always colour, even into a pipe or a file.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether output to a stream that is (or is not) a terminal gets colours.
    pub(crate) fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && !no_color(),
        }
    }

    /// Whether stderr gets colours.
    pub(crate) fn stderr(self) -> bool {
        self.enabled(std::io::stderr().is_terminal())
    }

    /// Whether stdout gets colours.
    pub(crate) fn stdout(self) -> bool {
        self.enabled(std::io::stdout().is_terminal())
    }
}

/// NO_COLOR set to anything but the empty string.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// `text` in green (`ok`) or red, when `on`.
pub(crate) fn verdict(text: &str, ok: bool, on: bool) -> String {
    if on {
        let code = if ok { 32 } else { 31 };
        format!("\x1b[1;{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_and_never_ignore_the_terminal() {
        assert!(ColorChoice::Always.enabled(false));
        assert!(!ColorChoice::Never.enabled(true));
        assert!(!ColorChoice::Auto.enabled(false));
    }

    #[test]
    fn verdict_is_plain_without_colour() {
        assert_eq!(verdict("ok", true, false), "ok");
        assert_eq!(verdict("ok", true, true), "\x1b[1;32mok\x1b[0m");
    }
}
