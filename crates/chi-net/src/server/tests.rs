//! Server failures that need a fault injected from inside the crate (a server thread that
//! dies must stop the server, and `run` must say why), and deadline arithmetic.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::state::Fault;
use super::{Server, ServerError, deadline_after};
use crate::config::{Model, ServerConfig};

/// Never reached by a working server.
const LONG: Duration = Duration::from_secs(30);

pub(super) fn dead_thread_stops_the_server(model: Model, fault: Fault) {
    let config = ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(model)
        .workers(2)
        .build()
        .unwrap();
    let server = Server::bind(config).unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let shared = std::sync::Arc::clone(&server.shared);
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || tx.send(server.run_with_ready(|| drop(ready_tx))));
    // Ready: every thread runs (the uring acceptor, which the fault below needs, included).
    assert!(matches!(
        ready.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected)
    ));
    // A served client first: the server works.
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LONG)).unwrap();
    client.write_all(b"ok").unwrap();
    let mut answer = [0; 2];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"OK");
    // The next thread of that kind to pass its fault point dies: the acceptor when it accepts
    // the next client, or the loop or worker that gets it. The uring model's acceptor accepts
    // nothing (its loops do): it dies when it next wakes.
    // ORDERING: SeqCst, see `Shared::maybe_inject_fault`.
    shared.inject_fault.store(fault as u8, Ordering::SeqCst);
    if (model, fault) == (Model::Uring, Fault::Acceptor) {
        shared.wake_acceptor();
    }
    // Refused if the server has stopped already (the uring acceptor's case).
    if let Ok(mut victim) = TcpStream::connect(addr) {
        let _ = victim.write_all(b"boom");
    }
    let result = rx
        .recv_timeout(LONG)
        .expect("run() returned after a thread died, without a shutdown request");
    thread.join().unwrap().ok();
    let thread = match fault {
        Fault::Acceptor => "the acceptor",
        Fault::Worker if model == Model::Event => "event loop",
        Fault::Worker if model == Model::Uring => "uring loop",
        Fault::Worker => "a pooled worker",
    };
    match result {
        Err(ServerError::ThreadDied(cause)) => {
            assert!(cause.contains("injected fault"), "{cause}");
            assert!(cause.starts_with(thread), "{cause}");
        }
        other => panic!("expected ThreadDied, got {other:?}"),
    }
    assert!(handle.is_shutting_down());
    assert_eq!(handle.stats().open, 0, "{:?}", handle.stats());
    // Every connection was closed: the first client sees the end of the stream.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn event_loop_death_stops_the_server() {
    dead_thread_stops_the_server(Model::Event, Fault::Worker);
}

#[test]
fn pooled_worker_death_stops_the_server() {
    dead_thread_stops_the_server(Model::Pooled, Fault::Worker);
}

#[test]
fn event_acceptor_death_stops_the_server() {
    dead_thread_stops_the_server(Model::Event, Fault::Acceptor);
}

#[test]
fn pooled_acceptor_death_stops_the_server() {
    dead_thread_stops_the_server(Model::Pooled, Fault::Acceptor);
}

#[test]
fn deadlines_past_the_clock_are_never() {
    let now = std::time::Instant::now();
    assert_eq!(deadline_after(now, Duration::MAX), None);
    assert_eq!(
        deadline_after(now, Duration::from_secs(1)),
        Some(now + Duration::from_secs(1))
    );
}
