//! The worker process's loop: hand-shake, initializer, then read a message, claim it in the
//! ring, run every item under `catch_unwind`, write the results, repeat. Single-threaded;
//! the user's function runs on this thread.
//!
//! The worker reads input in batches (several messages per `recv` when the parent is ahead)
//! but writes each message's results before it starts the next message, so results already
//! computed are never lost to a later crash. While a write waits for room it keeps reading, so
//! parent and worker can never both be stuck writing.

use super::bell::Bell;
use super::func::{self, Call, SameBuild};
use super::protocol::{
    self, ARG_CODEC, DONE, DoneHeader, DoneStatus, FrameBuf, HANDSHAKE_MAX, HELLO, Hello,
    INIT_FAILED, Items, LEN_BYTES, Marker, PROTOCOL_VERSION, READY, RESULT_CODEC, RunHeader,
    ToWorker,
};
use super::ring::{REVOKED, Ring};
use super::sys::fd::{self, EventFd, Ready};
use super::sys::image::Image;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Exit code of a worker that could not start (bad descriptors, hand-shake, build mismatch).
const EXIT_STARTUP: i32 = 86;
/// Exit code of a worker whose initializer failed.
const EXIT_INIT: i32 = 87;
/// Exit code of a worker that got a message it cannot make sense of.
const EXIT_PROTOCOL: i32 = 88;

/// A reason to stop: the exit code and what to print on stderr (nothing for a normal end).
struct Stop(i32, Option<String>);

/// Runs the worker and exits the process.
pub(crate) fn run(m: Marker) -> ! {
    let code = match serve(m) {
        Ok(()) => 0,
        Err(Stop(code, msg)) => {
            if let Some(msg) = msg {
                eprintln!("chi process-pool worker {}: {msg}", std::process::id());
            }
            code
        }
    };
    let _ = io::stdout().flush();
    std::process::exit(code)
}

fn startup(what: &str, e: impl std::fmt::Display) -> Stop {
    Stop(EXIT_STARTUP, Some(format!("{what}: {e}")))
}

/// The worker's end of the socket.
struct Conn {
    sock: OwnedFd,
    inbuf: FrameBuf,
    /// Input read while a write waited for room; moved into `inbuf` before the next read.
    spill: Vec<u8>,
}

impl Conn {
    /// The range of the next frame's body; `None` at end of stream (the parent is gone or
    /// closed the pool).
    fn next_frame(&mut self) -> Result<Option<std::ops::Range<usize>>, Stop> {
        if !self.spill.is_empty() {
            self.inbuf.push(&self.spill);
            self.spill.clear();
        }
        loop {
            match self.inbuf.next_frame() {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {}
                Err(e) => return Err(Stop(EXIT_PROTOCOL, Some(e.to_string()))),
            }
            match fd::recv_into(
                self.sock.as_fd(),
                self.inbuf.read_space(64 << 10),
                1 << 20,
                true,
            ) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(None),
            }
        }
    }
}

/// The worker's side of the doorbell (see `bell.rs`): the shared words and the eventfd.
#[derive(Clone, Copy)]
struct Doorbell<'a> {
    words: Bell<'a>,
    fd: &'a EventFd,
}

/// Writes all of `data`, reading input into `spill` whenever the socket is full. Returns
/// false if the parent is gone. Before waiting for room it rings `bell`, if the supervisor
/// sleeps on it (and would otherwise never read).
fn send_all(sock: &OwnedFd, data: &[u8], spill: &mut Vec<u8>, bell: Option<Doorbell<'_>>) -> bool {
    let mut off = 0;
    let mut blocked = false;
    let sent = loop {
        if off >= data.len() {
            break true;
        }
        match fd::send_nonblocking(sock.as_fd(), &data[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(b) = bell {
                    blocked = true;
                    if b.words.blocking() {
                        b.fd.notify();
                    }
                }
                let mut fds = [fd::watch(sock.as_fd(), true, true)];
                if fd::poll(&mut fds, None).is_err() {
                    break false;
                }
                if fds[0].readable() {
                    match fd::recv_into(sock.as_fd(), spill, 1 << 20, false) {
                        Ok(0) => break false,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => break false,
                    }
                }
            }
            Err(_) => break false,
        }
    };
    if blocked && let Some(b) = bell {
        b.words.unblocked();
    }
    sent
}

fn serve(m: Marker) -> Result<(), Stop> {
    let sock =
        fd::adopt_inherited_fd(m.sock).map_err(|e| startup("the socket from the pool", e))?;
    let ring_fd =
        fd::adopt_inherited_fd(m.ring).map_err(|e| startup("the claim ring from the pool", e))?;
    let bell_fd = EventFd::adopt(
        fd::adopt_inherited_fd(m.bell).map_err(|e| startup("the doorbell from the pool", e))?,
    );
    if m.stdout >= 0 {
        let out =
            fd::adopt_inherited_fd(m.stdout).map_err(|e| startup("stdout from the pool", e))?;
        let _ = io::stdout().flush();
        fd::redirect_stdout(out).map_err(|e| startup("restoring stdout", e))?;
    }
    let is_socket = std::fs::File::from(sock.try_clone().map_err(|e| startup("the socket", e))?)
        .metadata()
        .map(|md| std::os::unix::fs::FileTypeExt::is_socket(&md.file_type()))
        .unwrap_or(false);
    if !is_socket {
        return Err(startup("the socket from the pool", "not a socket"));
    }
    let mut conn = Conn {
        sock,
        inbuf: FrameBuf::new(HANDSHAKE_MAX),
        spill: Vec::new(),
    };

    // HELLO → WELCOME
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        fingerprint: func::fingerprint().clone(),
        pid: std::process::id(),
    };
    let mut out = Vec::new();
    protocol::encode_frame(&mut out, HELLO, &hello, HANDSHAKE_MAX)
        .map_err(|e| startup("encoding HELLO", e))?;
    if !send_all(&conn.sock, &out, &mut conn.spill, None) {
        return Ok(());
    }
    // The WELCOME may carry a large initializer argument: accept up to 4 GiB here, the
    // parent is trusted once it is known to be the same build, which is checked next.
    conn.inbuf.set_max(u32::MAX as usize);
    let Some(r) = conn.next_frame()? else {
        return Ok(());
    };
    let welcome = match protocol::decode_to_worker(conn.inbuf.get(r)) {
        Ok(ToWorker::Welcome(w)) => w,
        Ok(_) => return Err(Stop(EXIT_PROTOCOL, Some("expected WELCOME".into()))),
        Err(e) => return Err(Stop(EXIT_PROTOCOL, Some(e.to_string()))),
    };
    let verified = func::verify(&welcome.fingerprint).map_err(|e| Stop(EXIT_STARTUP, Some(e)))?;
    let max = usize::try_from(welcome.max_frame).unwrap_or(usize::MAX);
    conn.inbuf.set_max(max.saturating_add(64));
    let ring = Ring::attach(ring_fd, m.slots).map_err(|e| startup("mapping the claim ring", e))?;
    let bell = Doorbell {
        words: ring.bell(),
        fd: &bell_fd,
    };
    let image = func::image();

    // Initializer → READY | INIT_FAILED
    out.clear();
    if let Some(init) = &welcome.init {
        let ran = match func::init_entry_at(image, &init.func, &verified) {
            Some(entry) => entry(image, &init.func, &verified, &init.arg),
            None => Err("the initializer could not be found in the worker".into()),
        };
        if let Err(msg) = ran {
            let _ = protocol::encode_frame(&mut out, INIT_FAILED, &msg, HANDSHAKE_MAX);
            send_all(&conn.sock, &out, &mut conn.spill, None);
            return Err(Stop(EXIT_INIT, None));
        }
    }
    protocol::encode_empty(&mut out, READY);
    if !send_all(&conn.sock, &out, &mut conn.spill, None) {
        return Ok(());
    }

    // MAIN LOOP
    loop {
        let Some(r) = conn.next_frame()? else {
            return Ok(());
        };
        out.clear();
        if out.capacity() > 4 << 20 {
            out.shrink_to(64 << 10);
        }
        match protocol::decode_to_worker(conn.inbuf.get(r)) {
            Ok(ToWorker::Run(h, items)) => {
                let ctx = Ctx {
                    image,
                    verified: &verified,
                    ring: &ring,
                    max,
                };
                if !run_message(&ctx, &h, items, &mut out)? {
                    // The parent decided to kill this worker; its signal is on the way.
                    return Ok(());
                }
                // While the supervisor sleeps on the bell, a small answer goes into the
                // message's claim slot: no system call, unless the supervisor must be woken
                // to read it. Otherwise the socket: a supervisor that watches it is woken by
                // the write (and the kernel runs it on this CPU, where an eventfd ring can
                // wake it on another, idle one: 20-100 µs more per round trip here).
                if bell.words.armed()
                    && let Some(body) = out.get(LEN_BYTES..)
                    && ring.put_answer(h.slot as usize, h.seq, body)
                {
                    if bell.words.answered() {
                        bell.fd.notify();
                    }
                    continue;
                }
            }
            Ok(ToWorker::Shutdown) => return Ok(()),
            Ok(ToWorker::Welcome(_)) => {
                return Err(Stop(EXIT_PROTOCOL, Some("a second WELCOME".into())));
            }
            Err(e) => return Err(Stop(EXIT_PROTOCOL, Some(e.to_string()))),
        }
        if !send_all(&conn.sock, &out, &mut conn.spill, Some(bell)) {
            return Ok(());
        }
        // The results are in the socket: ring if the supervisor sleeps on the bell and the
        // worker is down to its low mark.
        if bell.words.due() {
            bell.fd.notify();
        }
    }
}

struct Ctx<'a> {
    image: &'a Image,
    verified: &'a SameBuild,
    ring: &'a Ring,
    max: usize,
}

/// Claims and runs one message, leaving its `DONE` frame in `out`. False if the parent asked
/// for this worker to be killed while the message ran.
fn run_message(
    ctx: &Ctx<'_>,
    h: &RunHeader,
    items: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, Stop> {
    let slot = h.slot as usize;
    ctx.ring.bell().took_one();
    if slot >= ctx.ring.slots() {
        return Err(Stop(
            EXIT_PROTOCOL,
            Some(format!("claim slot {slot} out of range")),
        ));
    }
    if let Err((seq, claim)) = ctx.ring.start(slot, h.seq) {
        if seq == h.seq && claim.state == REVOKED {
            let done = DoneHeader {
                seq: h.seq,
                status: DoneStatus::Skipped,
                count: 0,
            };
            protocol::encode_frame(out, DONE, &done, ctx.max)
                .map_err(|e| Stop(EXIT_PROTOCOL, Some(e)))?;
            return Ok(true);
        }
        return Err(Stop(
            EXIT_PROTOCOL,
            Some(format!(
                "message {} found claim word of message {seq}",
                h.seq
            )),
        ));
    }
    let start = protocol::begin_frame(out, DONE);
    let done = DoneHeader {
        seq: h.seq,
        status: DoneStatus::Ran,
        count: h.count,
    };
    protocol::encode_into(&done, out).map_err(|e| Stop(EXIT_PROTOCOL, Some(e.to_string())))?;
    let items_at = out.len();
    let call = Call {
        image: ctx.image,
        func: &h.func,
        verified: ctx.verified,
        items,
        max_item: ctx.max,
    };
    let ran = match func::entry_at(ctx.image, &h.func, ctx.verified) {
        Some(entry) => entry(&call, out),
        None => Err("the task function could not be found in the worker".into()),
    };
    if ctx.ring.finish(slot, h.seq) {
        return Ok(false);
    }
    if let Err(msg) = ran {
        out.truncate(items_at);
        for _ in 0..h.count {
            protocol::push_item(out, ARG_CODEC, msg.as_bytes());
        }
    }
    if let Err(e) = protocol::end_frame(out, start, ctx.max) {
        // Each result fit, but all of them together do not: fail them all, say why.
        out.truncate(start);
        let msg = format!(
            "{e}: the results of this chunk together are too large; use a smaller chunksize"
        );
        let start = protocol::begin_frame(out, DONE);
        protocol::encode_into(&done, out).map_err(|e| Stop(EXIT_PROTOCOL, Some(e.to_string())))?;
        for _ in Items::new(items) {
            protocol::push_item(out, RESULT_CODEC, msg.as_bytes());
        }
        protocol::end_frame(out, start, ctx.max)
            .map_err(|e| Stop(EXIT_PROTOCOL, Some(e.to_string())))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::interprocess::AtomicU64;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// A worker whose socket is full while its supervisor sleeps on the doorbell (not reading)
    /// rings the bell before it waits for room; once the peer reads, the write completes and
    /// the worker is no longer marked as waiting.
    #[test]
    fn a_write_that_waits_for_room_rings_an_armed_bell() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let ours = OwnedFd::from(ours);
        let words: [AtomicU64; super::super::bell::WORDS] =
            std::array::from_fn(|_| AtomicU64::new(0));
        let bell = Bell::over(&words);
        bell.sent(3);
        assert!(bell.arm(0), "the supervisor sleeps on the bell");
        let fd = EventFd::new().unwrap();
        let data = vec![7u8; 8 << 20]; // far more than a socket buffer holds
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut spill = Vec::new();
                send_all(
                    &ours,
                    &data,
                    &mut spill,
                    Some(Doorbell {
                        words: bell,
                        fd: &fd,
                    }),
                )
            });
            let rang = fd::wait_readable(fd.as_fd(), Some(Duration::from_secs(60))).unwrap();
            // Read it all either way, so that a failure ends the writer too.
            let mut got = 0;
            let mut buf = vec![0u8; 1 << 20];
            while got < data.len() {
                let n = theirs.read(&mut buf).unwrap();
                assert!(n > 0 && buf[..n].iter().all(|&b| b == 7));
                got += n;
            }
            assert!(writer.join().unwrap(), "the write went through");
            assert!(rang, "the blocked writer never rang");
        });
        assert!(bell.arm(0), "no longer marked as waiting for room");
    }
}
