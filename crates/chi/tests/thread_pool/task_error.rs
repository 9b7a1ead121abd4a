//! TaskError.

use super::*;

#[test]
fn panicked_exposes_message() {
    let pool = ThreadPool::new(1).unwrap();
    let err = pool
        .submit(|| -> u8 { panic!("boom {}", 42) })
        .unwrap()
        .result()
        .unwrap_err();
    assert_eq!(err, TaskError::panicked("boom 42"));
    assert!(err.is_panic() && !err.is_cancelled());
    assert_eq!(err.panic_message(), Some("boom 42"));
    assert_eq!(err.to_string(), "task panicked: boom 42");
    // The payload itself, as std raised it (a `&str` or a `String`, by how the message
    // was formatted).
    let payload = err.into_panic().unwrap();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    assert_eq!(text, Some("boom 42"));
}

#[test]
fn panicked_non_string_payload_still_panic() {
    let pool = ThreadPool::new(1).unwrap();
    let err = pool
        .submit(|| -> u8 { std::panic::panic_any(17u32) })
        .unwrap()
        .result()
        .unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    assert!(err.panic_message().is_some());
    // The original payload survives, for `resume_unwind`; a clone taken before gets the
    // message instead, never the payload twice.
    let copy = err.clone();
    let payload = err.into_panic().unwrap();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&17));
    assert!(copy.into_panic().unwrap().downcast_ref::<u32>().is_none());
}

/// The payload round-trips through `resume_unwind`: a `catch_unwind` around it sees the
/// task's own value.
#[test]
fn panicked_payload_round_trips_through_resume_unwind() {
    let pool = ThreadPool::new(1).unwrap();
    let err = pool
        .submit(|| -> u8 { std::panic::panic_any(("tuple", 5u64)) })
        .unwrap()
        .result()
        .unwrap_err();
    let raised = err.into_panic().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        std::panic::resume_unwind(raised)
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<(&str, u64)>(), Some(&("tuple", 5)));
}

/// Errors that wrap a cause expose it through `source()`: a process-pool codec failure
/// carries the codec's own error.
#[test]
fn pool_failed_and_codec_expose_source() {
    use std::error::Error as _;
    let io = std::io::Error::other("disk gone");
    let err = TaskError::Codec(chi::Cause::with_source("the argument did not encode", io));
    let cause = err.source().expect("Codec has a source");
    assert_eq!(cause.to_string(), "the argument did not encode: disk gone");
    assert_eq!(cause.source().unwrap().to_string(), "disk gone");
    assert!(TaskError::Cancelled.source().is_none());
}

#[test]
fn cancelled_is_not_panic() {
    let err = TaskError::Cancelled;
    assert!(err.is_cancelled() && !err.is_panic());
    assert_eq!(err.panic_message(), None);
    assert_eq!(err.to_string(), "task cancelled");
    assert_eq!(err.clone().into_panic().unwrap_err(), TaskError::Cancelled);
}

#[test]
fn pool_failed_is_neither() {
    let err = TaskError::PoolFailed(chi::Cause::new("init"));
    assert!(!err.is_cancelled() && !err.is_panic());
    assert_eq!(err.panic_message(), None);
    assert!(err.to_string().contains("init"));
}
