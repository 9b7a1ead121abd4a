use std::sync::atomic::Ordering;

use super::*;
use crate::{Model, Server, ServerConfig};

#[test]
fn user_data_keeps_slot_and_kind_apart() {
    for (slot, kind) in [(0, RECV), (1, SEND), (12_345, CANCEL), (1 << 40, SHUTDOWN)] {
        let data = user_data(slot, kind);
        assert_eq!((data >> KIND_BITS) as usize, slot);
        assert_eq!(data & ((1 << KIND_BITS) - 1), kind);
        assert!(data != WAKE && data != WAKE_CANCEL);
    }
}

#[test]
fn ring_setup_failure_fails_run_with_one_clear_line() {
    // ORDERING: Relaxed: set before the server starts, read by its loop threads after spawn.
    sys::FAIL_SETUP.store(true, Ordering::Relaxed);
    let config = ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(Model::Uring)
        .workers(2)
        .build()
        .unwrap();
    let server = Server::bind(config).unwrap();
    let result = server.run();
    sys::FAIL_SETUP.store(false, Ordering::Relaxed);
    let err = result.expect_err("run must fail when no ring can be set up");
    assert!(matches!(err, ServerError::Uring(_)), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.starts_with("cannot start the uring model: "), "{text}");
    assert!(
        text.contains("/proc/sys/kernel/io_uring_disabled"),
        "{text}"
    );
}
