//! `chi serve` and `chi client` through the real binary: output, signals, exit codes.
//! Every server binds 127.0.0.1:0; every child is killed and reaped by a guard.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A bound that must never be reached.
const LONG: Duration = Duration::from_secs(30);

fn chi() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chi"))
}

/// Runs `chi args…` to completion (bounded by the command's own behaviour).
fn run(args: &[&str]) -> Output {
    chi()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chi")
}

/// A child process that is killed and reaped on every path.
struct Proc {
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = chi()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chi");
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Proc {
            child,
            stderr: Some(stderr),
        }
    }

    fn stdout(&mut self) -> BufReader<ChildStdout> {
        BufReader::new(self.child.stdout.take().unwrap())
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the exit; returns the status and everything written to stderr.
    fn wait(mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < LONG, "chi did not exit");
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chi serve` on 127.0.0.1:0; returns it with the address from its first stdout line.
fn serve(extra: &[&str]) -> (Proc, SocketAddr) {
    serve_at("127.0.0.1:0", extra)
}

fn serve_at(addr: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["serve", "--addr", addr];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(&args);
    let mut first = String::new();
    proc.stdout().read_line(&mut first).unwrap();
    let addr = first
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    (proc, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream
}

fn roundtrip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut answer = vec![0; message.len()];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(answer, message.to_ascii_uppercase());
}

fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ===== help and usage =====

#[test]
fn help_documents_exit_codes() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = stdout_text(&out);
    for needle in [
        "serve",
        "client",
        "load",
        "demo",
        "Exit status",
        "0    success",
        "1    failure",
        "2    bad",
        "4    could not connect",
        "130  interrupted",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let out = run(&["serve", "--help"]);
    let help = stdout_text(&out);
    for needle in [
        "--addr",
        "--model",
        "--workers",
        "--max-connections",
        "--idle-timeout",
        "--output-cap",
        "--reuse-port",
        "--drain-timeout",
        "Exit status",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle:?}:\n{help}"
        );
    }
    let out = run(&["client", "--help"]);
    let help = stdout_text(&out);
    for needle in [
        "[ADDR]",
        "--message",
        "--interval",
        "--count",
        "hello world",
        "Exit status",
    ] {
        assert!(
            help.contains(needle),
            "client --help lacks {needle:?}:\n{help}"
        );
    }
}

#[test]
fn bad_flags_exit_2_with_clear_errors() {
    for (args, needle) in [
        (&["serve", "--workers", "0"][..], "--workers"),
        (&["serve", "--model", "threads"], "possible values"),
        (&["serve", "--addr", "not an address"], "--addr"),
        (&["serve", "--idle-timeout", "soon"], "--idle-timeout"),
        (&["client", "--count", "0"], "--count"),
        (&["client", "--message", ""], "must not be empty"),
        (&["serve", "--no-such-flag"], "--no-such-flag"),
        (&["frobnicate"], "frobnicate"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr_text(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

// ===== serve + client =====

fn serve_and_client_round_trip(model: &str) {
    let (server, addr) = serve(&["--model", model]);
    let addr_arg = addr.to_string();
    let out = run(&[
        "client",
        "--addr",
        &addr_arg,
        "--count",
        "3",
        "--interval",
        "0s",
    ]);
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_text(&out), "HELLO WORLD\n".repeat(3));
    let out = run(&[
        "client",
        "--addr",
        &addr_arg,
        "--count",
        "1",
        "--message",
        "ça va? ok",
    ]);
    assert_eq!(stdout_text(&out), "çA VA? OK\n");
    server.signal("TERM");
    let (status, stderr) = server.wait();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("served 2 connections"), "{stderr}");
}

#[test]
fn serve_and_client_round_trip_event() {
    serve_and_client_round_trip("event");
}

#[test]
fn serve_and_client_round_trip_pooled() {
    serve_and_client_round_trip("pooled");
}

#[cfg(target_os = "linux")]
#[test]
fn serve_and_client_round_trip_uring() {
    serve_and_client_round_trip("uring");
}

fn serve_sigterm_drains_mid_conversation(model: &str) {
    let (server, addr) = serve(&["--model", model, "--drain-timeout", "30s"]);
    let mut client = connect(addr);
    roundtrip(&mut client, b"hello");
    // Sent before the signal; the first byte of its answer proves the server has it.
    let message: Vec<u8> = (0..32 * 1024).map(|i| b"abcdefgh"[i % 8]).collect();
    client.write_all(&message).unwrap();
    let mut first = [0; 1];
    client.read_exact(&mut first).unwrap();
    server.signal("TERM");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(
        rest.len(),
        message.len() - 1,
        "every answer arrives before the close"
    );
    assert_eq!(rest, message[1..].to_ascii_uppercase());
    drop(client);
    let (status, stderr) = server.wait();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("draining"), "{stderr}");
}

#[test]
fn serve_sigterm_drains_mid_conversation_event() {
    serve_sigterm_drains_mid_conversation("event");
}

#[test]
fn serve_sigterm_drains_mid_conversation_pooled() {
    serve_sigterm_drains_mid_conversation("pooled");
}

#[cfg(target_os = "linux")]
#[test]
fn serve_sigterm_drains_mid_conversation_uring() {
    serve_sigterm_drains_mid_conversation("uring");
}

#[test]
fn serve_sigint_drains_idle_clients_and_exits_0() {
    serve_sigint_drains_idle_clients("event");
}

#[cfg(target_os = "linux")]
#[test]
fn serve_sigint_drains_idle_clients_and_exits_0_uring() {
    serve_sigint_drains_idle_clients("uring");
}

fn serve_sigint_drains_idle_clients(model: &str) {
    let (server, addr) = serve(&["--model", model]);
    let mut client = connect(addr);
    roundtrip(&mut client, b"hi");
    server.signal("INT");
    // The server closes its side; the client sees the end of the stream.
    assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
    drop(client);
    let (status, stderr) = server.wait();
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn serve_verbose_shows_each_message() {
    let (server, addr) = serve(&["-v"]);
    let mut client = connect(addr);
    roundtrip(&mut client, b"hello from the test");
    drop(client);
    server.signal("TERM");
    let (status, stderr) = server.wait();
    assert!(status.success());
    assert!(stderr.contains("hello from the test"), "{stderr}");
    assert!(stderr.contains("connection opened"), "{stderr}");
    assert!(stderr.contains("connection closed"), "{stderr}");
}

#[test]
fn serve_default_level_does_not_log_messages() {
    let (server, addr) = serve(&[]);
    let mut client = connect(addr);
    roundtrip(&mut client, b"keep this quiet");
    drop(client);
    server.signal("TERM");
    let (status, stderr) = server.wait();
    assert!(status.success());
    assert!(!stderr.contains("keep this quiet"), "{stderr}");
    assert!(!stderr.contains("connection opened"), "{stderr}");
}

#[test]
fn serve_port_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["serve", "--addr", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_text(&out);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(stdout_text(&out).is_empty());
}

#[test]
fn serve_port_in_use_reports_the_os_error_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["serve", "--addr", &addr]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn serve_huge_durations_exit_2_with_one_line() {
    for (flag, needle) in [
        ("--idle-timeout", "idle timeout must be at most 365 days"),
        ("--drain-timeout", "drain timeout must be at most 365 days"),
    ] {
        // 8761 h is one hour over 365 days.
        for value in ["10000000000000000000s", "8761h"] {
            let out = run(&["serve", "--addr", "127.0.0.1:0", flag, value]);
            let err = stderr_text(&out);
            assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
            assert!(stdout_text(&out).is_empty(), "{flag} {value}");
            assert!(err.contains(needle), "{flag} {value}: {err}");
            assert_eq!(err.lines().count(), 1, "{flag} {value}: {err}");
        }
    }
}

/// `listening on` is the line scripts wait for: a server that cannot start (here: too few
/// descriptors for its event loops, after the port is bound) must not print it.
#[test]
fn serve_start_up_failure_prints_no_listening_line() {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 12 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_chi"))
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "8"])
        .stdin(Stdio::null())
        .output()
        .expect("run chi under a low descriptor limit");
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot start the server"), "{err}");
    assert_eq!(stdout_text(&out), "", "{err}");
}

/// Where a seccomp policy forbids `io_uring_setup` (as container runtimes' default profiles
/// do), `chi serve --model uring` fails at start: one line naming the cause and where to look,
/// exit 1, no `listening on`, no fallback to another model.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn serve_uring_where_seccomp_forbids_io_uring_exits_1_with_one_line() {
    use std::os::unix::process::CommandExt;
    // AUDIT_ARCH_X86_64: EM_X86_64 (62) | 64-bit | little-endian.
    const ARCH: u32 = 0xC000_003E;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump_eq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    // seccomp_data: `nr` at offset 0, `arch` at 4. On x86_64, io_uring_setup fails with EPERM;
    // everything else is allowed.
    let filter = [
        stmt(load, 4),
        jump_eq(ARCH, 0, 3),
        stmt(load, 0),
        jump_eq(libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let install = move || {
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: prctl with integer arguments, and for the filter a pointer to `program`,
        // which points to `filter`: both live until the call returns (the kernel copies the
        // program). Neither call allocates, as the time between fork and exec requires.
        let rc = unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                -1
            } else {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                )
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let mut command = chi();
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--model", "uring"])
        .stdin(Stdio::null());
    // SAFETY: `install` makes two system calls and allocates nothing (see above); the
    // io::Error it may build is from an OS code, which allocates nothing either.
    unsafe { command.pre_exec(install) };
    let out = command.output().expect("run chi under a seccomp filter");
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stdout_text(&out), "", "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot start the uring model"), "{err}");
    assert!(err.contains("io_uring_disabled"), "{err}");
    assert!(err.contains("seccomp"), "{err}");
}

/// The server's resident memory in KiB (VmRSS from /proc).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Clients that push input and never read: the event and uring models stop reading from each
/// at its output cap, so the server's memory stays bounded however much they try to push
/// (here up to 8 × 16 MiB, which a server without the cap would hold); every byte it did take
/// is answered once they read.
#[test]
fn serve_never_reading_clients_keep_server_memory_bounded() {
    never_reading_clients_keep_server_memory_bounded("event");
}

#[cfg(target_os = "linux")]
#[test]
fn serve_uring_never_reading_clients_keep_server_memory_bounded() {
    never_reading_clients_keep_server_memory_bounded("uring");
}

fn never_reading_clients_keep_server_memory_bounded(model: &str) {
    const CLIENTS: usize = 8;
    const LIMIT: usize = 16 << 20;
    let (server, addr) = serve(&["--model", model, "--output-cap", "64KiB", "--workers", "1"]);
    let pid = server.child.id();
    let before = rss_kib(pid);
    let message: Vec<u8> = (0..LIMIT).map(|i| b"abcdefgh"[i % 8]).collect();
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
    // Each client writes until a write makes no progress for 200 ms: the server has stopped
    // reading from it (or took everything).
    let pushed: Vec<usize> = std::thread::scope(|s| {
        let writers: Vec<_> = clients
            .iter()
            .map(|client| {
                let message = &message;
                s.spawn(move || {
                    client
                        .set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut done = 0;
                    while done < LIMIT {
                        match (&*client).write(&message[done..(done + 65536).min(LIMIT)]) {
                            Ok(n) => done += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("write: {e}"),
                        }
                    }
                    done
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let peak = rss_kib(pid);
    let total: usize = pushed.iter().sum();
    assert!(
        peak - before < 24 * 1024,
        "server RSS grew by {} KiB while clients pushed {total} bytes",
        peak - before
    );
    for (client, done) in clients.iter().zip(&pushed) {
        let mut answer = vec![0; *done];
        (&*client).read_exact(&mut answer).unwrap();
        assert!(answer == message[..*done].to_ascii_uppercase());
    }
    drop(clients);
    server.signal("TERM");
    assert!(server.wait().0.success());
}

#[test]
fn serve_second_signal_stops_at_once() {
    let (server, addr) = serve(&["--drain-timeout", "1h"]);
    let mut client = connect(addr);
    roundtrip(&mut client, b"hi");
    server.signal("TERM");
    // Drained: the server sent FIN and now waits (up to an hour) for the client's FIN.
    assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
    server.signal("TERM");
    let (status, stderr) = server.wait();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("received again"), "{stderr}");
    assert!(
        stderr.contains("1 closed at the drain deadline"),
        "{stderr}"
    );
}

#[test]
fn serve_reuse_port_two_processes_share_a_port() {
    let (first, addr) = serve(&["--reuse-port"]);
    let addr_arg = addr.to_string();
    let (second, second_addr) = serve_at(&addr_arg, &["--reuse-port"]);
    assert_eq!(addr, second_addr);
    for _ in 0..4 {
        let mut client = connect(addr);
        roundtrip(&mut client, b"shared");
    }
    first.signal("TERM");
    second.signal("TERM");
    assert!(first.wait().0.success());
    assert!(second.wait().0.success());
}

/// A port on which connections are refused: bound (so no other test can take it) but not
/// listening.
fn refusing_port() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

#[test]
fn client_server_down_exits_4() {
    let (_hold, addr) = refusing_port();
    let addr = addr.to_string();
    let out = run(&["client", &addr, "--count", "1"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr_text(&out);
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn client_server_goes_away_exits_1() {
    let (server, addr) = serve(&[]);
    let addr_arg = addr.to_string();
    let mut client = Proc::spawn(&["client", &addr_arg, "--interval", "20ms"]);
    // Kept open: a closed stdout would end the client successfully before the server leaves.
    let mut stdout = client.stdout();
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "HELLO WORLD\n");
    server.signal("TERM");
    let (status, stderr) = client.wait();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("closed the connection") || stderr.contains("lost the connection"),
        "{stderr}"
    );
    assert!(server.wait().0.success());
}

#[test]
fn client_stdout_closed_is_success() {
    let (server, addr) = serve(&[]);
    let addr_arg = addr.to_string();
    let mut client = Proc::spawn(&["client", "--addr", &addr_arg, "--interval", "1ms"]);
    let mut stdout = client.stdout();
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout); // like `chi client | head -1`
    let (status, stderr) = client.wait();
    assert!(status.success(), "{status}: {stderr}");
    server.signal("TERM");
    assert!(server.wait().0.success());
}
