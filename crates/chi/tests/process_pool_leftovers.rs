//! What a process pool leaves behind, and what it must not: processes its tasks start end
//! with their worker (pool drop, timeout, cancel of a running task, recycling); a pool dropped
//! by a panicking thread kills its workers instead of waiting for long tasks; user values that
//! panic in `Drop` (arguments, orphaned results) do not break `submit` or a supervisor; and
//! durations past the clock's limit are refused by the builder or mean "wait forever".
//!
//! Processes started here are reaped by the pool or by whoever inherits them; a test only
//! watches `/proc` (bounded polling) and never waits on a process it did not start itself.

chi::process_pool_test_entry!();

mod common;
#[path = "common/proc.rs"]
mod proc;

use chi::limits::{MAX_DURATION, MAX_PROCESS_WORKERS};
use chi::{ProcessPool, TaskError};
use common::{DropCounter, DropPanics, HUGE, bounded};
use proc::{NEVER, alive, poll_until, temp_path, wait_for_file};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

// ===== task functions (they run in the workers) =====

/// Starts `sleep 60` (its output detached) and returns its pid without waiting for it.
fn start_sleeper(_: ()) -> u32 {
    Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sleep")
        .id()
}

/// Starts `sleep 60`, writes its pid to `path`, then runs (for 600 s) until stopped.
fn start_sleeper_and_hang(path: String) -> u32 {
    let pid = start_sleeper(());
    std::fs::write(&path, pid.to_string()).expect("write the pid file");
    for _ in 0..600 {
        std::thread::sleep(Duration::from_secs(1));
    }
    pid
}

/// Starts `sleep 60`, writes its pid to `path`, then ends its worker with exit code 3.
fn start_sleeper_and_exit(path: String) -> u32 {
    let pid = start_sleeper(());
    std::fs::write(&path, pid.to_string()).expect("write the pid file");
    std::process::exit(3)
}

fn square(x: u64) -> u64 {
    x * x
}

/// Keeps the argument from being dropped in the worker (its decoded copy panics on drop).
fn forget_arg(a: DropPanics) -> u32 {
    std::mem::forget(a);
    7
}

/// Waits for `release` to exist, then returns a value whose decoded copy panics on drop.
fn drop_panics_after(release: String) -> DropPanics {
    while !Path::new(&release).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    DropPanics::disarmed()
}

/// Waits until the process `pid` no longer runs (killed, and reaped by whoever inherited it).
#[track_caller]
fn wait_gone(pid: u32, what: &str) {
    poll_until(&format!("{what}: process {pid} to end"), || !alive(pid));
}

// ===== grandchildren =====

#[test]
fn grandchild_ends_when_the_pool_is_dropped() {
    let pool = ProcessPool::new(1).unwrap();
    let pid = pool
        .submit(start_sleeper, ())
        .unwrap()
        .result_timeout(NEVER)
        .unwrap();
    assert!(
        alive(pid),
        "the task's process runs after the task returned"
    );
    drop(pool);
    wait_gone(pid, "pool dropped");
}

#[test]
fn grandchild_ends_when_its_worker_times_out_and_the_pool_goes_on() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .task_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let path = temp_path("timeout-grandchild");
    let t = pool
        .submit(start_sleeper_and_hang, path.display().to_string())
        .unwrap();
    let pid: u32 = wait_for_file(&path).parse().unwrap();
    let _ = std::fs::remove_file(&path);
    match t.result_timeout(NEVER) {
        Err(chi::ResultTimeoutError::Failed(TaskError::TimedOut(_))) => {}
        other => panic!("expected TimedOut, got {other:?}"),
    }
    wait_gone(pid, "worker killed by the task timeout");
    assert_eq!(
        pool.submit(square, 3).unwrap().result_timeout(NEVER).ok(),
        Some(9)
    );
}

#[test]
fn grandchild_ends_when_its_running_task_is_cancelled() {
    let pool = ProcessPool::new(1).unwrap();
    let path = temp_path("cancel-grandchild");
    let t = pool
        .submit(start_sleeper_and_hang, path.display().to_string())
        .unwrap();
    let pid: u32 = wait_for_file(&path).parse().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(t.cancel());
    wait_gone(pid, "worker killed by cancel");
    assert_eq!(
        t.result_timeout(NEVER).map_err(|e| e.to_string()),
        Err(TaskError::Cancelled.to_string())
    );
}

#[test]
fn grandchild_ends_when_its_worker_crashes() {
    let pool = ProcessPool::new(1).unwrap();
    let path = temp_path("crash-grandchild");
    let t = pool
        .submit(start_sleeper_and_exit, path.display().to_string())
        .unwrap();
    match t.result_timeout(NEVER) {
        Err(chi::ResultTimeoutError::Failed(TaskError::WorkerDied(chi::ExitReason::Code(3)))) => {}
        other => panic!("expected WorkerDied(Code(3)), got {other:?}"),
    }
    let pid: u32 = wait_for_file(&path).parse().unwrap();
    let _ = std::fs::remove_file(&path);
    wait_gone(pid, "worker exited with the task");
    assert_eq!(
        pool.submit(square, 2).unwrap().result_timeout(NEVER).ok(),
        Some(4)
    );
}

#[test]
fn grandchild_ends_when_its_worker_is_recycled() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .max_tasks_per_worker(1)
        .build()
        .unwrap();
    let pid = pool
        .submit(start_sleeper, ())
        .unwrap()
        .result_timeout(NEVER)
        .unwrap();
    wait_gone(pid, "worker recycled after one task");
    assert_eq!(
        pool.submit(square, 4).unwrap().result_timeout(NEVER).ok(),
        Some(16)
    );
}

// ===== a panicking main =====

const PANIC_CHILD_ENV: &str = "CHI_TEST_PANIC_WITH_RUNNING_TASK";
const PANIC_MESSAGE: &str = "main panics while a process task runs";

/// The child's body: a 600 s task is running (and has started `sleep 60`) when the thread
/// that owns the pool panics.
#[test]
fn panicking_owner_child() {
    if std::env::var_os(PANIC_CHILD_ENV).is_none() {
        return; // only meaningful as the child of the test below
    }
    let pool = ProcessPool::new(1).unwrap();
    let path = temp_path("panic-grandchild");
    let _t = pool
        .submit(start_sleeper_and_hang, path.display().to_string())
        .unwrap();
    let pid = wait_for_file(&path);
    let _ = std::fs::remove_file(&path);
    println!("grandchild={pid}");
    panic!("{PANIC_MESSAGE}");
}

#[test]
fn pool_dropped_by_a_panicking_thread_kills_its_workers() {
    // `run_test_child` fails this test if the child is not over within NEVER (60 s); the
    // task would run for 600 s.
    let run = proc::run_test_child("panicking_owner_child", &[(PANIC_CHILD_ENV, "1")]);
    assert!(!run.success, "the child's test panics");
    assert!(run.stderr.contains(PANIC_MESSAGE), "{}", run.stderr);
    let pid: u32 = run
        .stdout
        .lines()
        .find_map(|l| l.split_once("grandchild="))
        .and_then(|(_, p)| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no grandchild pid in {}", run.stdout));
    wait_gone(pid, "the task's process after the panic");
}

// ===== user values that panic in Drop =====

#[test]
fn argument_that_panics_in_drop_does_not_break_submit() {
    let pool = ProcessPool::new(1).unwrap();
    let drops = DropCounter::new();
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.submit(forget_arg, DropPanics::new(&drops))
    }));
    let t = submitted.expect("submit does not panic").unwrap();
    assert_eq!(
        drops.count(),
        1,
        "the argument was dropped once, after encoding"
    );
    assert_eq!(t.result_timeout(NEVER).ok(), Some(7));
}

#[test]
fn orphaned_result_that_panics_in_drop_leaves_the_pool_working() {
    let pool = ProcessPool::new(1).unwrap();
    let release = temp_path("orphan-release");
    let t = pool
        .submit(drop_panics_after, release.display().to_string())
        .unwrap();
    drop(t); // the pool drops the (decoded, armed) result when it arrives
    std::fs::write(&release, "go").unwrap();
    let next = bounded(
        "the next task after an orphaned result's drop panicked",
        move || pool.submit(square, 5).unwrap().result(),
    );
    assert_eq!(next, Ok(25));
}

// ===== huge durations =====

fn invalid(b: chi::ProcessPoolBuilder) -> String {
    common::invalid_setting(b.build())
}

#[test]
fn builder_refuses_durations_and_sizes_over_their_maximum() {
    for d in HUGE
        .into_iter()
        .chain([MAX_DURATION + Duration::from_nanos(1)])
    {
        let msg = invalid(ProcessPool::builder().task_timeout(d));
        assert!(
            msg.contains("task_timeout") && msg.contains("365 days"),
            "{msg}"
        );
        let msg = invalid(ProcessPool::builder().startup_timeout(d));
        assert!(msg.contains("startup_timeout"), "{msg}");
    }
    let msg = invalid(ProcessPool::builder().max_workers(MAX_PROCESS_WORKERS + 1));
    assert!(msg.contains("MAX_PROCESS_WORKERS"), "{msg}");
    let msg = invalid(ProcessPool::builder().queue_bound(usize::MAX));
    assert!(msg.contains("queue_bound"), "{msg}");
    let msg = invalid(ProcessPool::builder().max_message_size(usize::MAX));
    assert!(msg.contains("max_message_size"), "{msg}");
}

#[test]
fn maximum_durations_are_accepted_and_tasks_run() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .task_timeout(MAX_DURATION)
        .startup_timeout(MAX_DURATION)
        .build()
        .unwrap();
    assert_eq!(
        pool.submit(square, 6).unwrap().result_timeout(NEVER).ok(),
        Some(36)
    );
}

#[test]
fn run_time_timeouts_past_the_clock_wait_for_the_outcome() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .queue_bound(1)
        .build()
        .unwrap();
    for d in HUGE {
        assert_eq!(pool.wait_for_workers(d), 1);
        let t = pool
            .submit_timeout(square, 7, d)
            .map_err(|_| "refused")
            .unwrap();
        assert!(t.wait_timeout(d));
        assert_eq!(t.result_timeout(d).ok(), Some(49));
        let got: Vec<u64> = pool
            .map(square, 1..=4)
            .chunksize(2)
            .timeout(d)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, [1, 4, 9, 16]);
    }
}
