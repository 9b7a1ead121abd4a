//! Cases from adversarial runs, kept fixed (bounded in count and time, loopback only), for every
//! model: drain under load, slow clients with and without an idle timeout, a flood past the
//! connection cap, 1 MiB messages from many clients at once, clients that reset while the
//! server sends; for the models with event loops: idle-timer entries of closed connections and
//! clients that never read; and the pooled model's arrival order.

#[macro_use]
mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chi_net::{AsciiUpper, Handler, Model, ascii_upper};
use common::*;

// ===== drain under load =====

/// Bytes written on `stream` that the peer's kernel has not acknowledged yet.
fn unacknowledged(stream: &TcpStream) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through the pointer, which points to a live c_int; the
    // descriptor is open for the duration of the call (borrowed from `stream`).
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    assert_eq!(rc, 0, "TIOCOUTQ: {}", io::Error::last_os_error());
    usize::try_from(queued).unwrap()
}

/// Writes from `data[*written..]` without blocking until the socket would block; returns the
/// bytes written by this call.
fn write_some(stream: &TcpStream, data: &[u8], written: &mut usize) -> usize {
    let socket = socket2::SockRef::from(stream);
    let start = *written;
    while *written < data.len() {
        let end = (*written + 64 * 1024).min(data.len());
        match socket.send_with_flags(&data[*written..end], libc::MSG_DONTWAIT) {
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("send: {e}"),
        }
    }
    *written - start
}

/// Writes `message` on every client without blocking, round after round, until a whole round
/// moves nothing or everything is sent (so bounded by the message size); returns the bytes
/// written on each.
fn push_until_stuck(clients: &[TcpStream], message: &[u8]) -> Vec<usize> {
    let mut written = vec![0; clients.len()];
    while clients
        .iter()
        .zip(&mut written)
        .map(|(client, w)| write_some(client, message, w))
        .sum::<usize>()
        > 0
    {}
    written
}

/// 100 clients (with the pooled model's 3 workers, 97 of them waiting) each push up to 256 KiB;
/// then the server is asked to drain. Every client gets a byte-exact answer for at least
/// everything the server's kernel had received before the request, then end of stream — not
/// a reset, which would destroy answers in flight.
fn drain_under_load_answers_everything_received(model: Model) {
    const CLIENTS: usize = 100;
    const SIZE: usize = 256 * 1024;
    let mut server = start(model, |b| b.drain_timeout(LONG * 2));
    let message = pattern(SIZE);
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    server.wait_stats("all accepted", |s| s.accepted == CLIENTS as u64);
    let results = std::thread::scope(|s| {
        let readers: Vec<_> = clients
            .iter()
            .map(|client| {
                std::thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn_scoped(s, move || {
                        let got = read_to_end(client);
                        // Our FIN, so the server (which waits for it) can close.
                        let _ = client.shutdown(Shutdown::Write);
                        got
                    })
                    .unwrap()
            })
            .collect();
        let written = push_until_stuck(&clients, &message);
        let received: Vec<usize> = clients
            .iter()
            .zip(&written)
            .map(|(client, w)| w - unacknowledged(client))
            .collect();
        server.handle.shutdown();
        let answers: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        (written, received, answers)
    });
    let (written, received, answers) = results;
    for (i, (answer, end)) in answers.into_iter().enumerate() {
        end.unwrap_or_else(|e| panic!("client {i}: {e} after {} bytes", answer.len()));
        assert!(
            answer.len() >= received[i],
            "client {i}: {} answer bytes for {} received by the server ({} written)",
            answer.len(),
            received[i],
            written[i]
        );
        assert!(
            answer.len() <= written[i],
            "client {i}: more answer than input"
        );
        assert!(
            answer == ascii_upper(&message[..answer.len()]),
            "client {i}: answer differs"
        );
    }
    drop(clients);
    let stats = server.wait();
    assert_eq!((stats.open, stats.forced), (0, 0), "{stats:?}");
    // Every one of them closed by the drain's handshake, and counted so.
    assert_eq!(stats.closed, CLIENTS as u64);
    assert_eq!(stats.drained, CLIENTS as u64, "{stats:?}");
}

// ===== slow clients =====

/// Many clients that sent a few bytes and went silent: with no idle timeout they stay open and
/// the event model still serves others; with one, they are closed (answered first) and counted
/// as closed, not forced.
fn slow_clients(model: Model, idle: Option<Duration>) {
    const SLOW: usize = 40;
    let server = start(model, |b| b.idle_timeout(idle).workers(4));
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|_| connect(server.addr)).collect();
    for (i, client) in slow.iter_mut().enumerate() {
        client.write_all(format!("GET /{i} HT").as_bytes()).unwrap();
    }
    if idle.is_none() {
        server.wait_stats("all slow clients accepted", |s| s.open == SLOW);
        // They cost the event or uring loops nothing: another client is served meanwhile.
        let mut other = (model != Model::Pooled).then(|| connect(server.addr));
        if let Some(other) = &mut other {
            roundtrip(other, b"served meanwhile");
        }
        // Each one trickles one more byte, and every byte is answered.
        for (i, client) in slow.iter_mut().enumerate().take(4) {
            let sent = format!("GET /{i} HT");
            let mut answer = vec![0; sent.len()];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(answer, sent.to_ascii_uppercase().as_bytes());
            roundtrip(client, b"t");
        }
        assert_eq!(server.handle.stats().closed, 0);
        drop((slow, other));
        let stats = server.stop();
        assert_eq!(stats.forced, 0);
        return;
    }
    for (i, client) in slow.iter_mut().enumerate() {
        let (answer, _) = read_to_end(client);
        assert_eq!(
            answer,
            format!("GET /{i} HT").to_ascii_uppercase().as_bytes()
        );
    }
    let stats = server.wait_stats("slow clients closed", |s| s.closed == SLOW as u64);
    assert_eq!(stats.forced, 0);
    let mut other = connect(server.addr);
    roundtrip(&mut other, b"after them");
    drop(other);
    server.stop();
}

fn slow_clients_without_idle_timeout(model: Model) {
    slow_clients(model, None);
}

fn slow_clients_with_idle_timeout(model: Model) {
    slow_clients(model, Some(Duration::from_millis(50)));
}

// ===== flood =====

/// 200 connections against a cap of 50: the first 50 are kept (and served), the rest closed
/// at once without an answer, and the server serves again once they leave.
fn flood_past_the_connection_cap(model: Model) {
    const CAP: usize = 50;
    const FLOOD: usize = 200;
    // The pooled model serves as many at once as it has workers.
    let workers = if model == Model::Pooled { CAP } else { 2 };
    let server = start(model, |b| b.max_connections(CAP).workers(workers));
    let mut clients = Vec::new();
    for i in 0..FLOOD {
        clients.push(connect(server.addr));
        server.wait_stats("connection seen", |s| {
            s.accepted + s.rejected == i as u64 + 1
        });
    }
    let stats = server.handle.stats();
    assert_eq!(
        (stats.accepted, stats.rejected),
        (CAP as u64, (FLOOD - CAP) as u64)
    );
    let rejected = clients.split_off(CAP);
    for client in rejected {
        expect_closed(client);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        roundtrip(client, format!("kept {i}").as_bytes());
    }
    drop(clients);
    server.wait_stats("kept clients closed", |s| s.open == 0);
    let mut after = connect(server.addr);
    roundtrip(&mut after, b"after the flood");
    drop(after);
    server.stop();
}

// ===== big messages, resets mid-send =====

/// 16 clients at once each send a 1 MiB message while reading its answer: every answer is
/// byte-exact. On one event or uring loop (the uring one with 128 receive buffers for all its
/// connections) the clients' chunks compete for the loop.
fn one_mib_messages_from_many_clients_at_once(model: Model) {
    const CLIENTS: usize = 16;
    let workers = if model == Model::Pooled { CLIENTS } else { 1 };
    let server = start(model, |b| b.workers(workers));
    let message = pattern(1 << 20);
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    std::thread::scope(|s| {
        for client in &clients {
            let message = &message;
            s.spawn(move || assert!(send_and_receive(client, message) == ascii_upper(message)));
        }
    });
    drop(clients);
    let stats = server.stop();
    let total = (CLIENTS << 20) as u64;
    assert_eq!(
        (stats.bytes_in, stats.bytes_out),
        (total, total),
        "{stats:?}"
    );
}

/// Answers `flood` with 8 MiB (more than the kernel buffers of a client that reads nothing
/// can hold, so the server is still sending it), everything else as `AsciiUpper`; counts the
/// floods.
#[derive(Clone, Default)]
struct Flood(Arc<AtomicUsize>);

impl Handler for Flood {
    fn handle(&self, input: &[u8], output: &mut Vec<u8>) {
        if input == b"flood" {
            output.resize(output.len() + (8 << 20), b'x');
            // ORDERING: SeqCst, read by the test thread; a test counter.
            self.0.fetch_add(1, Ordering::SeqCst);
        } else {
            AsciiUpper.handle(input, output);
        }
    }
}

/// Clients that ask for a big answer, read none of it, and reset the connection while the
/// server is sending it: each connection ends with an error (not counted as forced), nothing is
/// left open, and the server serves the next client.
fn reset_clients_mid_send(model: Model) {
    const CLIENTS: usize = 8;
    let flood = Flood::default();
    let workers = if model == Model::Pooled {
        CLIENTS + 1
    } else {
        2
    };
    let server = start_with(model, |b| b.workers(workers), flood.clone());
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(16 * 1024).unwrap();
            socket.connect(&server.addr.into()).unwrap();
            let mut client = TcpStream::from(socket);
            client.write_all(b"flood").unwrap();
            client
        })
        .collect();
    // ORDERING: SeqCst, see `Flood`.
    wait_until("every flood answered", || {
        flood.0.load(Ordering::SeqCst) == CLIENTS
    });
    for client in clients {
        // Linger 0: close sends RST.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    let stats = server.wait_stats("reset connections closed", |s| {
        s.open == 0 && s.closed == CLIENTS as u64
    });
    assert_eq!(stats.forced, 0, "{stats:?}");
    let mut other = connect(server.addr);
    roundtrip(&mut other, b"still serving");
    drop(other);
    server.stop();
}

// ===== pooled model: arrival order =====

/// Records every chunk it answers, in the order the server hands them to it.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Handler for Recorder {
    fn handle(&self, input: &[u8], output: &mut Vec<u8>) {
        let mut order = self.0.lock().unwrap();
        order.push(String::from_utf8_lossy(input).into_owned());
        AsciiUpper.handle(input, output);
    }
}

/// 30 clients, 3 workers: the first three are served; then each time one served client leaves,
/// exactly one worker is free, and it must take the client that has waited longest.
#[test]
fn pooled_serves_waiting_clients_in_arrival_order() {
    const CLIENTS: usize = 30;
    const WORKERS: usize = 3;
    let recorder = Recorder::default();
    let server = start_with(Model::Pooled, |b| b.workers(WORKERS), recorder.clone());
    let name = |i: usize| format!("client {i:02}");
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = connect(server.addr);
        client.write_all(name(i).as_bytes()).unwrap();
        clients.push(client);
        // Accepted (and so queued) before the next one connects.
        server.wait_stats("client accepted", |s| s.accepted == i as u64 + 1);
    }
    let served = || recorder.0.lock().unwrap().clone();
    wait_until("the first clients served", || served().len() == WORKERS);
    for (leaving, client) in clients.iter().enumerate() {
        client.shutdown(Shutdown::Write).unwrap();
        let next = leaving + WORKERS;
        if next < CLIENTS {
            wait_until("the next client served", || served().len() == next + 1);
            assert_eq!(served()[next], name(next), "served out of arrival order");
        }
    }
    for (i, client) in clients.into_iter().enumerate() {
        let (answer, end) = read_to_end(client);
        end.unwrap();
        assert_eq!(answer, name(i).to_ascii_uppercase().as_bytes());
    }
    // The first WORKERS clients are served at once, by WORKERS workers in parallel: their
    // order among themselves is the scheduler's. Every later one must come in arrival order.
    let mut got = served();
    got[..WORKERS].sort();
    let expected: Vec<String> = (0..CLIENTS).map(name).collect();
    assert_eq!(got, expected);
    server.stop();
}

// ===== event loops: idle timers, clients that never read =====

/// Short connections under a long idle timeout leave no timer entries behind: after the churn
/// the entries are at most twice the connections still open, and none once those close too.
fn idle_timers_of_closed_connections_go_with_them(model: Model) {
    const KEEP: usize = 10;
    const CHURN: usize = 50_000;
    let server = start(model, |b| b.idle_timeout(Some(Duration::from_secs(3600))));
    let mut kept: Vec<TcpStream> = (0..KEEP).map(|_| connect(server.addr)).collect();
    for client in &mut kept {
        roundtrip(client, b"stay");
    }
    for _ in 0..CHURN {
        let client = connect(server.addr);
        // Close with a reset: no TIME_WAIT left on the client's ports.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    // Accepted in order: once this one is served, every earlier one was accepted.
    let mut last = connect(server.addr);
    roundtrip(&mut last, b"last");
    drop(last);
    let stats = server.wait_stats("churn closed", |s| s.open == KEEP);
    assert!(
        stats.idle_timers <= 2 * KEEP,
        "{} idle-timer entries for {KEEP} open connections",
        stats.idle_timers
    );
    drop(kept);
    let stats = server.wait_stats("all closed", |s| s.open == 0);
    assert_eq!(stats.idle_timers, 0, "{stats:?}");
    server.stop();
}

/// A client that reads nothing while pushing input: the loop stops reading from it at the
/// output cap, so what the server holds for it stays bounded, and every byte it pushed is
/// answered once it reads.
fn never_reading_clients_are_bounded_by_the_output_cap(model: Model) {
    const CLIENTS: usize = 8;
    const CAP: usize = 64 * 1024;
    const LIMIT: usize = 8 << 20;
    let server = start(model, |b| b.output_cap(CAP));
    let message = pattern(LIMIT);
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    let written = push_until_stuck(&clients, &message);
    let stats = server.handle.stats();
    assert!(
        stats.peak_output_buffer <= CAP + chi_net::READ_CHUNK,
        "{stats:?}"
    );
    for (client, w) in clients.iter().zip(&written) {
        let mut answer = vec![0; *w];
        (&*client).read_exact(&mut answer).unwrap();
        assert!(answer == ascii_upper(&message[..*w]));
    }
    drop(clients);
    server.stop();
}

for_all_models!(
    drain_under_load_answers_everything_received,
    slow_clients_without_idle_timeout,
    slow_clients_with_idle_timeout,
    flood_past_the_connection_cap,
    one_mib_messages_from_many_clients_at_once,
    reset_clients_mid_send;
    event loops only:
    idle_timers_of_closed_connections_go_with_them,
    never_reading_clients_are_bounded_by_the_output_cap,
);
