//! The one place in chi-net with `unsafe` code: the io_uring ring of one uring loop.
//!
//! The kernel reads or writes user memory while an operation is in flight, so pushing an
//! operation that names a buffer is `unsafe` in the `io-uring` crate. [`Ring`] wraps it with
//! safe methods whose ownership rules make that sound:
//! - **Send buffers**: [`Ring::send`] takes the `Vec<u8>` by value and keeps it in `sends`,
//!   keyed by the operation's user data, until that operation's completion comes back;
//!   only [`Ring::take_send`], given that completion, hands it back.
//! - **Receive buffers**: one allocation cut into `BUF_COUNT` buffers, lent to the kernel
//!   through a registered provided-buffer ring. The kernel picks one per received chunk and
//!   names it in the completion; [`Ring::take_buf`] turns that completion into a [`RecvBuf`]
//!   (not `Clone`, made only once per completion), which is the loop's proof that it owns
//!   the buffer. [`Ring::bytes`] reads through it; [`Ring::recycle`] consumes it and gives
//!   the buffer back to the kernel.
//! - **Teardown**: dropping a `Ring` with operations in flight leaks the send buffers and
//!   the receive allocation instead of freeing memory the kernel may still touch.
//!
//! - **Accepted descriptors**: a completion of the multishot accept [`Ring::accept_multi`]
//!   pushed carries a new descriptor that nothing else owns yet; [`Ring::take_accepted`]
//!   consumes that completion (whose fields the loop cannot change) and returns the
//!   descriptor as an `OwnedFd`, once.
//!
//! Every other operation pushed here (multishot receive and accept, poll, cancel, shutdown)
//! names no memory of ours.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

/// Bytes per receive buffer: the most one completion (and so one handler call) carries.
pub(crate) const BUF_SIZE: usize = 16 * 1024;
/// Receive buffers per loop (a power of two, as the kernel requires).
pub(crate) const BUF_COUNT: u16 = 128;
/// Submission queue entries per ring.
pub(crate) const RING_ENTRIES: u32 = 256;
/// The provided-buffer group id (one group per ring).
const BGID: u16 = 0;

/// IORING_CQE_F_BUFFER, the completion flag `cqueue::buffer_select` reads.
const CQE_F_BUFFER: u32 = 1;

/// Tells rings apart, so a [`RecvBuf`] is only ever used with the ring that made it.
static NEXT_RING_ID: AtomicU32 = AtomicU32::new(0);

/// Makes [`Ring::new`] fail as if io_uring were disabled, to test the error path.
#[cfg(test)]
pub(crate) static FAIL_SETUP: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Times a full submission queue was submitted in the middle of a turn, for tests to check.
#[cfg(test)]
pub(crate) static SQ_FULL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Rings dropped with operations in flight (their buffers leaked), for tests to check.
#[cfg(test)]
pub(crate) static LEAKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One completion, copied out of the completion queue; only [`Ring::completions`] makes one.
#[derive(Debug)]
pub(crate) struct Completion {
    user_data: u64,
    result: i32,
    flags: u32,
}

impl Completion {
    /// The user data of the operation it completes.
    pub(crate) fn user_data(&self) -> u64 {
        self.user_data
    }

    /// The operation's result: a count or a descriptor, or a negated errno.
    pub(crate) fn result(&self) -> i32 {
        self.result
    }

    /// The operation goes on (a multishot one that will complete again).
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

/// A receive buffer the kernel filled and handed over; the loop owns it until
/// [`Ring::recycle`].
#[derive(Debug)]
pub(crate) struct RecvBuf {
    ring: u32,
    bid: u16,
    len: u32,
}

impl RecvBuf {
    /// Bytes received into it.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

/// The receive buffers and the ring of entries through which the kernel takes them.
struct ProvidedBufs {
    /// `BUF_COUNT` entries, page-aligned, registered with the kernel.
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// `BUF_COUNT * BUF_SIZE` bytes.
    data: *mut u8,
    data_layout: Layout,
    /// Our tail: entries before it are published (or about to be).
    tail: u16,
    /// Set when the kernel may still use the memory: then it is never freed.
    leak: bool,
}

impl ProvidedBufs {
    fn new() -> io::Result<ProvidedBufs> {
        let entries_layout = Layout::from_size_align(
            usize::from(BUF_COUNT) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        let data_layout = Layout::from_size_align(usize::from(BUF_COUNT) * BUF_SIZE, 64)
            .map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size.
        let entries = unsafe { alloc::alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        // SAFETY: as above.
        let data = unsafe { alloc::alloc(data_layout) };
        if entries.is_null() || data.is_null() {
            alloc::handle_alloc_error(entries_layout);
        }
        Ok(ProvidedBufs {
            entries,
            entries_layout,
            data,
            data_layout,
            tail: 0,
            leak: false,
        })
    }

    /// Puts buffer `bid` at our tail and publishes the new tail to the kernel.
    fn give(&mut self, bid: u16) {
        let index = usize::from(self.tail & (BUF_COUNT - 1));
        // The kernel reads entries only between its head and the published tail; this one is
        // past the tail until the store below. It also reads the tail, which overlays entry 0's
        // reserved field; the setters write only address, length and id, never that field.
        // SAFETY: `index < BUF_COUNT`, so the entry is inside our allocation, and (above) the
        // kernel does not read it while we write it.
        let entry = unsafe { &mut *self.entries.add(index) };
        // SAFETY: `bid < BUF_COUNT` (checked by the callers), so the buffer is inside `data`.
        let addr = unsafe { self.data.add(usize::from(bid) * BUF_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `entries` is the ring's first entry, initialised (zeroed) at allocation;
        // the tail field is a naturally aligned u16 that only we write.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries).cast_mut()) };
        // ORDERING: Release: the entry written above is visible before the kernel sees the
        // tail that includes it (the kernel reads the tail with an acquire load).
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for ProvidedBufs {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: allocated in `new` with these layouts; no operation is in flight (else
        // `leak` is set), and the ring that registered them is dropped first (field order).
        unsafe {
            alloc::dealloc(self.entries.cast(), self.entries_layout);
            alloc::dealloc(self.data, self.data_layout);
        }
    }
}

/// An io_uring instance with its provided receive buffers and its in-flight send buffers.
pub(crate) struct Ring {
    // Field order matters: the ring is closed before the buffers are freed.
    ring: IoUring,
    sends: HashMap<u64, Vec<u8>>,
    bufs: ProvidedBufs,
    id: u32,
    /// Operations pushed whose last completion has not come back yet.
    in_flight: usize,
    /// The user data of the multishot accept, once one was pushed.
    accept: Option<u64>,
}

impl Ring {
    /// Sets up a ring with its receive buffers; fails where io_uring is unavailable or lacks
    /// what the loop needs.
    pub(crate) fn new() -> io::Result<Ring> {
        #[cfg(test)]
        // ORDERING: Relaxed: a test sets it before starting the server it affects.
        if FAIL_SETUP.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        check_kernel_version()?;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(RING_ENTRIES)?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(unsupported("the kernel's io_uring lacks EXT_ARG or NODROP"));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        let needed = [
            opcode::AcceptMulti::CODE,
            opcode::RecvMulti::CODE,
            opcode::Send::CODE,
            opcode::PollAdd::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Shutdown::CODE,
        ];
        if !needed.iter().all(|&code| probe.is_supported(code)) {
            return Err(unsupported(
                "the kernel's io_uring lacks an operation chi needs",
            ));
        }
        let mut bufs = ProvidedBufs::new()?;
        // SAFETY: `bufs.entries` holds BUF_COUNT entries, page-aligned, and stays allocated
        // until the ring is dropped (the `ring` field drops before `bufs`).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                BUF_COUNT,
                BGID,
                0,
            )?;
        }
        for bid in 0..BUF_COUNT {
            bufs.give(bid);
        }
        Ok(Ring {
            ring,
            sends: HashMap::new(),
            bufs,
            // ORDERING: Relaxed: only uniqueness matters.
            id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            in_flight: 0,
            accept: None,
        })
    }

    /// Operations whose last completion has not come back yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// # Safety
    /// Every buffer `entry` names must stay valid until its last completion.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded from the caller.
        if unsafe { self.ring.submission().push(entry) }.is_err() {
            // The submission queue is full: hand what is queued to the kernel, then retry.
            // ORDERING: Relaxed: a test reads it after the server stopped.
            #[cfg(test)]
            SQ_FULL.fetch_add(1, Ordering::Relaxed);
            self.ring.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(entry) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        self.in_flight += 1;
        Ok(())
    }

    /// A multishot receive on `fd` into the provided buffers.
    pub(crate) fn recv_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(Fd(fd), BGID)
            .build()
            .user_data(user_data);
        // SAFETY: the kernel picks buffers from the provided ring, which outlives every
        // operation (see `Drop`); the entry names no other memory.
        unsafe { self.push(&entry) }
    }

    /// A multishot accept on the listener `fd`: each connection completes it once, with the
    /// new descriptor (non-blocking, close-on-exec), which [`take_accepted`](Ring::take_accepted)
    /// hands over. The ring keeps one accept user data: this one.
    pub(crate) fn accept_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        // SAFETY: a multishot accept without an address names no memory.
        unsafe { self.push(&entry)? };
        self.accept = Some(user_data);
        Ok(())
    }

    /// The connection a completion of the multishot accept carries, if it carries one.
    pub(crate) fn take_accepted(&self, completion: Completion) -> Option<OwnedFd> {
        if self.accept != Some(completion.user_data) || completion.result < 0 {
            return None;
        }
        // `completion` is consumed here, and only `Ring::completions` makes one (its fields are
        // private), so the descriptor below is claimed once.
        // SAFETY: a non-negative accept result is a descriptor the kernel has just installed
        // for this process; nothing else has seen its number, and it is claimed once (above).
        Some(unsafe { OwnedFd::from_raw_fd(completion.result) })
    }

    /// A one-shot poll for readability of `fd`.
    pub(crate) fn poll_readable(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(user_data);
        // SAFETY: a poll names no memory.
        unsafe { self.push(&entry) }
    }

    /// Cancels the operation with user data `target`.
    pub(crate) fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        // SAFETY: a cancel names no memory (its target is a number).
        unsafe { self.push(&entry) }
    }

    /// Shuts down the write side of `fd` (sends FIN).
    pub(crate) fn shutdown_write(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::Shutdown::new(Fd(fd), libc::SHUT_WR)
            .build()
            .user_data(user_data);
        // SAFETY: a shutdown names no memory.
        unsafe { self.push(&entry) }
    }

    /// Sends `bytes[from..]` on `fd`. The ring owns `bytes` until the completion with
    /// `user_data`, which [`take_send`](Ring::take_send) turns back into it. At most one send
    /// per user data may be in flight.
    pub(crate) fn send(
        &mut self,
        fd: RawFd,
        bytes: Vec<u8>,
        from: usize,
        user_data: u64,
    ) -> io::Result<()> {
        if self.sends.contains_key(&user_data) {
            return Err(io::Error::other("a send with this user data is in flight"));
        }
        let rest = &bytes[from..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(Fd(fd), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        // `bytes` moves into `self.sends` below (moving a Vec does not move its heap buffer)
        // and leaves it only through `take_send` with this operation's completion, or never
        // (`Drop` leaks it). On a push error the entry was not queued, so dropping it is fine.
        // SAFETY: the entry points into the heap buffer of `bytes`, which (above) outlives it.
        unsafe { self.push(&entry)? };
        self.sends.insert(user_data, bytes);
        Ok(())
    }

    /// The buffer of the send that `completion` completes.
    pub(crate) fn take_send(&mut self, completion: &Completion) -> Option<Vec<u8>> {
        self.sends.remove(&completion.user_data)
    }

    /// The receive buffer a completion carries (once: the completion forgets it).
    pub(crate) fn take_buf(&self, completion: &mut Completion) -> Option<RecvBuf> {
        let bid = cqueue::buffer_select(completion.flags)?;
        completion.flags &= !CQE_F_BUFFER;
        let len = u32::try_from(completion.result.max(0)).unwrap_or(0);
        (bid < BUF_COUNT && len as usize <= BUF_SIZE).then_some(RecvBuf {
            ring: self.id,
            bid,
            len,
        })
    }

    /// The bytes received into `buf`.
    pub(crate) fn bytes(&self, buf: &RecvBuf) -> &[u8] {
        assert_eq!(buf.ring, self.id, "a receive buffer of another ring");
        // SAFETY: `buf` was made from this ring's completion, so the kernel filled its first
        // `len` bytes and will not touch the buffer until `recycle` consumes `buf`; `bid` and
        // `len` were bounds-checked in `take_buf`.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs.data.add(usize::from(buf.bid) * BUF_SIZE),
                buf.len(),
            )
        }
    }

    /// Gives `buf` back to the kernel.
    pub(crate) fn recycle(&mut self, buf: RecvBuf) {
        assert_eq!(buf.ring, self.id, "a receive buffer of another ring");
        self.bufs.give(buf.bid);
    }

    /// Moves every completion waiting in the queue to `out`.
    pub(crate) fn completions(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            if !cqueue::more(cqe.flags()) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            out.push(Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            });
        }
    }

    /// Submits everything queued and waits (one `io_uring_enter`) for a completion or the
    /// timeout.
    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            // The kernel may still read a send buffer or write a receive buffer: never free them.
            tracing::warn!(
                in_flight = self.in_flight,
                "io_uring dropped with operations in flight; leaking its buffers"
            );
            std::mem::forget(std::mem::take(&mut self.sends));
            self.bufs.leak = true;
            // ORDERING: Relaxed: a test reads it after joining the loop threads.
            #[cfg(test)]
            LEAKED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_owned())
}

/// Multishot receive with provided-buffer rings and deferred task running need Linux 6.1.
fn check_kernel_version() -> io::Result<()> {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return Ok(()); // unknown: let ring setup decide
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (6, 1) {
        return Err(unsupported(&format!(
            "Linux 6.1 or later is needed, this is {}",
            release.trim()
        )));
    }
    Ok(())
}
