//! Helpers shared by chi's integration tests.
//!
//! - [`DropCounter`]: counts drops of the values it tracks, to prove each closure and each
//!   result is dropped exactly once on every path (habit 40).
//! - [`DropPanics`]: a value whose `Drop` panics, for the paths where chi drops user values.
//! - Waits with a bound: [`recv`], [`poll_until`] and [`bounded`] turn a hang into a test
//!   failure with a message. Their bounds are huge and must never fire on a correct chi
//!   (habit 39); nothing here sleeps to synchronise, and no test asserts on a duration.
//! - [`Gate`]: holds tasks running until the test opens it, built on channels. Dropping the
//!   gate opens it, so a failing assertion never leaves a pool blocked on a held task (declare
//!   the gate *after* the pool, so it is dropped first).
//! - `/proc` views of this process's threads ([`threads_named`]), and [`run_alone`], which
//!   reruns one test in a fresh copy of the test binary for process-wide checks (thread lists,
//!   stack overflow) that tests running in parallel would disturb (habit 36).
#![allow(dead_code)] // each test binary uses a subset

use std::fmt;
use std::io::Read;
use std::panic;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A bound that must never be reached: a wait that takes this long is a hang.
pub(crate) const NEVER: Duration = Duration::from_secs(60);

/// The overall deadline of a polling loop (a state that must be reached eventually).
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Loop counts for stress cases, scaled down under slow checkers (habit 44).
pub(crate) const fn scaled(n: usize) -> usize {
    if cfg!(any(miri, chi_loom, chi_test_delay)) {
        if n / 10 == 0 { 1 } else { n / 10 }
    } else {
        n
    }
}

// ===== DropCounter =====

/// Counts how many of the values it tracks were dropped. Clones share the count.
#[derive(Clone, Default)]
pub(crate) struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Wraps `value`; dropping the wrapper adds one to this counter.
    pub(crate) fn track<T>(&self, value: T) -> Counted<T> {
        Counted {
            value,
            counter: self.clone(),
        }
    }

    /// Drops so far.
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for DropCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DropCounter({})", self.count())
    }
}

/// A value whose drop is counted by the [`DropCounter`] that made it.
pub(crate) struct Counted<T> {
    value: T,
    counter: DropCounter,
}

impl<T> Counted<T> {
    pub(crate) fn get(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Counted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Counted").field(&self.value).finish()
    }
}

impl<T: PartialEq> PartialEq for Counted<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.counter.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ===== DropPanics =====

/// A value whose `Drop` panics (after counting the drop in its [`DropCounter`]), to prove
/// that chi survives user values that panic when it drops them. It crosses to process-pool
/// workers too: the counter stays behind, and a decoded copy is always armed. A thread that
/// is already unwinding only counts the drop: a second panic would abort the test binary.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct DropPanics {
    #[serde(skip)]
    counter: DropCounter,
    #[serde(skip, default = "armed")]
    armed: bool,
}

fn armed() -> bool {
    true
}

impl DropPanics {
    /// A value that counts its drop in `counter`, then panics.
    pub(crate) fn new(counter: &DropCounter) -> Self {
        DropPanics {
            counter: counter.clone(),
            armed: true,
        }
    }

    /// A value that drops quietly here but whose decoded copies panic (a process-pool task
    /// returns one: the worker drops it after encoding it, the pool decodes an armed copy).
    pub(crate) fn disarmed() -> Self {
        DropPanics::default()
    }
}

impl fmt::Debug for DropPanics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DropPanics")
    }
}

impl Drop for DropPanics {
    fn drop(&mut self) {
        self.counter.0.fetch_add(1, Ordering::SeqCst);
        if self.armed && !thread::panicking() {
            panic!("DropPanics: a value whose Drop panics was dropped");
        }
    }
}

// ===== huge durations and refused settings =====

/// Durations no deadline can be computed for, and one the clock can still add: a run-time
/// timeout of any of them means "wait forever"; a builder refuses them all.
pub(crate) const HUGE: [Duration; 3] = [
    Duration::MAX,
    Duration::from_secs(u64::MAX),
    Duration::from_secs(1 << 62),
];

/// The message of a builder's `Invalid` error; fails the test on anything else.
#[track_caller]
pub(crate) fn invalid_setting<P>(built: Result<P, chi::BuildError>) -> String {
    match built {
        Ok(_) => panic!("expected an Invalid build error, the pool was built"),
        Err(e) => match e.kind() {
            chi::BuildErrorKind::Invalid(msg) => msg.clone(),
            other => panic!("expected an Invalid build error, got {other:?}"),
        },
    }
}

// ===== waits with a bound =====

/// Receives one message, failing the test (not hanging it) if none comes within [`NEVER`].
#[track_caller]
pub(crate) fn recv<T>(rx: &Receiver<T>, what: &str) -> T {
    match rx.recv_timeout(NEVER) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("hang: no {what} within {NEVER:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("no {what}: every sender was dropped"),
    }
}

/// Polls `cond` until it holds, failing the test after [`DEADLINE`]. The pause between polls
/// only spares the CPU; nothing is asserted about how long the state took to appear.
#[track_caller]
pub(crate) fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Like [`poll_until`], for a state read by `probe`: returns the first state that `ok`
/// accepts, and names the last state seen when none is accepted before [`DEADLINE`].
#[track_caller]
pub(crate) fn poll_state<T: fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let state = probe();
        if ok(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {DEADLINE:?}; last state {state:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on a helper thread and returns its value, failing the test if it does not finish
/// within [`NEVER`] (a hang in chi becomes a failure with a message instead of a stuck run).
/// A panic in `f` is re-raised here.
#[track_caller]
pub(crate) fn bounded<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let helper = thread::Builder::new()
        .name("bounded".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a helper thread");
    match rx.recv_timeout(NEVER) {
        Ok(v) => {
            let _ = helper.join();
            v
        }
        Err(RecvTimeoutError::Timeout) => panic!("hang: {what} did not finish within {NEVER:?}"),
        Err(RecvTimeoutError::Disconnected) => match helper.join() {
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => unreachable!("the helper sends before it returns"),
        },
    }
}

// ===== Gate =====

/// Holds tasks running until [`open`](Gate::open) (or until the gate is dropped).
///
/// Each held closure first reports that it started (see [`wait_started`](Gate::wait_started)),
/// then blocks on a channel of its own whose sender the gate keeps; opening drops every sender.
pub(crate) struct Gate {
    inner: Arc<GateInner>,
    /// In a mutex only so that a `&Gate` can be shared with helper threads.
    started: Mutex<Receiver<()>>,
}

struct GateInner {
    state: Mutex<GateState>,
    started: Sender<()>,
}

#[derive(Default)]
struct GateState {
    open: bool,
    held: Vec<Sender<()>>,
}

/// A clonable way to wait at a [`Gate`], for closures that are `Fn` (such as `map`'s).
#[derive(Clone)]
pub(crate) struct GateHandle(Arc<GateInner>);

impl Gate {
    pub(crate) fn new() -> Self {
        let (started_tx, started) = mpsc::channel();
        Gate {
            inner: Arc::new(GateInner {
                state: Mutex::default(),
                started: started_tx,
            }),
            started: Mutex::new(started),
        }
    }

    pub(crate) fn handle(&self) -> GateHandle {
        GateHandle(self.inner.clone())
    }

    /// A closure that reports it started, then waits for the gate.
    pub(crate) fn hold(&self) -> impl FnOnce() + Send + 'static {
        let h = self.handle();
        move || h.wait()
    }

    /// A closure that waits for the gate, then returns `f()`.
    pub(crate) fn hold_then<T>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl FnOnce() -> T + Send + 'static {
        let h = self.handle();
        move || {
            h.wait();
            f()
        }
    }

    /// Waits until `n` more held closures have started.
    #[track_caller]
    pub(crate) fn wait_started(&self, n: usize) {
        let started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..n {
            recv(&started, "held task start");
        }
    }

    /// Releases every held closure, now and later.
    pub(crate) fn open(&self) {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.open = true;
        s.held.clear();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl GateHandle {
    /// Reports a start, then blocks until the gate opens (at most [`NEVER`]).
    pub(crate) fn wait(&self) {
        let rx = {
            let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self.0.started.send(());
            if s.open {
                return;
            }
            let (tx, rx) = mpsc::channel::<()>();
            s.held.push(tx);
            rx
        };
        // Opening drops the sender: `Disconnected`. Nothing is ever sent.
        let _ = rx.recv_timeout(NEVER);
    }
}

// ===== tasks in a given state =====

/// Occupies `n` workers of `pool` with tasks held at `gate`, submitting each one only after
/// the previous one runs. Every submit then finds all workers busy, so the pool must start a
/// thread for it (a burst of submits can instead be taken by one idle worker; the tests of
/// bursts say so by name).
pub(crate) fn hold_workers(pool: &chi::ThreadPool, gate: &Gate, n: usize) -> Vec<chi::Task<()>> {
    (0..n)
        .map(|_| {
            let t = pool.submit(gate.hold()).expect("the pool accepts work");
            gate.wait_started(1);
            t
        })
        .collect()
}

/// A task that has already finished with whatever `f` gives (a value or a panic). It ran on a
/// throwaway pool of one, which is shut down before this returns.
pub(crate) fn finished<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> chi::Task<T> {
    let pool = chi::ThreadPool::new(1).expect("a pool of one");
    let task = pool.submit(f).expect("a fresh pool accepts work");
    task.wait();
    task
}

/// A task that was cancelled before it ran (its closure would have given `T`).
pub(crate) fn cancelled<T: Send + 'static>() -> chi::Task<T> {
    let pool = chi::ThreadPool::new(1).expect("a pool of one");
    let gate = Gate::new();
    let held = pool.submit(gate.hold()).expect("a fresh pool accepts work");
    gate.wait_started(1);
    let task = pool
        .submit(|| -> T { unreachable!("a cancelled task never runs") })
        .expect("a fresh pool accepts work");
    assert!(task.cancel(), "a queued task can be cancelled");
    gate.open();
    held.wait();
    task
}

// ===== threads of this process =====

/// One thread of this process, as `/proc/self/task` shows it.
#[derive(Debug, Clone)]
pub(crate) struct ThreadInfo {
    pub(crate) tid: u32,
    /// The name (`comm`, at most 15 bytes).
    pub(crate) name: String,
    /// The scheduler state letter: `R` running, `S` sleeping, `D` disk wait, ...
    pub(crate) state: char,
}

/// The threads of this process whose name starts with `prefix`.
pub(crate) fn threads_named(prefix: &str) -> Vec<ThreadInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may exit between the listing and the reads: skip it.
        let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let name = name.trim_end_matches('\n').to_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let Some(state) = thread_state(tid) else {
            continue;
        };
        out.push(ThreadInfo { tid, name, state });
    }
    out
}

/// The scheduler state of thread `tid` of this process, if it still exists.
pub(crate) fn thread_state(tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // "tid (comm) S ...": the name may hold spaces and parentheses, so split at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Waits until exactly `n` threads named `prefix...` exist and all of them are asleep in the
/// kernel (`S`) in 20 samples in a row: a thread may look asleep for an instant while it
/// blocks on a lock, but an idle pool worker parked on its condition variable stays asleep.
#[track_caller]
pub(crate) fn wait_all_asleep(prefix: &str, n: usize) {
    let mut in_a_row = 0;
    poll_until(
        &format!("{n} `{prefix}` threads asleep in 20 samples in a row"),
        || {
            let threads = threads_named(prefix);
            assert!(
                threads.len() <= n,
                "more `{prefix}` threads than expected: {threads:?}"
            );
            if threads.len() == n && threads.iter().all(|t| t.state == 'S') {
                in_a_row += 1;
            } else {
                in_a_row = 0;
            }
            in_a_row >= 20
        },
    );
}

/// The kernel thread id of the calling thread.
pub(crate) fn current_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("a numeric tid")
}

// ===== running one test alone =====

const ALONE_ENV: &str = "CHI_TEST_ALONE";

/// Runs the test named `name` (its full path inside the test binary, such as
/// `shutdown::drop_leaves_no_worker_thread`) alone in a fresh copy of this test binary, and
/// fails unless it passed there. Returns `true` in the parent, which should return at once,
/// and `false` in the child, which should run the test's body.
///
/// ```ignore
/// #[test]
/// fn drop_leaves_no_worker_thread() {
///     if common::run_alone("shutdown::drop_leaves_no_worker_thread") {
///         return;
///     }
///     // ... the body, alone in its process
/// }
/// ```
#[track_caller]
pub(crate) fn run_alone(name: &str) -> bool {
    if std::env::var(ALONE_ENV).is_ok_and(|v| v == name) {
        return false;
    }
    let run = run_test_child(name, &[(ALONE_ENV, name)]);
    assert!(
        run.success && run.stdout.contains("1 passed"),
        "`{name}` failed when run alone\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
    true
}

/// Output of a child run of this test binary.
#[derive(Debug)]
pub(crate) struct ChildRun {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs the test `name` of this binary alone in a child process with `env` set, and returns
/// its exit and output; kills it and fails the test if it takes longer than [`NEVER`].
#[track_caller]
pub(crate) fn run_test_child(name: &str, env: &[(&str, &str)]) -> ChildRun {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--test-threads=1", "--nocapture"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the test binary again");
    // Both pipes are read to the end on their own threads, so neither can fill and stall it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + NEVER;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "hang: child run of `{name}` did not end within {NEVER:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    };
    ChildRun {
        success: status.success(),
        stdout,
        stderr,
    }
}
