//! Descriptors: the socket pair's non-blocking `send`/`recv`, `poll`, the `eventfd` that wakes
//! a supervisor, and the worker's adoption of the descriptors its parent passed by number.

use super::cvt;
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::io::{Errno, FdFlags};
use rustix::net::{RecvFlags, SendFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Sends what fits without blocking; `WouldBlock` when nothing fits. Never raises SIGPIPE: a
/// vanished peer is `BrokenPipe`.
pub(crate) fn send_nonblocking(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(fd, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Receives into the spare capacity of `buf` (at most `max` bytes), appending to it.
/// `Ok(0)` is end of stream. With `wait` false, `WouldBlock` when nothing is there.
pub(crate) fn recv_into(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    wait: bool,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < max.min(64 * 1024) {
        buf.reserve(max.min(64 * 1024));
    }
    let flags = if wait {
        RecvFlags::empty()
    } else {
        RecvFlags::DONTWAIT
    };
    let got = loop {
        let spare = buf.spare_capacity_mut();
        let n = spare.len().min(max);
        match rustix::net::recv(fd, &mut spare[..n], flags) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(((filled, _), _)) => break filled.len(),
        }
    };
    // SAFETY: `recv` initialised the first `got` bytes of the spare capacity (it returned them
    // as a filled slice), and `got <= n <= capacity - len`.
    unsafe { buf.set_len(buf.len() + got) };
    Ok(got)
}

/// An entry for [`poll`] that watches `fd` for input, and for output room when `write` is set.
pub(crate) fn watch(fd: BorrowedFd<'_>, read: bool, write: bool) -> PollFd<'_> {
    let mut events = PollFlags::empty();
    if read {
        events |= PollFlags::IN;
    }
    if write {
        events |= PollFlags::OUT;
    }
    PollFd::from_borrowed_fd(fd, events)
}

/// What a [`poll`] entry reported.
pub(crate) trait Ready {
    /// Input is there, or the peer hung up, or an error is pending (a read will tell).
    fn readable(&self) -> bool;
    /// Output room, or an error a write will report.
    fn writable(&self) -> bool;
}

impl Ready for PollFd<'_> {
    fn readable(&self) -> bool {
        self.revents()
            .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
    }
    fn writable(&self) -> bool {
        self.revents()
            .intersects(PollFlags::OUT | PollFlags::ERR | PollFlags::HUP)
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no limit). An interrupted
/// wait returns early with nothing ready, which callers treat as a spurious wake-up.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<()> {
    // Whole milliseconds, rounded up, so a wait for 0.4 ms does not spin with a zero timeout.
    let ts = timeout.map(|d| {
        let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i64;
        Timespec {
            tv_sec: ms / 1000,
            tv_nsec: (ms % 1000) * 1_000_000,
        }
    });
    match rustix::event::poll(fds, ts.as_ref()) {
        Err(Errno::INTR) | Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until `fd` has input (or hangs up), at most `timeout`.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [watch(fd, true, false)];
    poll(&mut fds, timeout)?;
    Ok(fds[0].readable())
}

/// A counter another thread can bump to wake a `poll` on it.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(EventFd(fd))
    }

    /// An eventfd this process inherited (the worker's end of its doorbell).
    pub(crate) fn adopt(fd: OwnedFd) -> EventFd {
        EventFd(fd)
    }

    /// Wakes the poller.
    pub(crate) fn notify(&self) {
        // A full counter (EAGAIN) already means "wake up", so the result is irrelevant.
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Resets the counter after a wake-up.
    pub(crate) fn drain(&self) {
        let mut v = [0u8; 8];
        // EAGAIN (nothing to drain) is fine.
        let _ = rustix::io::read(&self.0, &mut v);
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Takes ownership of a descriptor inherited by number, after checking it is open, and marks
/// it close-on-exec so the worker's own children do not inherit it.
///
/// The caller must pass a number nothing else in this process owns; the worker entry does,
/// for the numbers its parent wrote into the marker variable and before any user code runs.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Raw `fcntl` on a number: a `BorrowedFd` must not name a closed descriptor, so the check
    // that it is open cannot go through one.
    // SAFETY: F_GETFD on any number is harmless; EBADF when it is not open.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open (checked above) and, per this function's contract, owned
    // by nobody else in this process: the parent passed it for this purpose alone.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC)?;
    Ok(owned)
}

/// Makes `fd` the process's standard output (then drops `fd`).
pub(crate) fn redirect_stdout(fd: OwnedFd) -> io::Result<()> {
    rustix::stdio::dup2_stdout(&fd)?;
    Ok(())
}
