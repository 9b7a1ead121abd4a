//! The progress bar of `chi load`: on stderr, only when stderr is a terminal (whatever stdout
//! is), so a report piped or redirected stays clean.

use std::fmt::Write as _;
use std::io::IsTerminal;

use chi_net::load::{LoadPhase, LoadProgress};
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A bar that follows a load run: answers out of the expected number, or, for a timed run,
/// the time out of the duration.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    timed: bool,
    running: bool,
}

impl Progress {
    /// A bar on stderr when stderr is a terminal; `None` otherwise.
    pub(crate) fn on_stderr(first: &LoadProgress) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let timed = first.expected.is_none();
        let len = match (first.expected, first.duration) {
            (Some(n), _) => n,
            (None, Some(d)) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            (None, None) => 0,
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let template = if timed {
            "{elapsed_precise} [{bar:30}] {msg}"
        } else {
            "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} messages, {rate} {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{} msgs/s", HumanCount(state.per_sec().round() as u64));
                },
            )
            .progress_chars("=> ");
        bar.set_style(style);
        Some(Progress {
            bar,
            timed,
            running: false,
        })
    }

    /// Prints a line above the bar.
    pub(crate) fn println(&self, line: &str) {
        self.bar.println(line);
    }

    /// Shows a new snapshot.
    pub(crate) fn update(&mut self, p: &LoadProgress, connections: u64) {
        let mut msg = match p.phase {
            LoadPhase::Connecting => format!(
                "connecting {}/{connections}",
                p.connected + p.idle_connected
            ),
            LoadPhase::Holding => format!(
                "holding {} idle connections (Ctrl-C ends)",
                p.idle_connected
            ),
            _ => {
                if !self.running {
                    self.running = true;
                    // Restart the rate estimate when the messages start.
                    self.bar.reset();
                }
                String::new()
            }
        };
        if self.timed {
            let _ = write!(msg, " {} answers", HumanCount(p.answers));
            self.bar
                .set_position(u64::try_from(p.elapsed.as_millis()).unwrap_or(u64::MAX));
        } else {
            self.bar.set_position(p.answers);
        }
        if p.errors > 0 {
            let _ = write!(msg, " {} errors", HumanCount(p.errors));
        }
        self.bar.set_message(msg);
    }

    /// Removes the bar.
    pub(crate) fn finish(self) {
        self.bar.finish_and_clear();
    }
}
