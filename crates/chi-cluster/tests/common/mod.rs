//! The cluster tests' harness: a `redis-server` of their own per test (on a free loopback
//! port, no persistence unless asked, stopped by PID and reaped), a 3-node Redis Cluster,
//! cluster workers as separate processes (this test binary started again), and bounded waits.
//!
//! Without `redis-server` on the PATH the Redis-backed tests print one line and return, except
//! under CI (`CI=true`), where that is a failure.
#![allow(dead_code)] // each test binary uses a subset

pub(crate) mod gate;
pub(crate) mod tasks;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A bound no correct wait reaches.
pub(crate) const NEVER: Duration = Duration::from_secs(60);

/// Polls `cond` (every few ms, sparing the CPU) until it holds; a test failure naming `what`
/// if it does not within [`NEVER`]. Nothing is asserted about how long it took.
#[track_caller]
pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + NEVER;
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < end, "never happened: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A fresh empty directory for one test, removed when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        // ORDERING: only uniqueness matters.
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("chi-cluster-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a temp dir");
        TempDir(p)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub(crate) fn str(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True when `redis-server` can run here. Otherwise prints the one line (or, under CI,
/// fails the test).
pub(crate) fn have_redis() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "redis-server not found and CI=true: install redis-server (the cluster tests need it)"
        );
        // Once per test binary, straight to the stderr handle: libtest captures `println!`
        // and `eprintln!` of passing tests, not writes to the handle.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "redis-server not found: cluster tests did not run; apt-get install redis-server to run them"
            );
        });
    }
    found
}

/// Makes the child get SIGKILL when this test process dies, so that no server or worker
/// outlives a test run that was killed.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which
    // is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A port nobody listens on right now (the OS picks it; it may be taken again before use,
/// which [`RedisServer::start`] notices and retries).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// Options of one server.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Opts {
    /// Append-only file on, fsync at every write.
    pub(crate) aof: bool,
    /// Redis Cluster mode.
    pub(crate) cluster: bool,
}

/// One `redis-server` process of this test.
#[derive(Debug)]
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    opts: Opts,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// A server without persistence; `None` (after the one line) when Redis is missing.
    pub(crate) fn start() -> Option<RedisServer> {
        RedisServer::start_with(Opts::default())
    }

    pub(crate) fn start_with(opts: Opts) -> Option<RedisServer> {
        if !have_redis() {
            return None;
        }
        let mut dir = TempDir::new("redis");
        for _ in 0..20 {
            let port = free_port();
            let mut s = RedisServer {
                port,
                opts,
                dir,
                child: None,
            };
            if s.launch() {
                return Some(s);
            }
            dir = s.take_dir();
        }
        panic!("could not start redis-server on a free port in 20 tries");
    }

    fn take_dir(self) -> TempDir {
        let mut s = self;
        s.stop();
        std::mem::replace(&mut s.dir, TempDir(PathBuf::new()))
    }

    /// Starts the process on `self.port`; false if it exited (the port was taken).
    fn launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--dir", &self.dir.str()])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if self.opts.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if self.opts.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
            cmd.args(["--cluster-node-timeout", "5000"]);
        }
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start redis-server");
        self.child = Some(child);
        let end = Instant::now() + NEVER;
        loop {
            if self.ping() {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < end,
                "redis-server on {} never answered",
                self.port
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// True when the server answers PING with PONG (a LOADING server does not).
    pub(crate) fn ping(&self) -> bool {
        self.command(&["PING"])
            .is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one command over a plain socket; the first line of the reply.
    pub(crate) fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line)
    }

    /// An integer reply (`:n`).
    pub(crate) fn int(&self, args: &[&str]) -> i64 {
        let r = self.command(args).unwrap_or_default();
        r.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{args:?} gave {r:?}, not an integer"))
    }

    /// A numeric field of `INFO <section>` (read with `redis-cli`).
    pub(crate) fn info_int(&self, section: &str, field: &str) -> i64 {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "info", section])
            .output()
            .expect("run redis-cli");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in INFO {section}: {text}"))
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap: the broker dies without saving anything more.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again in the same directory (the AOF, if any, is replayed), on a fresh port:
    /// the old one may belong to another test's server by now. Clients that must follow go
    /// through a [`gate::Gate`].
    pub(crate) fn restart(&mut self) {
        self.kill();
        for _ in 0..20 {
            self.port = free_port();
            if self.launch() {
                return;
            }
        }
        panic!("redis-server did not come back on a free port in 20 tries");
    }

    fn stop(&mut self) {
        self.kill();
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three cluster-mode servers joined into one Redis Cluster (no replicas).
#[derive(Debug)]
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub(crate) fn start() -> Option<RedisCluster> {
        let opts = Opts {
            cluster: true,
            ..Opts::default()
        };
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(opts))
            .collect::<Option<_>>()?;
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = cmd
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        eventually("every node reports cluster_state:ok", || {
            nodes.iter().all(|n| cluster_ok(n.port))
        });
        Some(RedisCluster { nodes })
    }

    /// The seed URLs, comma-separated (chi-cluster's form for a Redis Cluster).
    pub(crate) fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn cluster_ok(port: u16) -> bool {
    let Ok(out) = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
    else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
}

// ===== cluster workers as processes =====

/// The environment variable that turns a run of this test binary into a cluster worker.
pub(crate) const WORKER_ENV: &str = "CHI_CLUSTER_TEST_WORKER";

/// How a test worker runs.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSpec {
    pub(crate) url: String,
    pub(crate) queues: Vec<String>,
    /// Local slots.
    pub(crate) slots: usize,
    /// A thread pool instead of a process pool.
    pub(crate) threads: bool,
    pub(crate) heartbeat_ms: u64,
    pub(crate) lease_ms: u64,
    /// Tasks taken beyond the free slots.
    pub(crate) prefetch: usize,
    /// How long a stopping worker lets running tasks finish.
    pub(crate) stop_grace_ms: u64,
}

impl WorkerSpec {
    /// One process-pool slot, heartbeat 100 ms, lease 2 s (short, so that reclaim tests end
    /// soon, yet 20 missed beats: a loaded machine does not make a live worker look dead).
    pub(crate) fn new(url: &str) -> WorkerSpec {
        WorkerSpec {
            url: url.to_owned(),
            queues: vec!["default".into()],
            slots: 1,
            threads: false,
            heartbeat_ms: 100,
            lease_ms: 2000,
            prefetch: 0,
            stop_grace_ms: NEVER.as_millis() as u64,
        }
    }

    pub(crate) fn stop_grace_ms(mut self, ms: u64) -> Self {
        self.stop_grace_ms = ms;
        self
    }

    pub(crate) fn slots(mut self, n: usize) -> Self {
        self.slots = n;
        self
    }

    pub(crate) fn threads(mut self) -> Self {
        self.threads = true;
        self
    }

    /// Heartbeat every `ms`, lease 2.5 × that (at least the default 2 s).
    pub(crate) fn heartbeat_ms(mut self, ms: u64) -> Self {
        self.heartbeat_ms = ms;
        self.lease_ms = (ms * 5 / 2).max(self.lease_ms);
        self
    }

    pub(crate) fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    pub(crate) fn queue(mut self, q: &str) -> Self {
        self.queues = vec![q.to_owned()];
        self
    }

    fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            self.url,
            self.queues.join(","),
            self.slots,
            self.threads,
            self.heartbeat_ms,
            self.lease_ms,
            self.prefetch,
            self.stop_grace_ms
        )
    }

    fn decode(s: &str) -> WorkerSpec {
        let p: Vec<&str> = s.split('|').collect();
        WorkerSpec {
            url: p[0].to_owned(),
            queues: p[1].split(',').map(str::to_owned).collect(),
            slots: p[2].parse().expect("slots"),
            threads: p[3] == "true",
            heartbeat_ms: p[4].parse().expect("heartbeat"),
            lease_ms: p[5].parse().expect("lease"),
            prefetch: p[6].parse().expect("prefetch"),
            stop_grace_ms: p[7].parse().expect("stop grace"),
        }
    }

    /// Starts the worker process.
    pub(crate) fn spawn(&self) -> WorkerProc {
        let exe = std::env::current_exe().expect("the test binary's path");
        let child = Command::new(exe)
            .args([
                "__cluster_worker_entry",
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(WORKER_ENV, self.encode())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a worker process");
        WorkerProc { child: Some(child) }
    }
}

/// A worker process; killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct WorkerProc {
    child: Option<Child>,
}

impl WorkerProc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (a graceful stop).
    pub(crate) fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// The exit code once it has exited (reaped), `None` while it runs.
    pub(crate) fn try_exit(&mut self) -> Option<Option<i32>> {
        let c = self.child.as_mut()?;
        let status = c.try_wait().ok().flatten()?;
        self.child = None;
        Some(status.code())
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `n` workers heartbeat on `queue` of `server`.
#[track_caller]
pub(crate) fn wait_workers(server: &RedisServer, queue: &str, n: i64) {
    let key = format!("chi:{{{queue}}}:workers");
    eventually(&format!("{n} workers heartbeat on {queue}"), || {
        server.int(&["HLEN", &key]) >= n
    });
}

/// A server, one worker (one process-pool slot) and a client with default settings; `None`
/// when Redis is missing.
pub(crate) fn with_worker() -> Option<(RedisServer, WorkerProc, chi_cluster::Cluster)> {
    let (redis, mut workers, client) = with_workers(1)?;
    let worker = workers.pop().expect("one worker");
    Some((redis, worker, client))
}

/// A server, `n` one-slot workers that heartbeat already, and a client.
pub(crate) fn with_workers(
    n: usize,
) -> Option<(RedisServer, Vec<WorkerProc>, chi_cluster::Cluster)> {
    let redis = RedisServer::start()?;
    let workers: Vec<WorkerProc> = (0..n)
        .map(|_| WorkerSpec::new(&redis.url()).spawn())
        .collect();
    wait_workers(&redis, "default", n as i64);
    let client = chi_cluster::Cluster::connect(&redis.url()).expect("the client connects");
    Some((redis, workers, client))
}

/// The body of the hidden worker test: serves until SIGTERM when [`WORKER_ENV`] is set.
pub(crate) fn worker_main() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let spec = WorkerSpec::decode(&spec);
    let mut b = chi_cluster::Worker::builder()
        .connect(&spec.url)
        .queue(&spec.queues[0])
        .heartbeat(Duration::from_millis(spec.heartbeat_ms))
        .lease(Duration::from_millis(spec.lease_ms))
        .prefetch(spec.prefetch)
        .stop_grace(Duration::from_millis(spec.stop_grace_ms));
    b = tasks::register(b);
    b = if spec.threads {
        b.threads(spec.slots)
    } else {
        b.processes(spec.slots)
    };
    let worker = b.build().expect("the test worker starts");
    let stop = worker.stop_handle();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM])
        .expect("install a SIGTERM handler");
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop.stop();
        }
    });
    worker.run().expect("the test worker serves until stopped");
}
