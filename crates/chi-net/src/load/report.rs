//! [`LoadReport`]: what a run did, as one JSON object (schema in the [module docs](super)) or
//! as text for a terminal.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The value of [`LoadReport::schema`]; it changes when a field is renamed, removed or changes
/// meaning (adding a field does not change it).
pub const SCHEMA: &str = "chi-load/2";

/// The result of a load run. Serialises to the JSON object documented in the
/// [module docs](super); every count is a whole number, every rate and time a float.
///
/// ```
/// use chi_net::load::{LoadReport, SCHEMA};
///
/// let json = include_str!("../../tests/data/load_report.json"); // a `chi load --json` output
/// let report = LoadReport::from_json(json).unwrap();
/// assert_eq!(report.schema, SCHEMA);
/// assert!(report.passed());
/// assert_eq!(report.answers.ok, report.answers.expected);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadReport {
    /// Always [`SCHEMA`] (`"chi-load/2"`).
    pub schema: String,
    /// The server address connected to.
    pub addr: String,
    /// Active connections asked for (C).
    pub connections: u64,
    /// Measured messages per active connection (M); `null` when the duration alone ended the
    /// run.
    pub messages_per_connection: Option<u64>,
    /// The open-loop rate asked for, in messages per second across all connections; `null`
    /// for a closed-loop run. The rate achieved is `msgs_per_s`.
    pub rate: Option<u64>,
    /// Bytes per message (S).
    pub size: u64,
    /// Client threads (event loops) used.
    pub threads: u64,
    /// Unmeasured warm-up messages per active connection, sent before the M measured ones.
    pub warmup: u64,
    /// Idle connections asked for (K).
    pub idle: u64,
    /// The run's duration in seconds, `null` for none.
    pub duration_s: Option<f64>,
    /// How long one answer could take, in seconds, `null` for no limit.
    pub timeout_s: Option<f64>,
    /// How the run ended.
    pub end: End,
    /// Active connections established.
    pub connected: u64,
    /// Active connections that could not connect (refused, unreachable, timed out).
    pub connect_failed: u64,
    /// The first connect error seen (active or idle), `null` when none failed.
    pub connect_error: Option<String>,
    /// Idle connections established.
    pub idle_connected: u64,
    /// Idle connections that could not connect.
    pub idle_failed: u64,
    /// Idle connections the server closed (or reset) before the run ended.
    pub idle_closed: u64,
    /// Every answer of the run (warm-up and measured), sorted by outcome.
    pub answers: Answers,
    /// Connections given up because an answer took longer than `timeout_s` (their answers
    /// count as short or missing).
    pub timed_out: u64,
    /// `answers.wrong + answers.short + answers.missing`.
    pub errors: u64,
    /// Measured (not warm-up) messages answered correctly: the numerator of `msgs_per_s`.
    pub messages: u64,
    /// Seconds from the first measured request to the last measured answer.
    pub elapsed_s: f64,
    /// `messages / elapsed_s`.
    pub msgs_per_s: f64,
    /// Correct answer bytes received per second, in 10^6 bytes (one direction; the requests
    /// carry as much the other way).
    pub mb_per_s: f64,
    /// Latency of the measured, correct answers.
    pub latency_us: Latency,
    /// When the connections got their first correct answer, counted from the moment every
    /// connection was connected and the first requests went out.
    pub first_answer_ms: FirstAnswer,
}

impl LoadReport {
    /// The report as one line of JSON (the schema of the [module docs](super)).
    ///
    /// ```
    /// # let json = include_str!("../../tests/data/load_report.json");
    /// let report = chi_net::load::LoadReport::from_json(json).unwrap();
    /// let again = chi_net::load::LoadReport::from_json(&report.to_json()).unwrap();
    /// assert_eq!(again.answers, report.answers);
    /// ```
    pub fn to_json(&self) -> String {
        // Plain data with string keys and finite numbers: encoding cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a report written by [`to_json`](LoadReport::to_json) (or `chi load --json`).
    pub fn from_json(json: &str) -> Result<LoadReport, ReportParseError> {
        serde_json::from_str(json).map_err(ReportParseError)
    }

    /// True when every expected answer came back right and every connection (active and idle)
    /// connected: what `chi load` turns into exit status 0.
    pub fn passed(&self) -> bool {
        self.errors == 0 && self.connect_failed == 0 && self.idle_failed == 0
    }
}

/// [`LoadReport::from_json`] got text that is not a report of this schema.
#[derive(Debug, thiserror::Error)]
#[error("not a chi load report: {0}")]
pub struct ReportParseError(#[source] serde_json::Error);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum End {
    /// Every active connection finished its messages (or failed).
    Completed,
    /// The duration passed: answers under way count as in flight, messages not yet sent are
    /// not counted. An idle-only run (no active connections) normally ends this way.
    Duration,
    /// Stopped early by SIGINT/SIGTERM or [`StopHandle::stop`](super::StopHandle::stop).
    Interrupted,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::Completed => "completed",
            End::Duration => "duration",
            End::Interrupted => "interrupted",
        })
    }
}

/// Every expected answer of a run, sorted by outcome:
/// `ok + wrong + short + missing + in_flight == expected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Answers {
    /// The answers the run waited for: `connections × (warmup + messages_per_connection)`
    /// when every connection got through its messages or failed; fewer when the duration
    /// ended the run first (only the messages sent count).
    pub expected: u64,
    /// Complete and byte-for-byte the upper-cased request.
    pub ok: u64,
    /// Complete (S bytes) but different from the upper-cased request.
    pub wrong: u64,
    /// Begun but never completed: the connection closed or the run ended mid-answer.
    pub short: u64,
    /// Not a byte received: the connection failed, closed or the run was stopped before it.
    pub missing: u64,
    /// Sent but not yet (fully) answered when the duration ended the run: neither right nor
    /// wrong.
    #[serde(default)]
    pub in_flight: u64,
}

/// Latency percentiles in microseconds (HDR histogram, 3 significant digits), from the moment
/// a request's first byte is written (open loop: the moment it was meant to be written, so a
/// stalled server shows in the percentiles) to the moment its answer's last byte is read.
/// All zero when no measured answer was correct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Latency {
    /// Answers measured.
    pub count: u64,
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    pub(crate) fn from_histogram(h: &hdrhistogram::Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Latency {
            count: h.len(),
            min: us(h.min()),
            mean: h.mean() / 1_000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// When active connections got their first correct answer, in milliseconds after the first
/// requests went out. With a pooled server of W workers and more than W clients, `max` shows
/// how long the last client waited for a worker. Zero when no answer was correct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FirstAnswer {
    /// The first connection to be answered.
    pub min: f64,
    /// The last connection to get its first answer.
    pub max: f64,
}

impl FirstAnswer {
    pub(crate) fn from_range(range: Option<(Duration, Duration)>) -> FirstAnswer {
        range.map_or_else(FirstAnswer::default, |(min, max)| FirstAnswer {
            min: ms(min),
            max: ms(max),
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

// ===== text for a terminal =====

impl fmt::Display for LoadReport {
    /// A few lines for a person; scripts should read the JSON instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let threads = plural(self.threads, "thread");
        let messages = self
            .messages_per_connection
            .map_or_else(|| "timed".to_owned(), thousands);
        let duration = self
            .duration_s
            .map_or_else(String::new, |d| format!(" for {d} s"));
        writeln!(
            f,
            "{}: {} × {messages} messages × {} B ({} warm-up){duration}, {} idle, {threads}: {}",
            self.addr,
            plural(self.connections, "connection"),
            thousands(self.size),
            thousands(self.warmup),
            thousands(self.idle),
            self.end,
        )?;
        if self.connections > 0 {
            writeln!(
                f,
                "  {} messages in {:.3} s: {} msgs/s{}, {:.1} MB/s",
                thousands(self.messages),
                self.elapsed_s,
                thousands(self.msgs_per_s.round() as u64),
                self.rate
                    .map_or_else(String::new, |r| format!(" (asked {})", thousands(r))),
                self.mb_per_s,
            )?;
            let l = &self.latency_us;
            writeln!(
                f,
                "  latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
                short_us(l.p50),
                short_us(l.p90),
                short_us(l.p99),
                short_us(l.p99_9),
                short_us(l.max),
                short_us(l.mean),
            )?;
            writeln!(
                f,
                "  first answers after {:.1} ms (first connection) to {:.1} ms (last)",
                self.first_answer_ms.min, self.first_answer_ms.max,
            )?;
        }
        let a = &self.answers;
        writeln!(
            f,
            "  answers: {} ok, {} wrong, {} short, {} missing, {} in flight at the end (of {})",
            thousands(a.ok),
            thousands(a.wrong),
            thousands(a.short),
            thousands(a.missing),
            thousands(a.in_flight),
            thousands(a.expected),
        )?;
        if self.timed_out > 0 {
            writeln!(
                f,
                "  {} connections given up: an answer took longer than {} s",
                thousands(self.timed_out),
                self.timeout_s.unwrap_or_default(),
            )?;
        }
        self.fmt_connections(f)
    }
}

impl LoadReport {
    /// The report's last lines: how the connections fared.
    fn fmt_connections(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  connections: {} connected, {} failed",
            thousands(self.connected),
            thousands(self.connect_failed),
        )?;
        if self.idle > 0 {
            write!(
                f,
                "; idle: {} connected, {} failed, {} closed by the server",
                thousands(self.idle_connected),
                thousands(self.idle_failed),
                thousands(self.idle_closed),
            )?;
        }
        if let Some(err) = &self.connect_error {
            write!(f, "\n  first connect error: {err}")?;
        }
        Ok(())
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{} {what}s", thousands(n))
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds with a precision that suits their size.
fn short_us(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.1}")
    } else {
        thousands(us.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn latency_empty_histogram_is_zero() {
        let h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        assert_eq!(Latency::from_histogram(&h), Latency::default());
    }
}
