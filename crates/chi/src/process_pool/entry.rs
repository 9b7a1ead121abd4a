//! The worker entry: how a re-started copy of the program becomes a worker.
//!
//! The pool starts `std::env::current_exe()` with the marker variable [`MARKER`] set to
//! `v2:<parent pid>:<socket fd>:<ring fd>:<stdout fd>:<bell fd>:<slots>` (a [`Marker`]), with standard input from
//! `/dev/null`, standard output sent to `/dev/null` until the worker restores the real one
//! (so a test harness's "running 1 test" banner is not printed once per worker), and these
//! arguments, which a test binary's harness reads as "run only the hidden entry test":
//!
//! ```text
//! __chi_process_pool_worker_entry --test-threads=1 --nocapture -q
//! ```
//!
//! A program's `main` that begins with [`init`](super::init) never looks at them: `init` sees
//! the marker and never returns. A test binary runs the hidden test that
//! [`process_pool_test_entry!`](crate::process_pool_test_entry) defines, which calls `init`.
//! A program that has neither ends up running its `main` with those arguments; most argument
//! parsers reject them and exit, and the pool reports a start-up error that names the fix.
//!
//! `init` checks that its parent process is the one named in the marker, so a task that
//! starts the same program again (which inherits the variable) does not become a worker.

use super::protocol::Marker;
use super::sys::process::parent_pid;
use super::worker;

/// The environment variable that marks a process as a pool worker.
pub(crate) const MARKER: &str = "CHI_PROCESS_POOL_WORKER";

/// The name of the hidden test in test binaries.
pub(crate) const TEST_ENTRY: &str = "__chi_process_pool_worker_entry";

/// The arguments a worker is started with (see the module docs).
pub(crate) const WORKER_ARGS: [&str; 4] = [TEST_ENTRY, "--test-threads=1", "--nocapture", "-q"];

/// The marker, if this process is a worker whose parent is still the pool that started it.
fn marker() -> Option<Marker> {
    let m = Marker::parse(&std::env::var(MARKER).ok()?)?;
    (m.parent == parent_pid()).then_some(m)
}

/// Set once this process runs the worker loop: tasks that build pools of their own are fine.
static WORKER_LOOP: std::sync::OnceLock<()> = std::sync::OnceLock::new();

/// Exit code of a process that was started as a worker but whose `main` did not call `init()`
/// and went on to build a pool.
const EXIT_NO_INIT: i32 = 85;

/// Called before a pool is built: a process started as a worker whose `main` skipped `init()`
/// must not start workers of its own (each would do the same: a process explosion). It exits
/// at once, saying why; its pool reports the failed start.
pub(crate) fn refuse_pool_in_uninitialised_worker() {
    if WORKER_LOOP.get().is_none() && marker().is_some() {
        eprintln!(
            "chi: this process was started as a process-pool worker, but main() did not call \
             chi::process_pool::init() first (in a test binary: chi::process_pool_test_entry!()); \
             exiting instead of starting workers of its own"
        );
        std::process::exit(EXIT_NO_INIT);
    }
}

/// True if this process was started as a process-pool worker (and [`init`] would turn it
/// into one).
pub fn is_worker() -> bool {
    marker().is_some()
}

/// Turns this process into a pool worker if it was started as one; otherwise returns at once.
///
/// Call it first thing in `main`, before anything else runs (threads, argument parsing,
/// output): in a worker it never returns, and it exits the process when the pool is done
/// with it.
///
/// ```rust,standalone_crate
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     chi::process_pool::init(); // a worker stops here
///     let pool = chi::ProcessPool::new(2).unwrap();
///     assert_eq!(pool.submit(square, 7).unwrap().result(), Ok(49));
/// }
/// ```
pub fn init() {
    if let Some(m) = marker() {
        let _ = WORKER_LOOP.set(());
        worker::run(m)
    }
}

/// Defines the hidden test a `cargo test` binary's workers start on. Put it once at the top
/// level of every test file (integration test, or the crate's unit tests) that uses a
/// [`ProcessPool`](crate::ProcessPool):
///
/// ```no_run
/// chi::process_pool_test_entry!();
///
/// fn double(x: i32) -> i32 {
///     2 * x
/// }
///
/// #[test]
/// fn doubles_in_a_worker() {
///     let pool = chi::ProcessPool::new(1).unwrap();
///     assert_eq!(pool.submit(double, 21).unwrap().result(), Ok(42));
/// }
/// ```
///
/// In a normal test run the hidden test does nothing and passes. A worker is the test binary
/// started again with a filter that selects only this test, which then becomes the worker.
#[macro_export]
macro_rules! process_pool_test_entry {
    () => {
        #[test]
        #[doc(hidden)]
        fn __chi_process_pool_worker_entry() {
            $crate::process_pool::init();
        }
    };
}
