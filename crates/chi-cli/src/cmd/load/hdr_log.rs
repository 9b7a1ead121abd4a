//! `chi load --hdr-log FILE`: the latencies of each interval (about a second) in HdrHistogram's
//! interval log format, which HdrHistogram's log processors and plotters read.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use chi_net::load::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder};

/// How long one interval of the log lasts.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// The file and the encoder a log writes with (the log borrows both).
pub(crate) struct Sink {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    path: String,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Creates (or truncates) the file.
    pub(crate) fn create(path: &Path) -> anyhow::Result<Sink> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Sink {
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            path: path.display().to_string(),
        })
    }

    /// Writes the log's header; the run starts now.
    pub(crate) fn begin(&mut self) -> anyhow::Result<HdrLog<'_>> {
        let now = SystemTime::now();
        let writer = IntervalLogWriterBuilder::new()
            .add_comment("chi load: answer latency in nanoseconds (max column in ms)")
            .with_start_time(now)
            .with_base_time(now)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut self.out, &mut self.serializer)
            .with_context(|| format!("cannot write {}", self.path))?;
        let started = Instant::now();
        Ok(HdrLog {
            writer,
            started,
            interval_start: started,
        })
    }

    /// Flushes what the log wrote.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path))
    }
}

/// An interval log being written: one histogram line per interval.
pub(crate) struct HdrLog<'a> {
    writer: IntervalLogWriter<'a, 'a, BufWriter<File>, V2DeflateSerializer>,
    started: Instant,
    interval_start: Instant,
}

impl std::fmt::Debug for HdrLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdrLog")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl HdrLog<'_> {
    /// Whether the current interval has lasted long enough to be written.
    pub(crate) fn due(&self) -> bool {
        self.interval_start.elapsed() >= INTERVAL
    }

    /// Writes the histogram of the interval that ends now (an empty one too: a gap in the
    /// answers is data).
    pub(crate) fn write(&mut self, interval: &Histogram<u64>) -> anyhow::Result<()> {
        let now = Instant::now();
        let start = self.interval_start.saturating_duration_since(self.started);
        let length = now.saturating_duration_since(self.interval_start);
        self.interval_start = now;
        self.writer
            .write_histogram(interval, start, length, None)
            .map_err(|e| anyhow::anyhow!("cannot write the interval log: {e:?}"))
    }
}
