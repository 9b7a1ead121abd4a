//! Sizes and auto traits of chi's public types, pinned so that a change is a visible decision
//! (habit 26). When a size changes on purpose, update the number and its comment.

use chi::thread_pool::{Scope, ScopedTask};
use chi::{
    AsCompleted, BuildError, ExitReason, ResultTimeoutError, ReturnWhen, SubmitError,
    SubmitTimeoutError, Task, TaskError, ThreadPool, ThreadPoolBuilder, TrySubmitError,
    WaitTimeout,
};
use std::mem::size_of;

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_unpin<T: Unpin>() {}
fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}

const PTR: usize = size_of::<usize>();

// ===== auto traits =====

#[test]
fn task_is_send_sync_unpin() {
    assert_send::<Task<u64>>();
    assert_sync::<Task<u64>>();
    assert_unpin::<Task<u64>>();
    // Also for a value that is Send but not Sync: the handle only moves it.
    assert_send::<Task<std::cell::Cell<u8>>>();
    assert_unpin::<Task<std::cell::Cell<u8>>>();
}

#[test]
fn thread_pool_is_send_sync() {
    assert_send::<ThreadPool>();
    assert_sync::<ThreadPool>();
    assert_send::<ThreadPoolBuilder>();
    assert_sync::<ThreadPoolBuilder>();
}

#[test]
fn scope_types_are_send() {
    assert_sync::<Scope<'static, 'static>>();
    assert_send::<ScopedTask<'static, u64>>();
}

#[test]
fn bulk_iterators_are_send() {
    assert_send::<AsCompleted<u64>>();
}

#[test]
fn errors_are_std_errors() {
    assert_error::<TaskError>();
    assert_error::<BuildError>();
    assert_error::<WaitTimeout>();
    assert_error::<SubmitError<fn() -> u8>>();
    assert_error::<TrySubmitError<fn() -> u8>>();
    assert_error::<SubmitTimeoutError<fn() -> u8>>();
    assert_error::<ResultTimeoutError<u64>>();
}

// ===== sizes =====

/// Two words: the handle is an `Arc<dyn TaskCell<T>>` (a data pointer and a vtable pointer).
/// The design's goal is one pointer; this pins today's layout so that reaching it (or growing
/// further) is noticed.
#[test]
fn task_size_pinned() {
    assert_eq!(size_of::<Task<u64>>(), 2 * PTR);
    // The value lives in the shared allocation, never in the handle.
    assert_eq!(size_of::<Task<[u8; 1024]>>(), size_of::<Task<u64>>());
    // `Option<Task<_>>` costs nothing extra (the pointer's niche).
    assert_eq!(size_of::<Option<Task<u64>>>(), size_of::<Task<u64>>());
}

/// Four words: the largest variant holds a `String` (three words), plus the discriminant.
/// Small enough to return by value in `Result<T, TaskError>` on every path.
#[test]
fn task_error_small() {
    assert!(size_of::<TaskError>() <= 32);
    assert_eq!(size_of::<TaskError>(), 4 * PTR);
    assert_eq!(size_of::<Result<u64, TaskError>>(), size_of::<TaskError>());
    assert_eq!(size_of::<ExitReason>(), 8);
    assert_eq!(size_of::<WaitTimeout>(), PTR);
}

/// One `Arc` to the shared pool state.
#[test]
fn thread_pool_one_pointer() {
    assert_eq!(size_of::<ThreadPool>(), PTR);
}

/// Refusals hand the work back without wrapping it in anything bigger than a tag.
#[test]
fn submit_errors_carry_only_the_work() {
    assert_eq!(size_of::<SubmitError<[u8; 40]>>(), 40);
    assert!(size_of::<TrySubmitError<[u8; 40]>>() <= 41);
    assert!(size_of::<SubmitTimeoutError<[u8; 40]>>() <= 41);
    assert_eq!(size_of::<ResultTimeoutError<u64>>(), size_of::<TaskError>());
}

#[test]
fn small_value_types_pinned() {
    assert_eq!(size_of::<ReturnWhen>(), 1);
    assert_eq!(size_of::<chi::thread_pool::Metrics>(), 5 * 8);
}
