//! The process pool's public behaviour, above all the fault matrix of issue 4: every way a
//! task or a worker can fail gives that task one exact error, and the same pool then runs the
//! next task correctly. Waits are bounded (`result_timeout(NEVER)`, `poll_until`); no test
//! sleeps to synchronise or asserts on a duration. Tasks that must hold still wait for a file
//! the test creates; tasks report that they started by writing a file the test waits for.
//!
//! Process-wide checks (descriptor counts, zombies) run alone in a fresh copy of this binary.

chi::process_pool_test_entry!();

mod common;
#[path = "common/proc.rs"]
mod proc;

use chi::{ExitReason, ProcessPool, Task, TaskError};
use proc::{NEVER, poll_until, temp_path, wait_for_file};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::Path;
use std::time::Duration;

// ===== task functions (they run in the workers) =====

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn panics(n: u32) -> u32 {
    panic!("boom {n}")
}

fn exits(code: i32) -> u32 {
    std::process::exit(code)
}

fn aborts(_: ()) -> u32 {
    std::process::abort()
}

/// Raises SIGSEGV on itself (with the `kill` program, so the test needs no `unsafe`). Twice:
/// std's stack-overflow handler takes the first one, finds no guard-page fault, and restores
/// the default action, which the second one then meets.
fn segfaults(_: ()) -> u32 {
    let me = std::process::id().to_string();
    loop {
        let _ = std::process::Command::new("kill")
            .args(["-s", "SEGV", &me])
            .status();
    }
}

/// Writes this worker's pid to `started`, then waits until `release` exists.
#[derive(Serialize, Deserialize)]
struct Hold {
    started: String,
    release: String,
}

fn hold(h: Hold) -> u32 {
    std::fs::write(&h.started, std::process::id().to_string()).expect("write the start marker");
    while !Path::new(&h.release).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = std::fs::remove_file(&h.release);
    std::process::id()
}

/// Holds like [`hold`] when given a `Hold`, else answers at once.
fn hold_or_pid(h: Option<Hold>) -> u32 {
    h.map_or_else(std::process::id, hold)
}

fn touch(path: String) -> u32 {
    std::fs::write(path, "ran").expect("write");
    std::process::id()
}

fn sleeps_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn shout(s: String) -> usize {
    println!("worker {} says {s}", std::process::id());
    s.len()
}

/// Never encodes.
#[derive(Debug)]
struct Unencodable;
impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses to encode"))
    }
}
impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unencodable)
    }
}

/// Encodes, never decodes.
#[derive(Debug)]
struct Undecodable;
impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}
impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undecodable refuses to decode"))
    }
}

fn takes_unencodable(_: Unencodable) -> u32 {
    1
}
fn takes_undecodable(_: Undecodable) -> u32 {
    1
}
fn returns_unencodable(_: ()) -> Unencodable {
    Unencodable
}
fn returns_undecodable(_: ()) -> Undecodable {
    Undecodable
}

/// Bytes encoded as one byte string (fast in postcard, unlike a sequence of `u8`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blob(Vec<u8>);
impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}
impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn pattern(len: usize, seed: u8) -> Blob {
    Blob(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect(),
    )
}

/// Reverses the blob (so an echo bug cannot pass).
fn reverse(mut b: Blob) -> Blob {
    b.0.reverse();
    b
}

fn make_blob(len: usize) -> Blob {
    pattern(len, 7)
}

/// Writes the head of a 16 MiB `DONE` frame straight to the worker's socket, then aborts:
/// from the pool's side, a worker that crashed while writing a big result.
fn dies_mid_result(_: ()) -> Blob {
    use std::io::Write;
    use std::os::fd::{BorrowedFd, RawFd};
    let marker = std::env::var("CHI_PROCESS_POOL_WORKER").expect("the worker marker");
    let fd: RawFd = marker
        .split(':')
        .nth(2)
        .and_then(|s| s.parse().ok())
        .expect("socket fd in the marker");
    // SAFETY: `fd` is the worker's socket, open for the whole life of the worker process,
    // which ends in `abort` below before anything could close it.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut stream =
        std::os::unix::net::UnixStream::from(sock.try_clone_to_owned().expect("dup the socket"));
    let mut frame = (16u32 << 20).to_le_bytes().to_vec();
    frame.push(19); // DONE
    frame.extend(std::iter::repeat_n(0xAB, 64 << 10));
    let _ = stream.write_all(&frame);
    std::process::abort()
}

/// Lists the worker's own socket descriptors and whether each is close-on-exec.
fn worker_socket_flags(_: ()) -> Vec<(i32, bool)> {
    proc::open_fds()
        .into_iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .map(|(fd, _)| (fd, proc::cloexec(fd)))
        .collect()
}

fn setup_ok(v: u32) {
    INIT_VALUE
        .set(v)
        .expect("the initializer runs once per worker");
}
fn setup_panics(msg: String) {
    panic!("{msg}")
}
fn setup_exits(code: i32) {
    std::process::exit(code)
}
static INIT_VALUE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
fn read_init_value(_: ()) -> Option<u32> {
    INIT_VALUE.get().copied()
}

// ===== helpers =====

#[track_caller]
fn get<T: std::fmt::Debug>(t: Task<T>) -> Result<T, TaskError> {
    match t.result_timeout(NEVER) {
        Ok(v) => Ok(v),
        Err(chi::ResultTimeoutError::Failed(e)) => Err(e),
        Err(chi::ResultTimeoutError::Timeout(_)) => panic!("hang: no result within {NEVER:?}"),
    }
}

/// The pool still works: a fresh task gives the right answer.
#[track_caller]
fn assert_serves(pool: &ProcessPool) {
    assert_eq!(
        get(pool.submit(square, 12).unwrap()),
        Ok(144),
        "the pool serves the next task"
    );
}

fn worker_pid(pool: &ProcessPool) -> u32 {
    get(pool.submit(pid, ()).unwrap()).expect("a pid")
}

fn pool(workers: usize) -> ProcessPool {
    ProcessPool::new(workers).expect("a process pool")
}

struct Holder {
    started: std::path::PathBuf,
    release: std::path::PathBuf,
    /// Released, or the held task ended without being released (killed): nothing to do on
    /// drop.
    gone: std::sync::atomic::AtomicBool,
}

impl Holder {
    fn new() -> Self {
        Holder {
            started: temp_path("started"),
            release: temp_path("release"),
            gone: std::sync::atomic::AtomicBool::new(false),
        }
    }
    fn arg(&self) -> Hold {
        Hold {
            started: self.started.display().to_string(),
            release: self.release.display().to_string(),
        }
    }
    /// Waits until the holding task runs and returns its worker's pid.
    fn wait_started(&self) -> u32 {
        wait_for_file(&self.started)
            .trim()
            .parse()
            .expect("a pid in the start marker")
    }
    fn release(&self) {
        std::fs::write(&self.release, "go").expect("write the release marker");
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    /// The held task was killed: it will never read the release marker.
    fn gone(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // A held task still running (a failed assertion) must end, or the pool's drop waits
        // for it; it removes the marker when it sees it.
        if !self.gone.load(std::sync::atomic::Ordering::Relaxed) {
            self.release();
        }
        let _ = std::fs::remove_file(&self.started);
    }
}

// ===== basics =====

#[test]
fn submit_returns_result() {
    let pool = pool(2);
    let tasks: Vec<_> = (0..20u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(get(t), Ok((i * i) as u64));
    }
    assert_ne!(
        worker_pid(&pool),
        std::process::id(),
        "tasks run in another process"
    );
}

#[test]
fn wait_for_workers_sees_every_worker_up() {
    let pool = pool(3);
    assert_eq!(pool.wait_for_workers(NEVER), 3);
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| proc::alive(p)));
    let m = pool.metrics();
    assert_eq!((m.workers, m.spawned), (3, 3));
}

#[test]
fn pool_and_task_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ProcessPool>();
    send::<Task<u64>>();
}

#[test]
fn callback_and_await_see_the_result() {
    let pool = pool(1);
    let t = pool.submit(square, 9).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    t.add_done_callback(move |r| tx.send(r.clone()).unwrap());
    assert_eq!(rx.recv_timeout(NEVER).unwrap(), Ok(81));
    let t = pool.submit(square, 5).unwrap();
    assert_eq!(futures::executor::block_on(t), Ok(25));
}

#[test]
fn as_completed_and_wait_work_on_process_tasks() {
    let pool = pool(2);
    let tasks: Vec<_> = (1..=4u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    let mut got: Vec<u64> = chi::as_completed(tasks).map(|t| get(t).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, [1, 4, 9, 16]);
}

#[test]
fn map_is_ordered_chunked_and_lazy() {
    let pool = pool(2);
    let v: Vec<u64> = pool
        .map(square, 0..1000u64)
        .chunksize(64)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    // Chunksize 1 and 0 (= 1) work too.
    let v: Vec<u64> = pool
        .map(square, [3u64, 4])
        .chunksize(0)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v, [9, 16]);
    // An endless input is fine: only the look-ahead is pulled.
    let v: Vec<u64> = pool
        .map(square, 0u64..)
        .chunksize(10)
        .take(25)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v.len(), 25);
    assert_eq!(v[24], 576);
}

#[test]
fn map_unordered_chunked_gives_every_result_once() {
    let pool = pool(2);
    let mut v: Vec<u64> = pool
        .map_unordered(square, 0..1000u64)
        .chunksize(64)
        .map(Result::unwrap)
        .collect();
    v.sort_unstable();
    assert_eq!(v, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    let failures = pool
        .map_unordered(panics_if_odd, 0..10u32)
        .chunksize(3)
        .filter(|r| r.as_ref().is_err_and(TaskError::is_panic))
        .count();
    assert_eq!(failures, 5, "a panic fails only its own item");
}

/// A held chunk does not hold back the chunks behind it.
#[test]
fn map_unordered_slow_chunk_does_not_block_others() {
    let pool = pool(2);
    assert_eq!(pool.wait_for_workers(NEVER), 2);
    let h = Holder::new();
    let mut it = pool
        .map_unordered(hold_or_pid, (0..5u32).map(|i| (i == 0).then(|| h.arg())))
        .lookahead(5);
    // Messages are spread over both workers as they are queued (the held one goes first, to
    // one worker; the other worker gets the next), so results arrive while item 0 is held.
    let first_two: Vec<u32> = (&mut it).take(2).map(Result::unwrap).collect();
    assert_eq!(first_two.len(), 2);
    h.wait_started();
    h.release();
    assert_eq!(it.map(Result::unwrap).count(), 3);
}

#[test]
fn map_timeout_ends_with_timed_out_and_cancels_the_rest() {
    let pool = pool(1);
    let h = Holder::new();
    let limit = Duration::from_millis(50);
    let out: Vec<Result<u32, TaskError>> = pool
        .map(hold_or_pid, (0..4u32).map(|i| (i == 0).then(|| h.arg())))
        .timeout(limit)
        .collect();
    assert_eq!(out, [Err(TaskError::TimedOut(limit))]);
    // The held item finishes in its worker (or was cancelled before it started); the items
    // behind it were cancelled, and the pool serves the next task.
    h.release();
    assert_serves(&pool);
}

#[test]
fn map_item_failures_stay_in_their_item() {
    let pool = pool(2);
    let got: Vec<Result<u32, TaskError>> = pool.map(panics_if_odd, 0..10u32).chunksize(4).collect();
    for (i, r) in got.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(r, &Err(TaskError::panicked(format!("odd {i}"))));
        } else {
            assert_eq!(r, &Ok(i as u32));
        }
    }
    assert_serves(&pool);
}

fn panics_if_odd(x: u32) -> u32 {
    assert!(x.is_multiple_of(2), "odd {x}");
    x
}

#[test]
fn worker_output_reaches_the_parents_stdout() {
    const CHILD: &str = "CHI_TEST_PRINT_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let pool = pool(1);
        assert_eq!(
            get(pool.submit(shout, "hello-from-a-task".to_string()).unwrap()),
            Ok(17)
        );
        return;
    }
    let run = proc::run_test_child("worker_output_reaches_the_parents_stdout", &[(CHILD, "1")]);
    assert!(run.success, "child failed: {}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("says hello-from-a-task"),
        "stdout: {}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("running 1 test\nrunning"),
        "the harness banner of workers is hidden"
    );
}

#[test]
fn submit_after_shutdown_hands_the_argument_back() {
    let pool = pool(1);
    pool.shutdown();
    assert!(pool.is_shut_down());
    let err = pool.submit(square, 5).unwrap_err();
    assert_eq!(err.into_inner(), 5);
}

#[test]
fn bounded_queue_try_submit_reports_full() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .queue_bound(1)
        .build()
        .unwrap();
    let h = Holder::new();
    let held = pool.submit(hold, h.arg()).unwrap();
    h.wait_started();
    // The worker's pipeline takes a little; fill it and the queue.
    let mut extra = Vec::new();
    let full = loop {
        match pool.try_submit(square, 2) {
            Ok(t) => extra.push(t),
            Err(e) => break e,
        }
        assert!(extra.len() < 100, "the queue never filled");
    };
    assert!(full.is_full());
    assert_eq!(full.into_inner(), 2);
    h.release();
    assert!(get(held).is_ok());
    for t in extra {
        assert_eq!(get(t), Ok(4));
    }
}

// ===== cancel =====

#[test]
fn cancel_queued_task_never_runs_and_kills_nothing() {
    let pool = pool(1);
    let h = Holder::new();
    let held = pool.submit(hold, h.arg()).unwrap();
    let pid = h.wait_started();
    let ran = temp_path("ran");
    // Sent to the busy worker's pipeline (or still queued): either way it has not started.
    let victim = pool.submit(touch, ran.display().to_string()).unwrap();
    assert!(victim.cancel());
    assert!(victim.cancelled());
    assert_eq!(get(victim), Err(TaskError::Cancelled));
    h.release();
    assert_eq!(get(held), Ok(pid), "the running task was not disturbed");
    assert_eq!(worker_pid(&pool), pid, "no worker was killed");
    assert!(!ran.exists(), "a cancelled task never runs");
    assert_eq!(pool.metrics().died, 0);
}

#[test]
fn cancel_running_task_kills_its_worker_and_pool_goes_on() {
    let pool = pool(1);
    let h = Holder::new();
    let t = pool.submit(hold, h.arg()).unwrap();
    let pid = h.wait_started();
    assert!(t.cancel(), "a running process task can be cancelled");
    assert_eq!(get(t), Err(TaskError::Cancelled));
    h.gone();
    poll_until("the cancelled task's worker to end", || !proc::alive(pid));
    assert_serves(&pool);
    assert_ne!(worker_pid(&pool), pid, "a new worker took over");
}

#[test]
fn cancel_finished_task_is_false() {
    let pool = pool(1);
    let t = pool.submit(square, 3).unwrap();
    t.wait_timeout(NEVER);
    assert!(!t.cancel());
    assert_eq!(get(t), Ok(9));
}

#[test]
fn shutdown_now_cancels_queued_tasks() {
    let pool = pool(1);
    let h = Holder::new();
    let held = pool.submit(hold, h.arg()).unwrap();
    h.wait_started();
    let queued: Vec<_> = (0..10u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    // shutdown_now waits for the running task; release it once the cancellations are done,
    // which shows as every queued task being finished.
    let n = std::thread::scope(|s| {
        s.spawn(|| {
            poll_until("the queued tasks to be cancelled", || {
                queued.iter().all(Task::done)
            });
            h.release();
        });
        pool.shutdown_now()
    });
    assert_eq!(n, 10);
    for t in queued {
        assert_eq!(get(t), Err(TaskError::Cancelled));
    }
    assert!(get(held).is_ok(), "the running task finished");
}

// ===== the fault matrix =====

/// Case 1: The argument does not encode in the parent: Codec at once, nothing sent.
#[test]
fn fault_argument_encode_fails_in_parent() {
    let pool = pool(1);
    assert_serves(&pool);
    let sent = pool.metrics().messages;
    let err = get(pool.submit(takes_unencodable, Unencodable).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string().starts_with("the argument did not encode"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.metrics().messages, sent, "nothing was sent");
    assert_serves(&pool);
}

/// Case 2: The argument does not decode in the worker: Codec for that task only.
#[test]
fn fault_argument_decode_fails_in_worker() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    let err = get(pool.submit(takes_undecodable, Undecodable).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .starts_with("the argument did not decode in the worker"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_serves(&pool);
    assert_eq!(worker_pid(&pool), before, "the worker survived");
}

/// Case 3: The task panics: Panicked with the message; the worker survives.
#[test]
fn fault_task_panics() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    assert_eq!(
        get(pool.submit(panics, 7).unwrap()),
        Err(TaskError::panicked("boom 7"))
    );
    assert_serves(&pool);
    assert_eq!(worker_pid(&pool), before, "the worker survived");
}

/// Case 4: The task calls `exit(3)`: WorkerDied with code 3; the worker is replaced.
#[test]
fn fault_task_exits() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    assert_eq!(
        get(pool.submit(exits, 3).unwrap()),
        Err(TaskError::WorkerDied(ExitReason::Code(3)))
    );
    assert_serves(&pool);
    assert_ne!(worker_pid(&pool), before, "the worker was replaced");
}

/// Case 5a: The task aborts: WorkerDied naming SIGABRT.
#[test]
fn fault_task_aborts() {
    let pool = pool(1);
    let err = get(pool.submit(aborts, ()).unwrap()).unwrap_err();
    assert_eq!(err, TaskError::WorkerDied(ExitReason::Signal(6)));
    assert!(err.to_string().contains("SIGABRT"), "{err}");
    assert_serves(&pool);
}

/// Case 5b: The task gets SIGSEGV: WorkerDied naming SIGSEGV.
#[test]
fn fault_task_segfaults() {
    let pool = pool(1);
    let err = get(pool.submit(segfaults, ()).unwrap()).unwrap_err();
    assert_eq!(err, TaskError::WorkerDied(ExitReason::Signal(11)));
    assert!(err.to_string().contains("SIGSEGV"), "{err}");
    assert_serves(&pool);
}

/// Case 6a: The result does not encode in the worker: Codec.
#[test]
fn fault_result_encode_fails_in_worker() {
    let pool = pool(1);
    let before = worker_pid(&pool);
    let err = get(pool.submit(returns_unencodable, ()).unwrap()).unwrap_err();
    assert!(matches!(err, TaskError::Codec(_)), "{err:?}");
    assert_serves(&pool);
    assert_eq!(worker_pid(&pool), before);
}

/// Case 6b: The result does not decode in the parent: Codec.
#[test]
fn fault_result_decode_fails_in_parent() {
    let pool = pool(1);
    let err = get(pool.submit(returns_undecodable, ()).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .starts_with("the result did not decode in the pool"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_serves(&pool);
}

/// Case 7a: An idle worker is SIGKILLed from outside (the OOM killer's way): it is replaced and
/// the next task is fine.
#[test]
fn fault_idle_worker_killed_from_outside() {
    let pool = pool(1);
    let victim = worker_pid(&pool);
    proc::kill(victim, "KILL");
    poll_until("a replacement worker", || {
        let pids = pool.worker_pids();
        !pids.is_empty() && !pids.contains(&victim)
    });
    assert_serves(&pool);
    assert_ne!(worker_pid(&pool), victim);
}

/// Case 7b: A busy worker is SIGKILLed: its task gets WorkerDied(SIGKILL).
#[test]
fn fault_busy_worker_killed_from_outside() {
    let pool = pool(1);
    let h = Holder::new();
    let t = pool.submit(hold, h.arg()).unwrap();
    let victim = h.wait_started();
    proc::kill(victim, "KILL");
    assert_eq!(get(t), Err(TaskError::WorkerDied(ExitReason::Signal(9))));
    h.gone();
    assert_serves(&pool);
}

/// Case 8a: A 16 MiB argument and a 16 MiB result cross intact.
#[test]
fn fault_big_argument_and_result_round_trip() {
    let pool = pool(1);
    let big = pattern(16 << 20, 3);
    let mut want = big.clone();
    want.0.reverse();
    assert_eq!(get(pool.submit(reverse, big).unwrap()), Ok(want));
    let made = get(pool.submit(make_blob, 16 << 20).unwrap()).unwrap();
    assert_eq!(made, pattern(16 << 20, 7));
    assert_serves(&pool);
}

/// Case 8b: A worker that crashes in the middle of writing a big result fails only that task.
#[test]
fn fault_crash_while_writing_big_result() {
    let pool = pool(2);
    let others: Vec<_> = (0..8u64).map(|i| pool.submit(square, i).unwrap()).collect();
    let err = get(pool.submit(dies_mid_result, ()).unwrap()).unwrap_err();
    assert_eq!(err, TaskError::WorkerDied(ExitReason::Signal(6)));
    for (i, t) in others.into_iter().enumerate() {
        assert_eq!(get(t), Ok((i * i) as u64));
    }
    assert_serves(&pool);
}

/// A message over the size limit fails with a Codec error that says so, both ways.
#[test]
fn fault_message_over_size_limit() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .max_message_size(64 << 10)
        .build()
        .unwrap();
    let err = get(pool.submit(reverse, pattern(100 << 10, 1)).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .contains("over the pool's maximum message size of 65536 bytes"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let err = get(pool.submit(make_blob, 100 << 10).unwrap()).unwrap_err();
    match &err {
        TaskError::Codec(m) => assert!(
            m.to_string()
                .contains("over the pool's maximum message size"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_serves(&pool);
}

/// Case 9: A task past the timeout gets TimedOut; its worker is killed and replaced; other tasks
/// are unaffected.
#[test]
fn fault_task_timeout() {
    let limit = Duration::from_millis(300);
    let pool = ProcessPool::builder()
        .max_workers(2)
        .task_timeout(limit)
        .build()
        .unwrap();
    let h = Holder::new();
    let stuck = pool.submit(hold, h.arg()).unwrap();
    let others: Vec<_> = (0..20u64)
        .map(|i| pool.submit(square, i).unwrap())
        .collect();
    let victim = h.wait_started();
    assert_eq!(get(stuck), Err(TaskError::TimedOut(limit)));
    h.gone();
    for (i, t) in others.into_iter().enumerate() {
        assert_eq!(get(t), Ok((i * i) as u64), "other tasks are unaffected");
    }
    poll_until("the timed-out worker to end", || !proc::alive(victim));
    assert_serves(&pool);
}

/// Case 9b: a per-task timeout stands next to the pool-wide one: the shorter own limit kills its
/// task with its own figure, a task without one keeps the pool's, and a pool without a limit
/// still enforces a task's own.
#[test]
fn fault_per_task_timeout_beside_pool_timeout() {
    let pool_limit = Duration::from_secs(3600);
    let own = Duration::from_millis(200);
    let pool = ProcessPool::builder()
        .max_workers(2)
        .task_timeout(pool_limit)
        .build()
        .unwrap();
    let h = Holder::new();
    let stuck = pool.submit_with_timeout(hold, h.arg(), own).unwrap();
    let victim = h.wait_started();
    assert_eq!(get(stuck), Err(TaskError::TimedOut(own)));
    h.gone();
    poll_until("the timed-out worker to end", || !proc::alive(victim));
    let quick = pool
        .submit_with_timeout(square, 12, Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        get(quick),
        Ok(144),
        "a task within its own limit is unaffected"
    );
    assert_serves(&pool);

    let unlimited = ProcessPool::new(1).unwrap();
    let h = Holder::new();
    let stuck = unlimited.submit_with_timeout(hold, h.arg(), own).unwrap();
    h.wait_started();
    assert_eq!(get(stuck), Err(TaskError::TimedOut(own)));
    h.gone();
    assert_eq!(
        unlimited
            .submit_with_timeout(square, 3, Duration::ZERO)
            .unwrap()
            .result(),
        Err(TaskError::TimedOut(Duration::ZERO)),
        "a zero limit ends the task at once"
    );
    assert_serves(&unlimited);
}

/// Case 10: `max_tasks_per_worker = 1` over 200 tasks: all complete, no deadlock, every task on a
/// fresh process.
#[test]
fn fault_max_tasks_per_worker_one() {
    let pool = ProcessPool::builder()
        .max_workers(2)
        .max_tasks_per_worker(1)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..200).map(|_| pool.submit(pid, ()).unwrap()).collect();
    let pids: std::collections::HashSet<u32> = tasks.into_iter().map(|t| get(t).unwrap()).collect();
    assert_eq!(pids.len(), 200, "each task ran in its own worker process");
    let v: Vec<u64> = pool
        .map(square, 0..10u64)
        .chunksize(3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(v[9], 81);
}

/// Case 11a: An initializer that panics: a clear error on the tasks, no hang, no spawn storm.
#[test]
fn fault_initializer_panics() {
    let pool = ProcessPool::builder()
        .max_workers(2)
        .initializer(setup_panics, "no config".to_string())
        .build()
        .unwrap();
    for _ in 0..3 {
        match get(pool.submit(square, 2).unwrap()) {
            Err(TaskError::PoolFailed(m)) => {
                assert!(
                    m.to_string().contains("initializer panicked: no config"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let m = pool.metrics();
    assert!(m.start_failures >= 1);
    // Three failed rounds on two workers with the back-off: a handful of starts, where a
    // storm would be hundreds.
    assert!(m.spawned <= 24, "spawn storm: {m:?}");
}

/// Case 11b: An initializer that exits: a clear error naming the exit code.
#[test]
fn fault_initializer_exits() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .initializer(setup_exits, 5)
        .build()
        .unwrap();
    match get(pool.submit(square, 2).unwrap()) {
        Err(TaskError::PoolFailed(m)) => assert!(m.to_string().contains("exit code 5"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn initializer_runs_in_every_worker() {
    let pool = ProcessPool::builder()
        .max_workers(2)
        .initializer(setup_ok, 77)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| pool.submit(read_init_value, ()).unwrap())
        .collect();
    for t in tasks {
        assert_eq!(get(t), Ok(Some(77)));
    }
}

/// A worker of a different build is refused with a clear error, never run.
#[test]
fn fault_build_mismatch_is_refused() {
    let pool = ProcessPool::builder()
        .max_workers(1)
        .env("CHI_PROCESS_POOL_FINGERPRINT_SALT", "other build")
        .build()
        .unwrap();
    match get(pool.submit(square, 2).unwrap()) {
        Err(TaskError::PoolFailed(m)) => assert!(m.to_string().contains("different build"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Case 12a: Shutdown while workers are crashing returns, and every task has an outcome.
#[test]
fn fault_shutdown_while_workers_crash() {
    let pool = pool(2);
    let mut tasks = Vec::new();
    for i in 0..12 {
        tasks.push(if i % 3 == 0 {
            pool.submit(exits, 1).unwrap()
        } else {
            pool.submit(pid, ()).unwrap()
        });
    }
    let pool = std::sync::Arc::new(pool);
    let p = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        p.shutdown();
        let _ = tx.send(());
    });
    rx.recv_timeout(NEVER).expect("shutdown returned");
    for (i, t) in tasks.into_iter().enumerate() {
        match get(t) {
            Ok(_) => assert!(i % 3 != 0),
            Err(TaskError::WorkerDied(ExitReason::Code(1))) => assert!(i % 3 == 0),
            other => panic!("task {i}: {other:?}"),
        }
    }
    assert!(pool.worker_pids().is_empty());
}

/// Case 12b: Dropping the pool while tasks run waits for them and ends every worker.
#[test]
fn fault_drop_while_tasks_run() {
    let pool = pool(2);
    let tasks: Vec<_> = (0..6)
        .map(|_| pool.submit(sleeps_ms, 20).unwrap())
        .collect();
    let pids = pool.worker_pids();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pool);
        let _ = tx.send(());
    });
    rx.recv_timeout(NEVER).expect("drop returned");
    for t in tasks {
        assert_eq!(get(t), Ok(20));
    }
    for p in pids {
        assert!(!proc::alive(p), "worker {p} outlived its pool");
        assert_ne!(
            proc::ppid(p),
            Some(std::process::id()),
            "worker {p} was not reaped"
        );
    }
}

/// 12c. The pool's process is killed: every worker exits (parent-death signal, EOF).
#[test]
fn fault_parent_killed_ends_every_worker() {
    const OWNER: &str = "CHI_TEST_POOL_OWNER";
    if std::env::var_os(OWNER).is_some() {
        let pool = pool(2);
        poll_until("both workers up", || pool.worker_pids().len() == 2);
        println!("PIDS {:?}", pool.worker_pids());
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        loop {
            std::thread::park();
        }
    }
    /// Kills the owner process on every path, so a failing assertion leaks nothing.
    struct Owner(std::process::Child);
    impl Drop for Owner {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut owner = Owner(
        std::process::Command::new(exe)
            .args([
                "fault_parent_killed_ends_every_worker",
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(OWNER, "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = owner.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            // The harness prints "test <name> ... " without a newline before the test's output.
            if let Some(at) = line.find("PIDS ") {
                let _ = tx.send(line[at + 5..].to_string());
            }
        }
    });
    let line = rx.recv_timeout(NEVER).expect("the owner's worker pids");
    let pids: Vec<u32> = line
        .trim()
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|s| s.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 2);
    drop(owner); // SIGKILL: no destructor, no shutdown, nothing of chi's runs in it
    for p in pids {
        poll_until(&format!("orphaned worker {p} to exit"), || !proc::alive(p));
    }
}

/// Case 13: After drop: no zombie or live children, no leaked descriptors, and the pool's sockets
/// are close-on-exec in the parent and in the worker. Alone in its process, so that counts
/// are exact.
#[test]
fn fault_drop_leaves_no_zombies_or_descriptors() {
    const ALONE: &str = "CHI_TEST_PP_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let run = proc::run_test_child(
            "fault_drop_leaves_no_zombies_or_descriptors",
            &[(ALONE, "1")],
        );
        assert!(
            run.success,
            "alone run failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        return;
    }
    let me = std::process::id();
    let fds_before = proc::open_fds();
    {
        let pool = ProcessPool::builder()
            .max_workers(2)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        assert_serves(&pool);
        poll_until("both workers up", || pool.worker_pids().len() == 2);
        // The pool's sockets in this process are close-on-exec...
        let sockets: Vec<i32> = proc::open_fds()
            .into_iter()
            .filter(|(_, t)| t.starts_with("socket:"))
            .map(|(fd, _)| fd)
            .collect();
        assert!(sockets.len() >= 2, "{sockets:?}");
        for fd in sockets {
            assert!(
                proc::cloexec(fd),
                "parent socket fd {fd} is not close-on-exec"
            );
        }
        // ...and so is the worker's end, once the worker runs.
        let flags = get(pool.submit(worker_socket_flags, ()).unwrap()).unwrap();
        assert!(!flags.is_empty());
        assert!(flags.iter().all(|&(_, c)| c), "worker sockets: {flags:?}");
        // Crashes, a timeout, recycling: every path that replaces a worker.
        assert!(get(pool.submit(exits, 2).unwrap()).is_err());
        assert!(get(pool.submit(aborts, ()).unwrap()).is_err());
        let h = Holder::new();
        assert!(matches!(
            get(pool.submit(hold, h.arg()).unwrap()),
            Err(TaskError::TimedOut(_))
        ));
        h.gone();
        assert_serves(&pool);
        assert!(!proc::children_of(me).is_empty());
    }
    let left = proc::children_of(me);
    assert!(
        left.is_empty(),
        "children after drop (zombies are 'Z'): {left:?}"
    );
    assert_eq!(proc::open_fds(), fds_before, "descriptors leaked");
}
