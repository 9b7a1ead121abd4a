//! One worker's counters and latency histogram, merged into the report when the run ends;
//! and the shared progress counters a worker publishes to as it goes.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::report::End;

/// Latencies above this are recorded as this (an hour: far past any sensible answer timeout).
const HIGHEST_NS: u64 = 3_600 * 1_000_000_000;

/// A latency histogram: nanoseconds from 1 ns to an hour, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("constant histogram bounds are valid")
}

/// What one worker counted.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) ok: u64,
    pub(crate) wrong: u64,
    pub(crate) short: u64,
    pub(crate) missing: u64,
    /// Answers under way when the duration ended the run.
    pub(crate) in_flight: u64,
    /// Connections given up because an answer took too long.
    pub(crate) timed_out: u64,
    /// Correct answers of measured (not warm-up) messages.
    pub(crate) measured_ok: u64,
    pub(crate) connected: u64,
    pub(crate) connect_failed: u64,
    pub(crate) idle_connected: u64,
    pub(crate) idle_failed: u64,
    pub(crate) idle_closed: u64,
    pub(crate) connect_error: Option<String>,
    /// Nanoseconds, 3 significant digits.
    pub(crate) latency: Histogram<u64>,
    /// The latencies since the last hand-over to the run's interval histogram, when kept.
    pub(crate) interval: Option<Histogram<u64>>,
    /// Earliest and latest first answer of a connection, after the start of the run.
    pub(crate) first_answers: Option<(Duration, Duration)>,
    /// First measured request written, last measured answer read.
    pub(crate) measured: Option<(Instant, Instant)>,
    /// Why the worker stopped early, if it did.
    pub(crate) cut_short: Option<End>,
    /// What has been published to [`Progress`] so far.
    published: Published,
}

#[derive(Debug, Default)]
struct Published {
    answers: u64,
    errors: u64,
    connected: u64,
    idle_connected: u64,
}

impl Tally {
    /// A fresh tally; `intervals`: also keep the latencies of the current interval.
    pub(crate) fn new(intervals: bool) -> Tally {
        Tally {
            ok: 0,
            wrong: 0,
            short: 0,
            missing: 0,
            in_flight: 0,
            timed_out: 0,
            measured_ok: 0,
            connected: 0,
            connect_failed: 0,
            idle_connected: 0,
            idle_failed: 0,
            idle_closed: 0,
            connect_error: None,
            latency: new_histogram(),
            interval: intervals.then(new_histogram),
            first_answers: None,
            measured: None,
            cut_short: None,
            published: Published::default(),
        }
    }

    pub(crate) fn record_latency(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(ns.clamp(1, HIGHEST_NS));
        if let Some(interval) = &mut self.interval {
            interval.saturating_record(ns.clamp(1, HIGHEST_NS));
        }
    }

    pub(crate) fn first_answer(&mut self, after: Duration) {
        self.first_answers = Some(match self.first_answers {
            None => (after, after),
            Some((lo, hi)) => (lo.min(after), hi.max(after)),
        });
    }

    pub(crate) fn measured_span(&mut self, start: Instant, end: Instant) {
        self.measured = Some(match self.measured {
            None => (start, end),
            Some((lo, hi)) => (lo.min(start), hi.max(end)),
        });
    }

    pub(crate) fn connect_failed(&mut self, idle: bool, err: &str) {
        if idle {
            self.idle_failed += 1;
        } else {
            self.connect_failed += 1;
        }
        if self.connect_error.is_none() {
            self.connect_error = Some(err.to_owned());
        }
    }

    pub(crate) fn errors(&self) -> u64 {
        self.wrong + self.short + self.missing
    }

    /// Adds what changed since the last call to the shared counters.
    pub(crate) fn publish(&mut self, progress: &Progress) {
        let answers = self.ok + self.errors();
        let errors = self.errors();
        let p = &mut self.published;
        // ORDERING: plain counters read by the progress display; nothing is synchronised
        // through them, so Relaxed is enough.
        progress
            .answers
            .fetch_add(answers - p.answers, Ordering::Relaxed);
        progress
            .errors
            .fetch_add(errors - p.errors, Ordering::Relaxed);
        progress
            .connected
            .fetch_add(self.connected - p.connected, Ordering::Relaxed);
        progress
            .idle_connected
            .fetch_add(self.idle_connected - p.idle_connected, Ordering::Relaxed);
        *p = Published {
            answers,
            errors,
            connected: self.connected,
            idle_connected: self.idle_connected,
        };
    }

    /// Folds another worker's tally into this one.
    pub(crate) fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.wrong += other.wrong;
        self.short += other.short;
        self.missing += other.missing;
        self.in_flight += other.in_flight;
        self.timed_out += other.timed_out;
        self.measured_ok += other.measured_ok;
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        self.idle_connected += other.idle_connected;
        self.idle_failed += other.idle_failed;
        self.idle_closed += other.idle_closed;
        if self.connect_error.is_none() {
            self.connect_error = other.connect_error;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if let Some((lo, hi)) = other.first_answers {
            self.first_answer(lo);
            self.first_answer(hi);
        }
        if let Some((lo, hi)) = other.measured {
            self.measured_span(lo, hi);
        }
        self.cut_short = match (self.cut_short, other.cut_short) {
            (Some(End::Interrupted), _) | (_, Some(End::Interrupted)) => Some(End::Interrupted),
            (a, b) => a.or(b),
        };
    }
}

/// Where a run is, as [`LoadProgress::phase`](super::LoadProgress::phase) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadPhase {
    /// Opening the connections (idle and active).
    Connecting,
    /// Every connection is open (or failed); active ones are exchanging messages.
    Running,
    /// No active connections: the idle ones are open and held until the duration ends or a stop.
    Holding,
    /// Every worker has finished.
    Done,
}

/// Counters the workers publish while they run (each adds what changed once per poll).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) answers: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) idle_connected: AtomicU64,
    pub(crate) phase: AtomicU8,
}

impl Progress {
    pub(crate) fn set_phase(&self, phase: LoadPhase) {
        // ORDERING: informational; readers only display it.
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub(crate) fn phase(&self) -> LoadPhase {
        // ORDERING: as in `set_phase`.
        match self.phase.load(Ordering::Relaxed) {
            0 => LoadPhase::Connecting,
            1 => LoadPhase::Running,
            2 => LoadPhase::Holding,
            _ => LoadPhase::Done,
        }
    }
}
