use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use super::*;
use crate::server::state::Fault;
use crate::{AsciiUpper, Handler, Model, Server, ServerConfig};

/// Never reached by a working server.
const LONG: Duration = Duration::from_secs(30);

/// Serialises the tests that start a uring server: one of them makes ring setup fail.
static SERVERS: Mutex<()> = Mutex::new(());

fn uring_config() -> ServerConfig {
    uring_config_with(2)
}

fn uring_config_with(workers: usize) -> ServerConfig {
    ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(Model::Uring)
        .workers(workers)
        .build()
        .unwrap()
}

#[test]
fn user_data_keeps_slot_and_kind_apart() {
    for (slot, kind) in [(0, RECV), (1, SEND), (12_345, CANCEL), (1 << 40, SHUTDOWN)] {
        let data = user_data(slot, kind);
        assert_eq!((data >> KIND_BITS) as usize, slot);
        assert_eq!(data & ((1 << KIND_BITS) - 1), kind);
        assert!(![WAKE, WAKE_CANCEL, ACCEPT, ACCEPT_CANCEL].contains(&data));
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

/// Writes as much of `data` as `stream` takes without blocking; returns how much that was.
fn write_what_fits(stream: &TcpStream, data: &[u8]) -> usize {
    stream.set_nonblocking(true).unwrap();
    let mut written = 0;
    while written < data.len() {
        match (&*stream).write(&data[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    written
}

/// What [`burst`] saw.
struct Burst {
    /// Bytes the clients wrote while the loop was held.
    pushed: usize,
    /// Receives the kernel ended for lack of buffers.
    starved: usize,
    /// Full submission queues submitted mid-turn.
    sq_full: usize,
}

/// Holds a one-loop uring server in its handler while `clients` connections write up to
/// `most` bytes each, then lets it go. `served`: the connections were accepted, and their
/// receives armed, before the loop was held; otherwise they connect while it is held and
/// wait in the listener's queue. Whatever arrived in the meantime is handled in the loop's
/// next turns: every byte must be answered, in order, on every connection, and the server
/// must drain and stop cleanly.
fn burst(clients: usize, most: usize, served: bool) -> Burst {
    let _serial = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let (held_tx, held) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let gate = (Mutex::new(Some(held_tx)), Mutex::new(release_rx));
    let handler = move |input: &[u8], output: &mut Vec<u8>| {
        if input == b"hold"
            && let Some(held) = gate.0.lock().unwrap().take()
        {
            held.send(()).unwrap();
            let _ = gate.1.lock().unwrap().recv_timeout(LONG);
        }
        AsciiUpper.handle(input, output);
    };
    let server = Server::bind_with(uring_config_with(1), handler).unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let thread = std::thread::spawn(move || server.run());
    // ORDERING: Relaxed: read before the burst and after the server stopped.
    let before = (
        STARVED.load(Ordering::Relaxed),
        sys::SQ_FULL.load(Ordering::Relaxed),
    );
    let connect = || {
        let client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(LONG)).unwrap();
        client
    };
    let connect_all = || {
        let mut conns: Vec<TcpStream> = (0..clients).map(|_| connect()).collect();
        // A round trip each: every receive is armed.
        for client in conns.iter_mut().filter(|_| served) {
            client.write_all(b"warm").unwrap();
            let mut answer = [0; 4];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"WARM");
        }
        conns
    };
    let early = if served { connect_all() } else { Vec::new() };
    let mut holder = connect();
    holder.write_all(b"hold").unwrap();
    held.recv_timeout(LONG).unwrap();
    let mut conns = if served { early } else { connect_all() };
    let data: Vec<u8> = (0..most).map(|i| b"abcdefghij"[i % 10]).collect();
    let written: Vec<usize> = conns.iter().map(|c| write_what_fits(c, &data)).collect();
    release.send(()).unwrap();
    for (i, (client, &n)) in conns.iter_mut().zip(&written).enumerate() {
        let mut answer = vec![0; n];
        client.read_exact(&mut answer).unwrap();
        assert!(answer == data[..n].to_ascii_uppercase(), "client {i}");
    }
    let mut answer = [0; 4];
    holder.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HOLD");
    drop((conns, holder));
    handle.shutdown();
    let stats = thread.join().unwrap().unwrap();
    assert_eq!((stats.closed, stats.forced), (clients as u64 + 1, 0));
    // ORDERING: Relaxed: the loop threads were joined by `run`.
    let after = (
        STARVED.load(Ordering::Relaxed),
        sys::SQ_FULL.load(Ordering::Relaxed),
    );
    Burst {
        pushed: written.iter().sum(),
        starved: after.0 - before.0,
        sq_full: after.1 - before.1,
    }
}

/// More receives with data at once than the loop has provided buffers: the kernel runs out
/// and ends some receives with ENOBUFS. Those are re-armed once buffers are back (the data
/// waits in the socket), and every byte is answered.
#[test]
fn receives_outnumbering_the_provided_buffers_are_all_answered() {
    let seen = burst(2 * usize::from(sys::BUF_COUNT), 16 * BUF_SIZE, true);
    let buffers = usize::from(sys::BUF_COUNT) * BUF_SIZE;
    assert!(seen.pushed > buffers, "only {} bytes pushed", seen.pushed);
    assert!(seen.starved > 0, "no receive ran out of buffers");
}

/// More connections accepted in one turn than the ring has submission entries (and than its
/// completion queue holds): the multishot accept takes the whole queue at once, the loop
/// hands a full submission queue of receives to the kernel in the middle of the turn and goes
/// on (completions past the completion queue's size wait in the kernel's overflow list: the
/// ring requires NODROP); every message is answered.
#[test]
fn a_turn_with_more_operations_than_ring_entries_answers_everyone() {
    let seen = burst(3 * sys::RING_ENTRIES as usize, 64, false);
    assert_eq!(seen.pushed, 3 * sys::RING_ENTRIES as usize * 64);
    assert!(seen.sq_full > 0, "the submission queue never filled");
}

/// A draining loop's listener hands over the connections waiting in its backlog before it
/// closes (closing it with them queued would make the kernel reset them); a stopping one
/// does not.
#[test]
fn a_draining_listener_hands_its_backlog_over_before_closing() {
    for drain in [true, false] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accept = Accept::new(Some(listener));
        let mut ring = Ring::new().unwrap();
        // Never armed: stopping it needs no cancel, so it can close at once.
        accept.stop(&mut ring).unwrap();
        let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let backlog = accept.close(drain);
        assert_eq!(backlog.len(), if drain { 3 } else { 0 });
        // Closed: nothing listens there any more.
        assert!(accept.close(drain).is_empty());
        assert!(TcpStream::connect(addr).is_err());
        drop((clients, backlog));
    }
}

/// The loops accept on their own listeners, but only once the whole server is up: a loop
/// that accepted while the rest was still starting could take the descriptors the start-up
/// needs, and a start-up failure would then reset connections it had accepted (the EMFILE
/// test hit that). Clients queued before `run` are not accepted before `ready`.
#[test]
fn nothing_is_accepted_before_the_server_is_ready() {
    let _serial = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::bind(uring_config()).unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let mut early: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let at_ready = handle.clone();
    let (ready_tx, ready) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        server.run_with_ready(|| ready_tx.send(at_ready.stats().accepted).unwrap())
    });
    assert_eq!(ready.recv_timeout(LONG).unwrap(), 0);
    for client in &mut early {
        client.set_read_timeout(Some(LONG)).unwrap();
        client.write_all(b"early").unwrap();
        let mut answer = [0; 5];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"EARLY");
    }
    drop(early);
    handle.shutdown();
    let stats = thread.join().unwrap().unwrap();
    assert_eq!(stats.accepted, 8);
}
