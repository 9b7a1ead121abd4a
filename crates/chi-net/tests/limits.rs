//! Limits and lifecycle: connection cap, idle timeout, the pooled model's queue, graceful
//! drain, stop-now, descriptor exhaustion (in a child process with a lowered limit),
//! close-on-exec, address reuse.

#[macro_use]
mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chi_net::{AsciiUpper, Handler, Model, Server, ServerConfig, ServerError};
use common::*;

// ===== every model =====

fn max_connections_rejects_extra(model: Model) {
    let server = start(model, |b| b.max_connections(2));
    let mut a = connect(server.addr);
    roundtrip(&mut a, b"a");
    let mut b = connect(server.addr);
    roundtrip(&mut b, b"b");
    // The third is accepted and closed at once, without an answer.
    let mut c = connect(server.addr);
    let _ = c.write_all(b"c");
    expect_closed(&mut c);
    server.wait_stats("one rejection", |s| s.rejected == 1);
    // Once one leaves, a new client is served again.
    drop(a);
    server.wait_stats("a closed", |s| s.open == 1);
    let mut d = connect(server.addr);
    roundtrip(&mut d, b"d");
    drop((b, d));
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.rejected), (3, 1));
}

fn idle_timeout_closes_silent_client(model: Model) {
    let server = start(model, |b| b.idle_timeout(Some(Duration::from_millis(100))));
    let mut client = connect(server.addr);
    roundtrip(&mut client, b"then silence");
    expect_closed(&mut client);
    let stats = server.wait_stats("idle connection closed", |s| s.closed == 1);
    assert_eq!(stats.forced, 0);
    server.stop();
}

/// A handler that, on the first chunk containing `!`, reports it and blocks until released:
/// a shutdown can then be requested while a message is mid-way through the server.
fn gate() -> (impl Handler, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let reached = Mutex::new(Some(reached_tx));
    let release = Mutex::new(release_rx);
    let handler = move |input: &[u8], output: &mut Vec<u8>| {
        if input.contains(&b'!')
            && let Some(tx) = reached.lock().unwrap().take()
        {
            tx.send(()).unwrap();
            let _ = release.lock().unwrap().recv_timeout(LONG);
        }
        AsciiUpper.handle(input, output);
    };
    (handler, reached_rx, release_tx)
}

fn drain_answers_data_received_before_shutdown(model: Model) {
    let (handler, reached, release) = gate();
    let mut server = start_with(model, |b| b.drain_timeout(LONG * 2), handler);
    let mut talker = connect(server.addr);
    roundtrip(&mut talker, b"hello ");
    let mut idle = connect(server.addr);
    roundtrip(&mut idle, b"idle");
    // Mid-conversation: the server is inside the handler for this message when asked to stop.
    talker.write_all(b"wait!tail").unwrap();
    reached.recv_timeout(LONG).unwrap();
    server.handle.shutdown();
    release.send(()).unwrap();
    let (answer, end) = read_to_end(&mut talker);
    assert_eq!(answer, b"WAIT!TAIL");
    end.expect("a clean close after the last answer");
    // The idle client is closed too, without waiting for the deadline.
    expect_closed(&mut idle);
    drop((talker, idle));
    let stats = server.wait();
    assert_eq!(stats.forced, 0);
    assert_eq!(stats.open, 0);
}

fn drain_deadline_closes_stuck_clients(model: Model) {
    // Each chunk is answered with 8 MiB: more than the kernel buffers hold for a client that
    // reads nothing, so the answer can never be fully sent.
    let flood = |_: &[u8], output: &mut Vec<u8>| output.resize(output.len() + (8 << 20), b'x');
    let mut server = start_with(
        model,
        |b| b.drain_timeout(Duration::from_millis(200)),
        flood,
    );
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stuck: TcpStream = socket.into();
    stuck.write_all(b"x").unwrap();
    server.wait_stats("answer produced", |s| s.peak_output_buffer > 0);
    server.handle.shutdown();
    let stats = server.wait();
    assert_eq!(stats.forced, 1, "{stats:?}");
    assert_eq!(stats.open, 0);
    let (data, _) = read_to_end(&mut stuck);
    assert!(
        data.len() < 8 << 20,
        "the whole answer could not have been sent"
    );
}

fn shutdown_now_closes_at_once(model: Model) {
    let mut server = start(model, |b| b.drain_timeout(LONG * 2));
    let mut client = connect(server.addr);
    roundtrip(&mut client, b"hello");
    server.handle.shutdown_now();
    let stats = server.wait();
    assert_eq!(stats.forced, 1);
    expect_closed(&mut client);
}

fn shutdown_before_run_returns_at_once(model: Model) {
    let config = ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(model)
        .build()
        .unwrap();
    let server = Server::bind(config).unwrap();
    server.handle().shutdown();
    let stats = server.run().unwrap();
    assert_eq!(stats.accepted, 0);
}

fn reuse_port_lets_two_servers_share_a_port(model: Model) {
    let first = start(model, |b| b.reuse_port(true));
    let second = start(model, |b| b.reuse_port(true).addr(first.addr));
    assert_eq!(first.addr, second.addr);
    for i in 0..20 {
        let mut client = connect(first.addr);
        roundtrip(&mut client, format!("client {i}").as_bytes());
    }
    let (a, b) = (first.stop(), second.stop());
    assert_eq!(a.accepted + b.accepted, 20);
}

fn bind_in_use_is_a_clear_error(model: Model) {
    let first = start(model, |b| b);
    let config = ServerConfig::builder()
        .addr(first.addr)
        .model(model)
        .build()
        .unwrap();
    let err = Server::bind(config).unwrap_err();
    match &err {
        ServerError::Bind { addr, error } => {
            assert_eq!(*addr, first.addr);
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot listen on {}", first.addr)),
        "{message}"
    );
    first.stop();
}

// ===== descriptor exhaustion =====

/// Kills and reaps the child on every path.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const EMFILE_CHILD_ENV: &str = "CHI_NET_EMFILE_CHILD";

/// Not a test on its own: `emfile_recovery` runs it in a child with few descriptors.
#[test]
#[ignore = "helper run by *::emfile_recovery in a child process with a lowered RLIMIT_NOFILE"]
fn emfile_child() {
    let Ok(model) = std::env::var(EMFILE_CHILD_ENV) else {
        return;
    };
    let model: Model = model.parse().unwrap();
    let config = ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(model)
        .workers(if model == Model::Pooled { 3 } else { 1 })
        .build()
        .unwrap();
    let server = Server::bind(config).unwrap();
    println!("listening on {}", server.local_addr());
    let handle = server.handle();
    // The parent closes our stdin to stop us.
    std::thread::spawn(move || {
        let _ = io::stdin().read_to_end(&mut Vec::new());
        handle.shutdown();
    });
    let stats = server.run().unwrap();
    println!(
        "accept_backoffs={} accepted={}",
        stats.accept_backoffs, stats.accepted
    );
}

fn emfile_recovery(model: Model) {
    const CLIENTS: usize = 64; // well over the child's 32 descriptors
    let exe = std::env::current_exe().unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 32 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "--exact",
            "emfile_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD_ENV, model.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |prefix: &str| loop {
        let line = lines.recv_timeout(LONG).expect("child output");
        // libtest prints "test emfile_child ... " without a newline before our first line.
        if let Some(at) = line.find(prefix) {
            break line[at + prefix.len()..].to_owned();
        }
    };
    let addr: SocketAddr = next_line("listening on ").parse().unwrap();

    // More clients than the child has descriptors: the later ones wait in the backlog while
    // the server backs off, and are served as the earlier ones leave.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("client {i}").as_bytes()).unwrap();
    }
    for (i, mut client) in clients.into_iter().enumerate() {
        let expected = format!("CLIENT {i}");
        let mut answer = vec![0; expected.len()];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer, expected.as_bytes());
    }
    drop(child.0.stdin.take()); // ask the child to shut down
    let stats = next_line("accept_backoffs=");
    let (backoffs, accepted) = stats.split_once(" accepted=").unwrap();
    let backoffs: u64 = backoffs.parse().unwrap();
    assert!(backoffs > 0, "the child never ran out of descriptors");
    // Back-off, not a spin: a retry per back-off delay or per closed connection at most.
    assert!(backoffs < 10_000, "{backoffs} accept retries");
    assert_eq!(accepted, CLIENTS.to_string());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Where io_uring is switched off for everyone (`kernel.io_uring_disabled = 2`), the uring
/// model fails at start with its own error; elsewhere there is nothing to check.
#[cfg(all(feature = "uring", target_os = "linux"))]
#[test]
fn uring_fails_at_start_where_io_uring_is_disabled() {
    let setting = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
    if setting.trim() != "2" {
        return; // io_uring is allowed here; the uring::* cases exercise the model
    }
    let config = ServerConfig::builder()
        .addr("127.0.0.1:0".parse().unwrap())
        .model(Model::Uring)
        .build()
        .unwrap();
    // `bind` checks first; `run` would fail the same way.
    let err = match Server::bind(config) {
        Err(e) => e,
        Ok(server) => server.run().unwrap_err(),
    };
    assert!(matches!(err, ServerError::Uring(_)), "{err:?}");
    assert!(err.to_string().contains("io_uring_disabled"), "{err}");
}

for_all_models!(
    max_connections_rejects_extra,
    idle_timeout_closes_silent_client,
    drain_answers_data_received_before_shutdown,
    drain_deadline_closes_stuck_clients,
    shutdown_now_closes_at_once,
    shutdown_before_run_returns_at_once,
    reuse_port_lets_two_servers_share_a_port,
    bind_in_use_is_a_clear_error,
    emfile_recovery,
);

// ===== pooled model only =====

#[test]
fn pooled_client_beyond_workers_waits_until_one_leaves() {
    let server = start(Model::Pooled, |b| b.workers(2));
    let mut a = connect(server.addr);
    roundtrip(&mut a, b"a");
    let mut b = connect(server.addr);
    roundtrip(&mut b, b"b");
    // Both workers are busy: the third client is accepted and queued, not refused.
    let mut c = connect(server.addr);
    c.write_all(b"c").unwrap();
    server.wait_stats("third client queued", |s| s.waiting == 1);
    c.set_nonblocking(true).unwrap();
    let mut byte = [0; 1];
    let early = c.read(&mut byte);
    assert_eq!(
        early.unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "served too early"
    );
    c.set_nonblocking(false).unwrap();
    // One of the first two leaves: the third is served.
    drop(a);
    c.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"C");
    roundtrip(&mut b, b"b again");
    drop((b, c));
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.rejected), (3, 0));
}

#[test]
fn pooled_idle_timeout_frees_the_worker() {
    let server = start(Model::Pooled, |b| {
        b.workers(1).idle_timeout(Some(Duration::from_millis(100)))
    });
    let mut silent = connect(server.addr);
    roundtrip(&mut silent, b"then silence");
    let mut waiting = connect(server.addr);
    waiting.write_all(b"next").unwrap();
    // The only worker is freed from the silent client and serves the waiting one.
    expect_closed(&mut silent);
    let mut answer = [0; 4];
    waiting.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"NEXT");
    drop(waiting);
    server.stop();
}

// ===== sockets =====

#[test]
fn sockets_close_on_exec() {
    let event = start(Model::Event, |b| b);
    let pooled = start(Model::Pooled, |b| b);
    let mut a = connect(event.addr);
    roundtrip(&mut a, b"a");
    let mut b = connect(pooled.addr);
    roundtrip(&mut b, b"b");
    // The uring model's listeners, its rings, and the connections its loops accept.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    let (_uring, _c) = {
        let uring = start(Model::Uring, |b| b);
        let mut c = connect(uring.addr);
        roundtrip(&mut c, b"c");
        (uring, c)
    };
    // A child sees none of the listeners or connections (nor any other socket of this process).
    let out = Command::new("ls")
        .args(["-l", "/proc/self/fd"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listing.contains("socket:") && !listing.contains("io_uring"),
        "inherited sockets or rings:\n{listing}"
    );
    drop((a, b));
    event.stop();
    pooled.stop();
}

#[test]
fn handle_reports_shutting_down() {
    let server = start(Model::Event, |b| b);
    assert!(!server.handle.is_shutting_down());
    let handle = server.handle.clone();
    server.stop();
    assert!(handle.is_shutting_down());
}

#[test]
fn handle_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_traits::<chi_net::ServerHandle>();
    let _: Arc<dyn Handler> = Arc::new(AsciiUpper);
}
