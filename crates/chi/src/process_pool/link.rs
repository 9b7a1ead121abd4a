//! [`Link`]: the parent's handle on one worker process: its socket and the bytes waiting to
//! go out on it, its claim ring, and the child process itself (kill and reap).
//!
//! Sending never blocks: any thread appends frames to the outbox and sends what the socket
//! takes at once; if something is left, the worker's supervisor is woken to wait for room
//! (`POLLOUT`) while it keeps reading. Since neither side ever blocks writing without also
//! reading, a large argument and a large result crossing at the same time cannot deadlock.
//!
//! Killing and reaping go through the same lock on the `Child`, and std's `Child::kill` does
//! nothing once the child was reaped, so a kill can never hit a recycled pid.
//!
//! The worker leads its own process group. Whenever it is killed, and whenever it has exited
//! and is about to be reaped, the whole group gets SIGKILL first: processes its tasks started
//! (and did not move to a group of their own) end with the worker. The group is killed only
//! while the worker is alive or a zombie, so its id cannot have been reused.

use super::ring::Ring;
use super::sys::fd::{self, EventFd};
use super::sys::process;
use crate::loom::sync::{Mutex, MutexGuard};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes queued for a worker and not yet taken by its socket.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Frames to send; `buf[sent..]` is what is left.
    pub(crate) buf: Vec<u8>,
    sent: usize,
    /// The supervisor was asked to wait for room.
    waiting: bool,
    /// A send failed for good (the worker is gone): everything queued is dropped.
    broken: bool,
}

/// One worker process, as its pool sees it.
#[derive(Debug)]
pub(crate) struct Link {
    /// The worker's process id.
    pub(crate) pid: u32,
    sock: OwnedFd,
    out: Mutex<Outbox>,
    /// The claim ring shared with this worker.
    pub(crate) ring: Ring,
    child: Mutex<Proc>,
    pidfd: Option<OwnedFd>,
    wake: Arc<EventFd>,
}

/// The worker process and whether it was reaped (after which its group is never signalled).
#[derive(Debug)]
struct Proc {
    child: Child,
    reaped: bool,
}

impl Proc {
    /// SIGKILL to the worker's group and the worker, unless it was reaped.
    fn kill(&mut self, pid: u32) {
        if !self.reaped {
            process::kill_group(pid);
            let _ = self.child.kill();
        }
    }

    /// The exit status if the worker has exited, reaping it; its group is killed first.
    fn try_wait(&mut self, pid: u32) -> Option<ExitStatus> {
        if !self.reaped && process::exited_unreaped(pid) {
            process::kill_group(pid);
        }
        let st = self.child.try_wait().ok().flatten();
        self.reaped |= st.is_some();
        st
    }

    /// Kills the group and the worker and waits for it.
    fn kill_and_wait(&mut self, pid: u32) -> Option<ExitStatus> {
        self.kill(pid);
        let st = self.child.wait().ok();
        self.reaped |= st.is_some();
        st
    }
}

impl Link {
    pub(crate) fn new(
        child: Child,
        sock: OwnedFd,
        ring: Ring,
        pidfd: Option<OwnedFd>,
        wake: Arc<EventFd>,
    ) -> Link {
        Link {
            pid: child.id(),
            sock,
            out: Mutex::new(Outbox::default()),
            ring,
            child: Mutex::new(Proc {
                child,
                reaped: false,
            }),
            pidfd,
            wake,
        }
    }

    /// The parent's end of the socket.
    pub(crate) fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Readable once the process has exited (absent on kernels without pidfd).
    pub(crate) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }

    /// The outbox, locked, for appending frames; follow with [`Link::flush_locked`].
    pub(crate) fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends frames with `f` and sends what fits now.
    pub(crate) fn send_with(&self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut o = self.outbox();
        f(&mut o.buf);
        self.flush_locked(&mut o);
    }

    /// Sends what the socket takes without blocking; asks the supervisor to wait for room if
    /// anything is left.
    pub(crate) fn flush_locked(&self, o: &mut Outbox) {
        if o.broken {
            o.buf.clear();
            o.sent = 0;
            return;
        }
        while o.sent < o.buf.len() {
            match fd::send_nonblocking(self.sock(), &o.buf[o.sent..]) {
                Ok(n) => o.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !o.waiting {
                        o.waiting = true;
                        self.wake.notify();
                    }
                    return;
                }
                Err(_) => {
                    // The worker is gone; its supervisor learns that from the socket/pidfd.
                    o.broken = true;
                    o.buf.clear();
                    o.sent = 0;
                    return;
                }
            }
        }
        o.buf.clear();
        o.sent = 0;
        o.waiting = false;
        if o.buf.capacity() > 4 << 20 {
            o.buf.shrink_to(64 << 10);
        }
    }

    /// Wakes this worker's supervisor out of `poll` (to re-read its deadlines).
    pub(crate) fn wake_supervisor(&self) {
        self.wake.notify();
    }

    /// Sends what fits now (the supervisor, on `POLLOUT`).
    pub(crate) fn flush(&self) {
        let mut o = self.outbox();
        self.flush_locked(&mut o);
    }

    /// Bytes are waiting for room in the socket.
    pub(crate) fn wants_write(&self) -> bool {
        let o = self.outbox();
        o.sent < o.buf.len()
    }

    /// Revokes message `seq` in `slot` if it has not started.
    pub(crate) fn revoke(&self, slot: usize, seq: u64) -> bool {
        self.ring.revoke(slot, seq)
    }

    /// Stops message `seq`: revoked if it has not started, else the worker is killed (only if
    /// that message is still the one running).
    pub(crate) fn revoke_or_kill(&self, slot: usize, seq: u64) {
        if self.ring.revoke(slot, seq) {
            return;
        }
        if self.ring.mark_kill(slot, seq) {
            self.kill();
        }
    }

    fn proc(&self) -> MutexGuard<'_, Proc> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGKILL to the worker and its process group, unless the worker was already reaped.
    pub(crate) fn kill(&self) {
        self.proc().kill(self.pid);
    }

    /// The exit status if the process has exited (reaping it, after killing its group).
    pub(crate) fn try_status(&self) -> Option<ExitStatus> {
        self.proc().try_wait(self.pid)
    }

    /// Waits for the process to exit and reaps it. If it has not exited within `grace` (it
    /// closed its socket but lives on), it is killed first. `None` if the status could not
    /// be read.
    pub(crate) fn reap(&self, grace: Duration) -> Option<ExitStatus> {
        // A grace past the clock's range waits for the exit without killing.
        let deadline = crate::limits::deadline_after(grace);
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return self.proc().kill_and_wait(self.pid);
            }
            let left = deadline.map_or(Duration::MAX, |d| d - now);
            match self.pidfd() {
                Some(fd) => {
                    let _ = fd::wait_readable(fd, Some(left));
                }
                // Old kernels only: no pidfd to wait on.
                None => std::thread::sleep(left.min(Duration::from_millis(1))),
            }
        }
    }
}

impl Drop for Link {
    /// A link is normally reaped by its supervisor; this is the safety net on error paths, so
    /// that no path leaves a zombie.
    fn drop(&mut self) {
        let pid = self.pid;
        let p = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if !p.reaped {
            p.kill_and_wait(pid);
        }
    }
}
