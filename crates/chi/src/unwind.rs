//! Running user code under `catch_unwind`, and turning a panic payload into a message.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The message of a panic payload: the `&str` or `String` it carried, or a placeholder.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any> (a panic payload that is not a string)".to_owned()
    }
}

/// Runs `f`, handing back a panic's payload as it was raised.
pub(crate) fn catch_payload<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    catch_unwind(AssertUnwindSafe(f))
}

/// Runs `f`, turning a panic into its message.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| payload_message(&*p))
}

/// Drops `value`, catching a panic from its `Drop` and logging it. chi calls this wherever
/// it drops a user-provided value itself (a closure it will never run, a result nobody holds a
/// handle to, a callback that never ran, an argument after encoding it), so a panicking
/// `Drop` cannot escape into `cancel`, `shutdown_now`, a worker or a supervisor thread.
pub(crate) fn drop_caught<V>(value: V) {
    if let Err(msg) = catch(move || drop(value)) {
        tracing::error!(panic = %msg, "dropping a task's closure, result or callback panicked");
    }
}

/// Aborts the process if dropped while panicking: guards internal invariants that a panic
/// would leave half-written (never user code, which always runs under [`catch`]).
pub(crate) struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("chi: internal invariant broken by a panic; aborting");
            std::process::abort();
        }
    }
}
