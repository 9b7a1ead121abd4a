//! One supervisor thread per worker slot: starts the worker process, checks its build in the
//! hand-shake, reads its answers, enforces the task timeout, notices its death, reaps it, and
//! starts the next one.
//!
//! ```text
//!        ┌─────────────── wait_to_start (back-off after failed starts) ◀──────────────┐
//!        ▼                                                                            │
//!   spawn ── HELLO? ── fingerprint ok? ── WELCOME ── READY? ──▶ serve ──▶ reap ── worker_gone
//!     │         │             │                        │          (poll: socket, wake, pidfd)
//!     └─────────┴─────────────┴────────────────────────┴──▶ kill, reap, start_failed
//! ```
//!
//! The thread that spawns a worker is the one that reaps it, and it outlives the worker: the
//! worker's parent-death signal (`PR_SET_PDEATHSIG`) is tied to the spawning *thread*.

use super::dispatch::{RING_SLOTS, Shared, exit_reason};
use super::link::Link;
use super::protocol::Marker;
use super::protocol::{self, FrameBuf, FromWorker, HANDSHAKE_MAX, Hello, WELCOME, Welcome};
use super::ring::Ring;
use super::sys::fd::{self, Ready};
use super::sys::process;
use super::{entry, func};
use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker that closed its socket gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How much one wake-up reads before it processes what it has.
const READ_BATCH: usize = 4 << 20;

thread_local! {
    /// Set on supervisor threads: `shutdown` called from a done-callback must not wait for
    /// its own thread.
    static ON_SUPERVISOR: Cell<bool> = const { Cell::new(false) };
}

/// True on a supervisor thread (of any pool).
pub(crate) fn on_supervisor() -> bool {
    ON_SUPERVISOR.get()
}

/// Starts the supervisor threads.
pub(crate) fn start_all(shared: &Arc<Shared>) -> io::Result<()> {
    let mut threads = shared.threads.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..shared.cfg.workers {
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("chi-proc-{i}"))
            .spawn(move || supervise(s, i));
        match spawned {
            Ok(h) => threads.push(h),
            Err(e) => {
                // Those already running exit once the pool is closed with nothing queued.
                for _ in i..shared.cfg.workers {
                    shared.supervisor_exited();
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

fn supervise(shared: Arc<Shared>, i: usize) {
    ON_SUPERVISOR.set(true);
    while shared.wait_to_start(i) {
        match start(&shared, i) {
            Ok((link, inbuf)) => {
                shared.worker_ready(i, &link);
                let broke = serve(&shared, i, &link, inbuf);
                if let Some(why) = &broke {
                    tracing::warn!(pid = link.pid, %why, "killing a process-pool worker that broke the protocol");
                    link.kill();
                }
                let status = link.reap(EXIT_GRACE);
                shared.worker_gone(i, &link, status);
            }
            // Shut down while it started: not a failure, nothing to report.
            Err(_) if shared.closed_and_idle() => {}
            Err(why) => shared.start_failed(i, &why),
        }
    }
    shared.supervisor_exited();
}

// ===== start =====

fn spawn(shared: &Shared, i: usize) -> Result<Arc<Link>, String> {
    let cfg = &shared.cfg;
    let io_err = |what: &str, e: io::Error| format!("could not {what} for a worker: {e}");
    let (ours, theirs) = UnixStream::pair().map_err(|e| io_err("create a socket pair", e))?;
    let mut ring = Ring::create(RING_SLOTS).map_err(|e| io_err("create the claim ring", e))?;
    // A close-on-exec copy of our stdout that the worker makes its own stdout after the test
    // harness (if any) has printed its banner to /dev/null.
    let out = std::io::stdout().as_fd().try_clone_to_owned().ok();
    // The worker rings this slot's wake-up eventfd (see `bell.rs`); a close-on-exec copy.
    let bell = shared.wakers[i]
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| io_err("share the doorbell", e))?;
    let marker = Marker {
        parent: std::process::id(),
        sock: theirs.as_raw_fd(),
        ring: ring.raw_fd(),
        stdout: out.as_ref().map_or(-1, |f| f.as_raw_fd()),
        bell: bell.as_raw_fd(),
        slots: RING_SLOTS,
    };
    let mut cmd = Command::new(&cfg.program);
    cmd.args(entry::WORKER_ARGS)
        .env(entry::MARKER, marker.encode())
        .stdin(Stdio::null())
        .stdout(if out.is_some() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stderr(Stdio::inherit());
    for (k, v) in &cfg.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    process::prepare_worker(
        &mut cmd,
        [marker.sock, marker.ring, marker.stdout, marker.bell],
        marker.parent,
    );
    let child = cmd.spawn().map_err(|e| {
        format!(
            "could not start a worker process from {}: {e}",
            cfg.program.display()
        )
    })?;
    shared.spawned();
    drop(theirs);
    drop(out);
    drop(bell);
    ring.close_fd();
    let pidfd = process::pidfd_open(child.id()).ok();
    Ok(Arc::new(Link::new(
        child,
        ours.into(),
        ring,
        pidfd,
        shared.wakers[i].clone(),
    )))
}

/// Reads what the socket has now into `inbuf`. True at end of stream (or a dead socket).
fn read_available(link: &Link, inbuf: &mut FrameBuf) -> bool {
    const MAX_READ: usize = 1 << 20;
    let mut total = 0;
    while total < READ_BATCH {
        let buf = inbuf.read_space(64 << 10);
        let offered = (buf.capacity() - buf.len()).min(MAX_READ);
        match fd::recv_into(link.sock(), buf, MAX_READ, false) {
            Ok(0) => return true,
            // Less than offered: drained for now (saves a recv per wake-up).
            Ok(n) if n < offered => return false,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    false
}

/// Why the hand-shake ended early.
enum Early {
    Eof,
    Timeout,
    Protocol(String),
    /// The pool was shut down with nothing queued while this worker started.
    Closed,
}

/// The next hand-shake message, waiting at most until `deadline` (`None`: no limit).
fn handshake_msg(
    shared: &Shared,
    i: usize,
    link: &Link,
    inbuf: &mut FrameBuf,
    deadline: Option<Instant>,
) -> Result<FromWorker<'static>, Early> {
    let mut ended = false;
    loop {
        if let Some(r) = inbuf
            .next_frame()
            .map_err(|e| Early::Protocol(e.to_string()))?
        {
            return match protocol::decode_from_worker(inbuf.get(r)) {
                Ok(FromWorker::Hello(h)) => Ok(FromWorker::Hello(h)),
                Ok(FromWorker::Ready) => Ok(FromWorker::Ready),
                Ok(FromWorker::InitFailed(m)) => Ok(FromWorker::InitFailed(m)),
                Ok(FromWorker::Done(..)) => Err(Early::Protocol(
                    "a result before the hand-shake ended".into(),
                )),
                Err(e) => Err(Early::Protocol(e.to_string())),
            };
        }
        if ended {
            return Err(Early::Eof);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Early::Timeout);
        }
        let wake = &shared.wakers[i];
        let mut fds = vec![
            fd::watch(link.sock(), true, link.wants_write()),
            fd::watch(wake.as_fd(), true, false),
        ];
        if let Some(p) = link.pidfd() {
            fds.push(fd::watch(p, true, false));
        }
        fd::poll(&mut fds, deadline.map(|d| d - now))
            .map_err(|e| Early::Protocol(e.to_string()))?;
        if fds[1].readable() {
            wake.drain();
            if shared.closed_and_idle() {
                return Err(Early::Closed);
            }
        }
        if fds[0].writable() {
            link.flush();
        }
        let exited = fds.get(2).is_some_and(Ready::readable);
        if fds[0].readable() || exited {
            // After an exit, whatever it wrote is in the socket already: one read takes it.
            ended = read_available(link, inbuf) || exited;
        }
    }
}

/// Starts slot `i`'s worker and runs the hand-shake. On failure the process is reaped and the
/// error says what went wrong and, where it helps, how to fix it.
fn start(shared: &Shared, i: usize) -> Result<(Arc<Link>, FrameBuf), String> {
    let cfg = &shared.cfg;
    let link = spawn(shared, i)?;
    let mut inbuf = FrameBuf::new(HANDSHAKE_MAX);
    let deadline = crate::limits::deadline_after(cfg.startup_timeout);
    let fail = |link: &Link, stage: &str, e: Early| -> String {
        let why = match e {
            Early::Eof => {
                let st = link.reap(EXIT_GRACE);
                format!("the worker process ended ({}) {stage}", exit_reason(st))
            }
            Early::Timeout => {
                link.kill();
                link.reap(EXIT_GRACE);
                format!(
                    "the worker process did not answer within {:?} {stage}",
                    cfg.startup_timeout
                )
            }
            Early::Protocol(m) => {
                link.kill();
                link.reap(EXIT_GRACE);
                format!("the worker process broke the protocol {stage}: {m}")
            }
            Early::Closed => {
                link.kill();
                link.reap(EXIT_GRACE);
                return "the pool was shut down while the worker started".to_owned();
            }
        };
        if stage == BEFORE_HELLO {
            format!(
                "{why}; does the program's main() start with chi::process_pool::init() \
                 (in a test binary: chi::process_pool_test_entry!())?"
            )
        } else {
            why
        }
    };
    const BEFORE_HELLO: &str = "before its hand-shake";
    let hello: Hello = match handshake_msg(shared, i, &link, &mut inbuf, deadline) {
        Ok(FromWorker::Hello(h)) => h,
        Ok(_) => {
            return Err(fail(
                &link,
                BEFORE_HELLO,
                Early::Protocol("no HELLO first".into()),
            ));
        }
        Err(e) => return Err(fail(&link, BEFORE_HELLO, e)),
    };
    if hello.protocol != protocol::PROTOCOL_VERSION {
        let e = Early::Protocol(format!(
            "protocol version {} (the pool speaks {})",
            hello.protocol,
            protocol::PROTOCOL_VERSION
        ));
        return Err(fail(&link, "in its hand-shake", e));
    }
    if let Err(why) = func::verify(&hello.fingerprint) {
        link.kill();
        link.reap(EXIT_GRACE);
        return Err(why);
    }
    let welcome = Welcome {
        fingerprint: func::fingerprint().clone(),
        max_frame: cfg.max_message as u64,
        init: cfg.init.clone(),
    };
    let mut encoded = Ok(());
    link.send_with(|b| encoded = protocol::encode_frame(b, WELCOME, &welcome, cfg.max_message));
    if let Err(e) = encoded {
        link.kill();
        link.reap(EXIT_GRACE);
        return Err(format!("the initializer's argument could not be sent: {e}"));
    }
    match handshake_msg(shared, i, &link, &mut inbuf, deadline) {
        Ok(FromWorker::Ready) => {}
        Ok(FromWorker::InitFailed(m)) => {
            link.reap(EXIT_GRACE);
            return Err(format!("the worker's initializer failed: {m}"));
        }
        Ok(_) => {
            return Err(fail(
                &link,
                "during start-up",
                Early::Protocol("expected READY".into()),
            ));
        }
        Err(e) => return Err(fail(&link, "during start-up (in its initializer?)", e)),
    }
    inbuf.set_max(cfg.max_message + 64);
    Ok((link, inbuf))
}

// ===== serve =====

/// Runs slot `i`'s worker until it is gone. `Some(why)` if it broke the protocol.
fn serve(shared: &Shared, i: usize, link: &Link, mut inbuf: FrameBuf) -> Option<String> {
    let wake = &shared.wakers[i];
    let bell = link.ring.bell();
    let mut batch = Vec::new();
    let (mut timeout, mut bell_at) = shared.tick(i, link);
    // The last sleep on the bell ended with nothing to report: the worker is in a long
    // message, so watch the socket until it answers.
    let mut stalled = false;
    loop {
        // With several messages queued on the worker, sleep on the doorbell rather than on
        // the socket: the worker rings once it is down to the low mark (see `bell.rs`). Only with a
        // pidfd, which reports the worker's death that a silent bell would not.
        let try_arm = !stalled && link.pidfd().is_some() && bell_at.is_some();
        let armed = try_arm && bell_at.is_some_and(|(l, _)| bell.arm(l));
        if try_arm && !armed {
            // The worker may have seen the request for a moment and not rung for an answer it
            // put in the claim ring (see `Bell::arm`): read those before sleeping without it.
            match shared.results(i, &[], &inbuf) {
                // A new first message: its timeout (and a due shutdown) is to be looked at.
                Ok(true) => (timeout, _) = shared.tick(i, link),
                Ok(false) => {}
                Err(why) => return Some(why),
            }
        }
        if armed {
            // The worker rings for an answer it puts in the claim ring while the supervisor
            // is awake, which would end this sleep at once: forget those rings (what they
            // announced is read when the sleep ends; any other reason to wake is looked at
            // within the sleep's bound). A ring that came after the arm used the request
            // up: then the sleep must end at once after all.
            wake.drain();
            if !bell.armed() {
                wake.notify();
            }
        }
        let mut fds = [
            fd::watch(link.sock(), !armed, link.wants_write()),
            fd::watch(wake.as_fd(), true, false),
            fd::watch(link.pidfd().unwrap_or(wake.as_fd()), true, false),
        ];
        let n = if link.pidfd().is_some() { 3 } else { 2 };
        // Without a pidfd an exit that leaves the socket open (a forked grandchild holds it)
        // is noticed by polling the status.
        let wait = if let (true, Some((_, most))) = (armed, bell_at) {
            Some(timeout.map_or(most, |t| t.min(most)))
        } else if link.pidfd().is_some() {
            timeout
        } else {
            Some(timeout.map_or(Duration::from_millis(50), |t| {
                t.min(Duration::from_millis(50))
            }))
        };
        let polled = fd::poll(&mut fds[..n], wait);
        if armed {
            bell.disarm();
        }
        if let Err(e) = polled {
            return Some(format!("poll failed: {e}"));
        }
        stalled = armed && !fds[..n].iter().any(|f| f.readable() || f.writable());
        if fds[1].readable() {
            wake.drain();
        }
        if fds[0].writable() {
            link.flush();
        }
        let exited = if n == 3 {
            fds[2].readable()
        } else {
            link.try_status().is_some()
        };
        // Armed, the socket was not watched: whatever woke us, read what arrived.
        let eof = (fds[0].readable() || exited || armed) && read_available(link, &mut inbuf);
        loop {
            match inbuf.next_frame() {
                Ok(Some(r)) => match protocol::decode_from_worker(inbuf.get(r.clone())) {
                    Ok(FromWorker::Done(h, items)) => batch.push((h, r.end - items.len()..r.end)),
                    Ok(other) => return Some(format!("unexpected message {other:?}")),
                    Err(e) => return Some(e.to_string()),
                },
                Ok(None) => break,
                Err(e) => return Some(e.to_string()),
            }
        }
        // Also with no frame: answers in the claim ring make no sound on the socket.
        let r = shared.results(i, &batch, &inbuf);
        batch.clear();
        if let Err(why) = r {
            return Some(why);
        }
        (timeout, bell_at) = shared.tick(i, link);
        if eof || exited {
            if exited && !eof {
                // The process is gone but something else holds its socket open: take what
                // arrived before it died, then stop.
                while !read_available(link, &mut inbuf) {
                    if !fd::wait_readable(link.sock(), Some(Duration::ZERO)).unwrap_or(false) {
                        break;
                    }
                }
                continue_frames(shared, i, &mut inbuf);
            }
            return None;
        }
    }
}

/// Processes complete frames left in `inbuf` after the worker is gone.
fn continue_frames(shared: &Shared, i: usize, inbuf: &mut FrameBuf) {
    let mut batch = Vec::new();
    while let Ok(Some(r)) = inbuf.next_frame() {
        if let Ok(FromWorker::Done(h, items)) = protocol::decode_from_worker(inbuf.get(r.clone())) {
            batch.push((h, r.end - items.len()..r.end));
        }
    }
    let _ = shared.results(i, &batch, inbuf);
}
