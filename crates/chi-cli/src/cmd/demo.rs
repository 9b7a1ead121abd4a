//! `chi demo`: a walkthrough of chi's pools, step by step, with readable output.

use anyhow::Context;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn after_help() -> String {
    crate::exit::section(&[
        crate::exit::SUCCESS,
        crate::exit::FAILURE,
        crate::exit::USAGE,
    ])
}

/// Flags of `chi demo`.
#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
pub(crate) struct DemoArgs {
    /// How long each demo task works, in milliseconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub(crate) task_ms: u64,
    /// Worker threads of the demo's thread pool.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) workers: u64,
    /// Skip the process-pool part.
    #[arg(long)]
    pub(crate) threads_only: bool,
}

/// Prints one line at once (the demo interleaves output from several threads).
fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("main").to_owned()
}

/// The demo task `task(n, m)`: prints where it runs, works a while, returns a message.
fn task(n: u64, m: u64, work: Duration) -> String {
    say(format!(
        "  task({n}, {m}) runs on {} (pid {})",
        thread_name(),
        std::process::id()
    ));
    std::thread::sleep(work);
    format!("{} finished task({n}, {m})", thread_name())
}

/// Runs the walkthrough.
pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let work = Duration::from_millis(args.task_ms);
    let workers = usize::try_from(args.workers).context("--workers")?;
    let start = Instant::now();

    say(format!(
        "== 1. A thread pool of {workers} workers, 10 tasks, a done-callback on each =="
    ));
    let pool = chi::ThreadPool::new(workers)?;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let t = pool
            .submit(move || task(i, 3, work))
            .map_err(|_| anyhow::anyhow!("pool shut down"))?;
        t.add_done_callback(|outcome| match outcome {
            Ok(msg) => say(format!("  callback: {msg}")),
            Err(e) => say(format!("  callback: failed: {e}")),
        });
        tasks.push(t);
    }
    say("== 2. result() in submit order (blocks until each is done) ==");
    for (i, t) in tasks.into_iter().enumerate() {
        say(format!("  result {i}: {}", t.result()?));
    }

    say("== 3. A panic is caught into the task; the worker lives on ==");
    // The default hook prints a backtrace for the panic this step causes on purpose.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .unwrap_or("(not a string)");
        say(format!("  (panic on {}: {msg})", thread_name()));
    }));
    let failing = pool
        .submit(|| -> u32 { panic!("something went wrong") })
        .map_err(|_| anyhow::anyhow!("shut down"))?;
    match failing.result() {
        Ok(_) => say("  unexpected: the task returned"),
        Err(e) => say(format!("  the task reported: {e}")),
    }
    say(format!(
        "  and the pool still works: 6 * 7 = {}",
        pool.submit(|| 6 * 7)
            .map_err(|_| anyhow::anyhow!("shut down"))?
            .result()?
    ));
    std::panic::set_hook(default_hook);
    let m = pool.metrics();
    say(format!(
        "  metrics: {} workers, {} completed, {} panicked",
        m.workers, m.completed, m.panicked
    ));
    pool.shutdown();

    say("== 4. A full pool makes submit wait: 1 worker, a queue of 1 ==");
    let small = chi::ThreadPool::builder()
        .max_workers(1)
        .queue_bound(1)
        .build()?;
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let busy = small
        .submit(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            "long task done"
        })
        .map_err(|_| anyhow::anyhow!("shut down"))?;
    started_rx.recv().context("the worker did not start")?;
    let queued = small
        .submit(|| "queued task done")
        .map_err(|_| anyhow::anyhow!("shut down"))?;
    say("  worker busy, queue full (1 of 1)");
    match small.try_submit(|| "third") {
        Err(e) if e.is_full() => {
            say("  try_submit: refused, queue full (the closure is handed back)")
        }
        _ => say("  unexpected: try_submit was accepted"),
    }
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(work);
        say("  (releasing the long task)");
        let _ = release_tx.send(());
    });
    let t0 = Instant::now();
    let third = small
        .submit(|| "third task done")
        .map_err(|_| anyhow::anyhow!("shut down"))?;
    say(format!(
        "  submit waited {:?} for a free place, then was accepted",
        t0.elapsed()
    ));
    for t in [busy, queued, third] {
        say(format!("  {}", t.result()?));
    }
    let _ = releaser.join();

    say("== 5. shutdown() waits for the queued work, then joins the workers ==");
    small.shutdown();
    say(format!(
        "  submit after shutdown: {}",
        match small.submit(|| ()) {
            Err(e) => e.to_string(),
            Ok(_) => "accepted (unexpected)".into(),
        }
    ));

    if !args.threads_only {
        super::demo_process::run_process_demo()?;
    }
    say(format!("demo finished in {:.1?}", start.elapsed()));
    Ok(())
}
