use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use super::*;
use crate::server::state::Fault;
use crate::{Model, Server, ServerConfig};

/// Serialises the tests that start a uring server: one of them makes ring setup fail.
static SERVERS: Mutex<()> = Mutex::new(());

fn uring_config() -> ServerConfig {
    ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(Model::Uring)
        .workers(2)
        .build()
        .unwrap()
}

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
fn ring_setup_failure_fails_bind_and_run_with_one_clear_line() {
    let _serial = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let check = |err: ServerError| {
        assert!(matches!(err, ServerError::Uring(_)), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with("cannot start the uring model: "), "{text}");
        assert!(
            text.contains("/proc/sys/kernel/io_uring_disabled"),
            "{text}"
        );
    };
    // Bound while io_uring works, then it stops working: `run` fails before serving.
    let server = Server::bind(uring_config()).unwrap();
    // ORDERING: Relaxed: set before the server starts, read by its loop threads after spawn.
    sys::FAIL_SETUP.store(true, Ordering::Relaxed);
    let ran = server.run();
    // Unavailable from the start: `bind` fails before listening.
    let bound = Server::bind(uring_config());
    sys::FAIL_SETUP.store(false, Ordering::Relaxed);
    check(ran.expect_err("run must fail when no ring can be set up"));
    check(bound.expect_err("bind must fail when no ring can be set up"));
}

#[test]
fn stopped_loops_reap_every_operation_before_dropping_their_rings() {
    let _serial = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::bind(uring_config()).unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let thread = std::thread::spawn(move || server.run());
    // One connection closed by its client, one still open (with a receive armed) at shutdown.
    let mut done = std::net::TcpStream::connect(addr).unwrap();
    done.write_all(b"bye").unwrap();
    done.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    done.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"BYE");
    let mut open = std::net::TcpStream::connect(addr).unwrap();
    open.write_all(b"hi").unwrap();
    let mut two = [0; 2];
    open.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"HI");
    handle.shutdown_now();
    let stats = thread.join().unwrap().unwrap();
    assert_eq!((stats.accepted, stats.closed, stats.open), (2, 2, 0));
    // ORDERING: Relaxed: the loop threads were joined by `run`.
    assert_eq!(sys::LEAKED.load(Ordering::Relaxed), 0);
}

#[test]
fn uring_loop_death_stops_the_server() {
    let _serial = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    crate::server::tests::dead_thread_stops_the_server(Model::Uring, Fault::Worker);
}

#[test]
fn uring_acceptor_death_stops_the_server() {
    let _serial = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    crate::server::tests::dead_thread_stops_the_server(Model::Uring, Fault::Acceptor);
}
