//! Thread-pool scenarios, chi and every peer side by side in one group per scenario
//! (`BenchmarkId::new(peer, workers)`): tiny tasks submitted then joined in order, the idle
//! round trip, 50 µs CPU tasks, and 4 submitter threads (plus the handle-less channel). The
//! scenario code is `chi_bench::scenario`, shared with `pool_bench`, which also measures idle
//! CPU and is the run quoted in BENCHMARKS.md (criterion is slow on 2 cores).
//!
//! `cargo bench -p chi-bench --bench pools` (add a filter such as `round_trip` to run one group).

use chi_bench::{BARE_CHANNEL, ChannelPool, Peer, Pool, PoolVisitor, Spin, scenario};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_main};
use std::time::Duration;

/// Worker threads of every pool (the benchmark machine has 2 cores).
const WORKERS: usize = 2;
/// Tasks per iteration of `tiny_tasks`.
const TINY_N: u64 = 10_000;
/// Tasks per iteration of `cpu_50us` (10 ms of work per worker).
const CPU_N: usize = 400;
/// Submitter threads and tasks per submitter per iteration of `multi_submit`.
const SUBMITTERS: usize = 4;
const PER_SUBMITTER: u64 = 10_000;

#[derive(Debug, Clone, Copy)]
enum Scenario {
    TinyTasks,
    RoundTrip,
    Cpu50us(Spin),
    MultiSubmit,
}

/// Adds one peer's benchmark to the scenario's group.
struct AddPeer<'g, 'c> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    scenario: Scenario,
}

impl PoolVisitor for AddPeer<'_, '_> {
    type Output = ();

    fn visit<P: Pool>(self, peer: Peer, pool: &P) {
        if !scenario::warm_up(pool, WORKERS).ok() {
            eprintln!("warning: {peer}: warm-up checks failed (see chi_bench::WarmUp)");
        }
        let id = BenchmarkId::new(peer.id(), WORKERS);
        match self.scenario {
            Scenario::TinyTasks => self.group.bench_function(id, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| scenario::tiny_tasks(pool, TINY_N)).sum())
            }),
            Scenario::RoundTrip => self.group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    scenario::round_trips(pool, iters as usize)
                        .into_iter()
                        .sum()
                })
            }),
            Scenario::Cpu50us(spin) => self.group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| scenario::cpu_tasks(pool, CPU_N, spin))
                        .sum()
                })
            }),
            Scenario::MultiSubmit => self.group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| scenario::multi_submit(pool, SUBMITTERS, PER_SUBMITTER))
                        .sum()
                })
            }),
        };
    }
}

fn run_group(c: &mut Criterion, name: &str, scenario: Scenario, throughput: Throughput) {
    let mut group = c.benchmark_group(name);
    group.throughput(throughput);
    for peer in Peer::ALL {
        peer.with_pool(
            WORKERS,
            AddPeer {
                group: &mut group,
                scenario,
            },
        );
    }
    if let Scenario::MultiSubmit = scenario {
        let pool = ChannelPool::with_workers(WORKERS);
        if !scenario::warm_up(&pool, WORKERS).ok() {
            eprintln!("warning: {BARE_CHANNEL}: warm-up checks failed (see chi_bench::WarmUp)");
        }
        group.bench_function(BenchmarkId::new(BARE_CHANNEL, WORKERS), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| scenario::multi_submit_bare(&pool, SUBMITTERS, PER_SUBMITTER))
                    .sum()
            })
        });
    }
    group.finish();
}

fn tiny_tasks(c: &mut Criterion) {
    run_group(
        c,
        "tiny_tasks",
        Scenario::TinyTasks,
        Throughput::Elements(TINY_N),
    );
}

fn round_trip(c: &mut Criterion) {
    run_group(
        c,
        "round_trip",
        Scenario::RoundTrip,
        Throughput::Elements(1),
    );
}

fn cpu_50us(c: &mut Criterion) {
    let spin = Spin::calibrate(Duration::from_micros(50));
    run_group(
        c,
        "cpu_50us",
        Scenario::Cpu50us(spin),
        Throughput::Elements(CPU_N as u64),
    );
}

fn multi_submit(c: &mut Criterion) {
    let tasks = SUBMITTERS as u64 * PER_SUBMITTER;
    run_group(
        c,
        "multi_submit",
        Scenario::MultiSubmit,
        Throughput::Elements(tasks),
    );
}

/// The group `criterion_main!` runs (a module, because `criterion_group!` writes a `pub fn`
/// that cannot carry a doc comment).
#[allow(missing_docs)]
mod all {
    use super::{Criterion, Duration};

    criterion::criterion_group! {
        name = pools;
        config = Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        targets = super::tiny_tasks, super::round_trip, super::cpu_50us, super::multi_submit
    }
}
criterion_main!(all::pools);
