//! Descriptors: the socket pair's non-blocking `send`/`recv`, `poll`, the `eventfd` that wakes
//! a supervisor, and the worker's adoption of the descriptors its parent passed by number.

use super::{cvt, cvt_len};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Sends what fits without blocking; `WouldBlock` when nothing fits. Never raises SIGPIPE: a
/// vanished peer is `BrokenPipe`.
pub(crate) fn send_nonblocking(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes and `fd` is open for the
        // duration of the borrow.
        let r = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match cvt_len(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
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
    let spare = buf.spare_capacity_mut();
    let n = spare.len().min(max);
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    loop {
        // SAFETY: `spare` is `n` (or more) writable bytes owned by `buf`, not aliased while the
        // call runs; the kernel writes at most `n` bytes.
        let r = unsafe { libc::recv(fd.as_raw_fd(), spare.as_mut_ptr().cast(), n, flags) };
        match cvt_len(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(got) => {
                debug_assert!(got <= n);
                // SAFETY: the kernel initialised the first `got` bytes of the spare capacity,
                // and `got <= n <= capacity - len`.
                unsafe { buf.set_len(buf.len() + got) };
                return Ok(got);
            }
        }
    }
}

/// One entry of a [`poll`] call.
#[repr(transparent)]
pub(crate) struct PollFd(libc::pollfd);

impl PollFd {
    /// Watch `fd` for input, and for output room when `write` is set.
    pub(crate) fn new(fd: BorrowedFd<'_>, read: bool, write: bool) -> Self {
        let mut events = 0;
        if read {
            events |= libc::POLLIN;
        }
        if write {
            events |= libc::POLLOUT;
        }
        PollFd(libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        })
    }
    /// Input is there, or the peer hung up, or an error is pending (a read will tell).
    pub(crate) fn readable(&self) -> bool {
        self.0.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }
    /// Output room, or an error a write will report.
    pub(crate) fn writable(&self) -> bool {
        self.0.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no limit). An interrupted
/// wait returns early with nothing ready, which callers treat as a spurious wake-up.
pub(crate) fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<()> {
    let ms = match timeout {
        None => -1,
        // Round up so a wait for 0.4 ms does not spin with a zero timeout.
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `PollFd` is a transparent wrapper of `libc::pollfd`, so the slice is a valid
    // array of `fds.len()` pollfd structs for the kernel to read and update.
    let r = unsafe {
        libc::poll(
            fds.as_mut_ptr().cast::<libc::pollfd>(),
            fds.len() as libc::nfds_t,
            ms,
        )
    };
    match cvt(r) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// Blocks until `fd` has input (or hangs up), at most `timeout`.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::new(fd, true, false)];
    poll(&mut fds, timeout)?;
    Ok(fds[0].readable())
}

/// A counter another thread can bump to wake a `poll` on it.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: plain system call with flag arguments.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes the poller.
    pub(crate) fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, which lives across the call. A full counter
        // (EAGAIN) already means "wake up", so the result is irrelevant.
        let _ = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&raw const one).cast(),
                size_of::<u64>(),
            )
        };
    }

    /// Resets the counter after a wake-up.
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into `v`; EAGAIN (nothing to drain) is fine.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&raw mut v).cast(), size_of::<u64>()) };
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
    // SAFETY: F_GETFD on any number is harmless; EBADF when it is not open.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above, sets the flag on an open descriptor.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: the descriptor is open (checked above) and, per this function's contract, owned
    // by nobody else in this process: the parent passed it for this purpose alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `fd` the process's standard output (then drops `fd`).
pub(crate) fn redirect_stdout(fd: OwnedFd) -> io::Result<()> {
    // SAFETY: dup2 onto descriptor 1 replaces stdout atomically; both numbers are valid.
    cvt(unsafe { libc::dup2(fd.as_raw_fd(), libc::STDOUT_FILENO) })?;
    Ok(())
}
