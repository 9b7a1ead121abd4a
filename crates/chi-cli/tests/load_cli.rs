//! `chi load` through the real binary: the report (JSON with --json), exit statuses
//! 0/1/2/3/4, the idle-only mode and its SIGTERM. Servers run in this process on 127.0.0.1:0; every child is waited
//! for (or killed and reaped) on every path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chi_net::load::{End, LoadReport};
use chi_net::{Handler, Model, Server, ServerConfig, ServerHandle};

/// A bound that must never be reached.
const LONG: Duration = Duration::from_secs(30);

fn chi() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chi"))
}

/// Runs `chi load ADDR --json args…` to completion (every run is bounded by --timeout).
fn load(addr: SocketAddr, args: &[&str]) -> Output {
    chi()
        .arg("load")
        .args([&addr.to_string(), "--json", "--timeout", "30s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chi load")
}

fn report(out: &Output) -> LoadReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON line on stdout: {stdout}"
    );
    LoadReport::from_json(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An in-process server on 127.0.0.1:0, shut down and joined when dropped.
struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(handler: impl Handler) -> TestServer {
        let config = ServerConfig::builder()
            .addr("127.0.0.1:0".parse().unwrap())
            .model(Model::Event)
            .workers(1)
            .build()
            .unwrap();
        let server = Server::bind_with(config, handler).unwrap();
        let (addr, handle) = (server.local_addr(), server.handle());
        let thread = std::thread::spawn(move || {
            server.run().expect("test server runs");
        });
        TestServer {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    fn upper() -> TestServer {
        TestServer::start(chi_net::AsciiUpper)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown_now();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A port where nothing listens.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

// ===== success =====

#[test]
fn load_cli_json_counts_every_answer() {
    let server = TestServer::upper();
    let out = load(
        server.addr,
        &[
            "--connections",
            "4",
            "--messages",
            "50",
            "--size",
            "32",
            "--idle",
            "5",
            "--threads",
            "2",
            "--warmup",
            "3",
        ],
    );
    assert!(out.status.success(), "{:?}\n{}", out.status, stderr(&out));
    let r = report(&out);
    assert!(r.passed());
    assert_eq!(r.end, End::Completed);
    assert_eq!(r.messages, 200);
    assert_eq!(r.answers.ok, 4 * 53);
    assert_eq!((r.connected, r.idle_connected), (4, 5));
    assert_eq!((r.size, r.threads, r.warmup), (32, 2, 3));
}

#[test]
fn load_cli_report_is_text_unless_json_is_asked_even_into_a_pipe() {
    let server = TestServer::upper();
    let out = chi()
        .args(["load", &server.addr.to_string(), "-c", "2", "-n", "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("answers: 20 ok"), "{text}");
    assert!(text.contains("result: every answer right"), "{text}");
    assert!(!text.contains('\x1b'), "no colour into a pipe: {text}");
    let json = load(server.addr, &["-c", "2", "-n", "10", "--format", "json"]);
    assert_eq!(report(&json).messages, 20);
}

#[test]
fn load_cli_size_takes_units() {
    let server = TestServer::upper();
    let out = load(
        server.addr,
        &["--connections", "1", "--messages", "2", "--size", "1MiB"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report(&out).size, 1 << 20);
}

// ===== errors counted: exit 3 =====

#[test]
fn load_cli_wrong_server_exits_3() {
    let lower = |input: &[u8], output: &mut Vec<u8>| {
        output.extend(input.iter().map(u8::to_ascii_lowercase));
    };
    let server = TestServer::start(lower);
    let out = load(server.addr, &["--connections", "2", "--messages", "5"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r.answers.wrong, 10);
    assert!(
        stderr(&out).contains("10 answers wrong"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn load_cli_answer_timeout_reports_what_finished_and_exits_3() {
    // Every answer lacks a byte: each client waits for it until --timeout, then gives up.
    let drop_last = |input: &[u8], output: &mut Vec<u8>| {
        let keep = input.len().saturating_sub(1);
        output.extend(input[..keep].iter().map(u8::to_ascii_uppercase));
    };
    let server = TestServer::start(drop_last);
    let out = chi()
        .args([
            "load",
            &server.addr.to_string(),
            "--json",
            "--timeout",
            "300ms",
        ])
        .args(["--connections", "2", "--messages", "3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r.end, End::Completed);
    assert_eq!(r.timed_out, 2);
    assert_eq!((r.answers.short, r.answers.missing), (2, 4));
}

#[test]
fn load_cli_refused_connections_exit_4() {
    let out = load(closed_port(), &["--connections", "3", "--messages", "2"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r.connect_failed, 3);
    assert!(r.connect_error.is_some());
}

// ===== could not run: exit 1; bad command line: exit 2 =====

#[test]
fn load_cli_too_many_connections_for_the_fd_limit_exits_1() {
    let out = load(
        closed_port(),
        &["--connections", "1", "--idle", "100000000"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("file descriptors") && err.contains("ulimit -Hn"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn load_cli_unresolvable_address_exits_4() {
    let out = chi()
        .args(["load", "no-such-host.invalid:1", "--connections", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn load_cli_bad_flags_exit_2() {
    for args in [
        &["--size", "0"][..],
        &["--size", "lots"],
        &["--messages", "0"],
        &["--threads", "0"],
        &["--timeout", "0s"],
        &["--connections", "-1"],
        &["-d", "0s"],
        &["-d", "soon"],
        &["--rate", "0"],
        &["--format", "xml"],
        &["--bogus"],
        // Nothing to do: no active and no idle connections.
        &["--connections", "0"],
    ] {
        let out = chi()
            .args(["load", "127.0.0.1:9"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let first = stderr(&out).lines().next().unwrap_or_default().to_owned();
        assert!(
            first.contains("error"),
            "{args:?} says why in one line: {first}"
        );
    }
}

#[test]
fn load_cli_help_documents_flags_and_exit_codes() {
    let out = chi().args(["load", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--connections",
        "--messages",
        "--size",
        "--threads",
        "--warmup",
        "--idle",
        "--json",
        "--format",
        "--output",
        "--timeout",
        "--duration",
        "--rate",
        "--hdr-log",
        "-c, --connections",
        "-n, --messages",
        "-t, --threads",
        "-d, --duration",
        "-s, --size",
        "Exit status",
        "3    some answers were wrong",
        "4    could not connect",
        "130  interrupted",
        "holding K idle connections",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
    }
}

// ===== idle-only =====

/// A `chi load` child that is killed and reaped if the test fails.
struct Proc(Option<Child>);

impl Proc {
    fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.0.take().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < LONG, "chi load did not exit");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        (status, stdout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn load_cli_idle_only_holds_until_sigterm() {
    let server = TestServer::upper();
    let mut child = chi()
        .args(["load", &server.addr.to_string()])
        .args(["--connections", "0", "--idle", "20", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(Some(child));
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(LONG).expect("the holding line on stderr");
    assert!(
        line.starts_with("holding 20 idle connections to "),
        "{line}"
    );
    let pid = proc.0.as_ref().unwrap().id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let (status, stdout) = proc.wait();
    reader.join().unwrap();
    assert!(status.success(), "{status:?}");
    let r = LoadReport::from_json(stdout.trim()).unwrap();
    assert_eq!(r.end, End::Interrupted);
    assert_eq!((r.idle_connected, r.idle_failed), (20, 0));
}

// ===== timed, open-loop, interrupted runs; output files =====

#[test]
fn load_cli_timed_run_exits_0_with_answers_in_flight_not_missing() {
    let server = TestServer::upper();
    let out = load(server.addr, &["-c", "2", "-d", "300ms"]);
    assert!(out.status.success(), "{:?}\n{}", out.status, stderr(&out));
    let r = report(&out);
    assert_eq!(r.end, End::Duration);
    assert_eq!(r.messages_per_connection, None);
    assert_eq!(r.duration_s, Some(0.3));
    assert!(r.answers.ok > 0);
    assert!(r.answers.in_flight <= 2, "{r:?}");
    assert_eq!(r.errors, 0);
}

#[test]
fn load_cli_rate_reports_the_asked_rate() {
    let server = TestServer::upper();
    let out = load(server.addr, &["-c", "2", "-n", "10", "--rate", "400"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!((r.rate, r.messages), (Some(400), 20));
    let text = chi()
        .args([
            "load",
            &server.addr.to_string(),
            "-c",
            "1",
            "-n",
            "2",
            "--rate",
            "50",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("(asked 50)"), "{text}");
}

#[test]
fn load_cli_sigint_mid_run_exits_130_with_the_report() {
    // The handler says when the first message arrives: the run is then under way.
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let server = TestServer::start(move |input: &[u8], output: &mut Vec<u8>| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        output.extend(input.iter().map(u8::to_ascii_uppercase));
    });
    let child = chi()
        .args([
            "load",
            &server.addr.to_string(),
            "--json",
            "-c",
            "2",
            "-d",
            "60s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(Some(child));
    rx.recv_timeout(LONG).expect("the run starts");
    let pid = proc.0.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (status, stdout) = proc.wait();
    assert_eq!(status.code(), Some(130), "{stdout}");
    let r = LoadReport::from_json(stdout.trim()).unwrap();
    assert_eq!(r.end, End::Interrupted);
    assert!(r.answers.ok > 0, "{r:?}");
}

#[test]
fn load_cli_output_file_takes_the_report() {
    let server = TestServer::upper();
    let dir = TempDir::new("output");
    let file = dir.path.join("report.json");
    let out = load(
        server.addr,
        &["-c", "1", "-n", "5", "-o", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "the report goes to the file only");
    let r = LoadReport::from_json(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(r.messages, 5);
}

#[test]
fn load_cli_hdr_log_holds_every_measured_latency() {
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    let server = TestServer::upper();
    let dir = TempDir::new("hdr");
    let file = dir.path.join("latency.hlog");
    let out = load(
        server.addr,
        &["-c", "2", "-n", "50", "--hdr-log", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read(&file).unwrap();
    let mut counted = 0;
    let mut intervals = 0;
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(h) = entry.expect("a well-formed interval log") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(h.encoded_histogram())
                .unwrap();
            let histogram: hdrhistogram::Histogram<u64> =
                Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            counted += histogram.len();
            intervals += 1;
        }
    }
    assert!(intervals >= 1);
    assert_eq!(counted, report(&out).messages);
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir {
    path: std::path::PathBuf,
}

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("chi-load-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ===== the progress bar =====

#[test]
fn load_cli_progress_bar_follows_stderr_not_stdout() {
    let server = TestServer::upper();
    let dir = TempDir::new("bar");
    let file = dir.path.join("report.json");
    // stderr a pipe: no bar, whatever stdout is.
    let out = load(server.addr, &["-c", "2", "-d", "300ms"]);
    assert!(!stderr(&out).contains("answers"), "{}", stderr(&out));
    // stderr a terminal (util-linux `script` gives the command a pseudo-terminal), stdout a
    // file: the bar shows on the terminal, the report goes to the file.
    let command = format!(
        "{} load {} -c 2 -d 500ms --json > {}",
        env!("CARGO_BIN_EXE_chi"),
        server.addr,
        file.display()
    );
    let Ok(terminal) = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
    else {
        let _ = writeln!(
            std::io::stderr(),
            "load_cli_progress_bar_follows_stderr_not_stdout: terminal half NOT RUN: \
             `script` (util-linux) is not installed"
        );
        return;
    };
    assert!(
        terminal.status.success(),
        "{}",
        String::from_utf8_lossy(&terminal.stdout)
    );
    let seen = String::from_utf8_lossy(&terminal.stdout);
    assert!(
        seen.contains("answers") && seen.contains("=>"),
        "no bar on the terminal: {seen:?}"
    );
    let r = LoadReport::from_json(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(r.end, End::Duration);
}
