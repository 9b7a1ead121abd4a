//! The process pool's only `unsafe` code and only `libc` calls (Linux).
//!
//! - sockets: non-blocking `send`/`recv` on the per-worker socket pair, `poll`, an `eventfd`
//!   to wake a supervisor, a `pidfd` to learn of a worker's exit without polling;
//! - the child's set-up between `fork` and `exec` (parent-death signal, keeping exactly the
//!   descriptors it needs);
//! - the shared claim ring: a `memfd` mapped by the parent and one worker, holding one atomic
//!   word per message in flight, so that "cancel before it starts" and "start" are decided by
//!   one compare-and-swap across the two processes (see `Ring`);
//! - the program image: its base address, executable range and GNU build id, read from the
//!   loader (`dl_iterate_phdr`), and the one place a code address becomes a function pointer.
//!
//! Every raw call goes through `cvt`, which turns -1 into `io::Error`.

use crate::loom::interprocess::{AtomicU64, Ordering};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::time::Duration;

use super::protocol::FnRef;
use super::registry::{EntryFn, InitEntryFn, SameBuild, signature};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_len(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

// ===== sockets =====

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

// ===== eventfd, pidfd =====

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

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+). Must be called
/// before the child is reaped, so `pid` cannot have been reused.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the kernel validates `pid`.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor (close-on-exec by definition) owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

// ===== process groups =====

/// SIGKILL to every process in group `pgid` (a worker and whatever its tasks started). Errors
/// (the group is empty, or gone) are ignored: there is nothing left to stop.
pub(crate) fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never the caller's own group, never "every process"
    }
    // SAFETY: plain system call with integer arguments.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
}

/// True if child `pid` has exited, leaving it unreaped (a zombie still holds its pid, and so
/// its process group id, which therefore cannot have been reused).
pub(crate) fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: all-zero is a valid `siginfo_t` (plain integers); the kernel fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable `siginfo_t`; WNOWAIT leaves the child unreaped.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: `waitid` succeeded, so `info` is initialised; `si_pid` is 0 when the child has
    // not changed state.
    r == 0 && unsafe { info.si_pid() } != 0
}

// ===== the child between fork and exec =====

/// Makes the spawned worker keep exactly the descriptors in `keep` (everything chi opens is
/// close-on-exec), die with SIGKILL when the thread that spawned it ends (`PR_SET_PDEATHSIG`),
/// and exit at once if the parent is already gone. It leads a process group of its own
/// (`setpgid(0, 0)` before exec), so that the processes its tasks start can be killed with it
/// ([`kill_group`]); a consequence is that a terminal's Ctrl-C no longer reaches it directly
/// (the parent's death signal and EOF on its socket still end it).
pub(crate) fn prepare_worker(cmd: &mut Command, keep: [RawFd; 3], parent_pid: u32) {
    cmd.process_group(0);
    let closure = move || -> io::Result<()> {
        for fd in keep {
            if fd >= 0 {
                // SAFETY: fcntl on a descriptor number is async-signal-safe; an invalid one is
                // an error, not undefined behaviour.
                cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
            }
        }
        // SAFETY: prctl with integer arguments is async-signal-safe.
        cvt(unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        })?;
        // SAFETY: getppid cannot fail and is async-signal-safe.
        if unsafe { libc::getppid() } as u32 != parent_pid {
            // The parent died before the death signal was armed.
            // SAFETY: _exit is async-signal-safe and ends the child without running anything.
            unsafe { libc::_exit(1) };
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (fcntl, prctl, getppid, _exit); it allocates nothing and takes no
    // lock (it captures a copied array and an integer).
    unsafe { cmd.pre_exec(closure) };
}

// ===== worker-side descriptors =====

/// The parent's process id as the kernel sees it now.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
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

/// Nanoseconds of CLOCK_MONOTONIC: the same clock in every process of the machine, so a
/// worker's start stamp can be compared with the parent's "now".
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

// ===== the claim ring =====

/// Words per slot: the claim word and the start stamp.
const WORDS_PER_SLOT: usize = 2;

/// A small array of atomic words shared by the parent and one worker (a `memfd`, mapped
/// `MAP_SHARED` by both).
///
/// Slot `i` holds the claim word of the message in flight there, `seq << 3 | state`, and the
/// worker's start stamp. States: PENDING (written by the parent before it sends), STARTED
/// (worker, just before the user's function runs), REVOKED (parent: cancelled before start,
/// the worker skips it), DONE (worker, after the function returned), plus a KILL bit the
/// parent sets on a STARTED word before it kills the worker, so the worker never starts the
/// next message in the window between the decision and the signal. Every transition is one
/// compare-and-swap on the whole word, so the two processes always agree on who won.
#[derive(Debug)]
pub(crate) struct Ring {
    base: NonNull<AtomicU64>,
    slots: usize,
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping is plain shared memory accessed only through atomics; the pointer is
// valid until Drop (which needs `&mut self`), so sharing and sending the handle is fine.
unsafe impl Send for Ring {}
// SAFETY: as above: all access is through `&AtomicU64`.
unsafe impl Sync for Ring {}

/// The slot is written by the parent, the message not yet started.
pub(crate) const PENDING: u64 = 0;
/// The worker started the message.
pub(crate) const STARTED: u64 = 1;
/// The parent revoked the message before it started.
pub(crate) const REVOKED: u64 = 2;
/// The worker finished the message's function(s).
pub(crate) const DONE: u64 = 3;
/// The parent decided to kill the worker running this message.
pub(crate) const KILL: u64 = 4;
const STATE_MASK: u64 = 3;

/// What a claim word said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    /// PENDING, STARTED, REVOKED or DONE.
    pub(crate) state: u64,
    /// The KILL bit.
    pub(crate) kill: bool,
}

impl Ring {
    fn bytes(slots: usize) -> usize {
        (slots * WORDS_PER_SLOT * size_of::<u64>()).max(64)
    }

    /// A new zeroed ring of `slots` slots (parent side). Its descriptor is close-on-exec.
    pub(crate) fn create(slots: usize) -> io::Result<Ring> {
        // SAFETY: the name is a NUL-terminated static string.
        let fd = cvt(unsafe { libc::memfd_create(c"chi-claims".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sizing a memfd we own; new pages read as zero.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), Self::bytes(slots) as libc::off_t) })?;
        Self::map(fd, slots)
    }

    /// Maps a ring the parent created (worker side), after checking its size.
    pub(crate) fn attach(fd: OwnedFd, slots: usize) -> io::Result<Ring> {
        let len = std::fs::File::from(fd.try_clone()?).metadata()?.len();
        if len < Self::bytes(slots) as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "claim ring smaller than announced",
            ));
        }
        Self::map(fd, slots)
    }

    fn map(fd: OwnedFd, slots: usize) -> io::Result<Ring> {
        // SAFETY: maps `bytes` bytes of a memfd at least that large, shared, at an address the
        // kernel picks; the result is checked against MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::bytes(slots),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Ring {
            base,
            slots,
            fd: Some(fd),
        })
    }

    /// The descriptor to hand to the worker (parent side, until [`Ring::close_fd`]).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Closes the descriptor once the worker has it; the mapping stays.
    pub(crate) fn close_fd(&mut self) {
        self.fd = None;
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    fn word(&self, slot: usize, which: usize) -> &AtomicU64 {
        assert!(slot < self.slots, "claim slot {slot} out of range");
        // SAFETY: the mapping holds `slots * WORDS_PER_SLOT` aligned u64 words (page-aligned
        // base), the index is in range (asserted), and the memory lives as long as `self`.
        // Shared memory is only ever accessed atomically, by both processes.
        unsafe { &*self.base.as_ptr().add(slot * WORDS_PER_SLOT + which) }
    }

    fn split(word: u64) -> (u64, Claim) {
        (
            word >> 3,
            Claim {
                state: word & STATE_MASK,
                kill: word & KILL != 0,
            },
        )
    }

    /// The state of `slot` if it still belongs to message `seq`.
    pub(crate) fn observe(&self, slot: usize, seq: u64) -> Option<Claim> {
        // ORDERING: Acquire pairs with the worker's Release transitions so that a STARTED seen
        // here comes with the start stamp written before it.
        let (s, c) = Self::split(self.word(slot, 0).load(Ordering::Acquire));
        (s == seq).then_some(c)
    }

    /// The worker's start stamp of the message in `slot` (valid once STARTED was observed).
    pub(crate) fn started_ns(&self, slot: usize) -> u64 {
        // ORDERING: Relaxed: ordered by the Acquire load of the claim word that showed STARTED.
        self.word(slot, 1).load(Ordering::Relaxed)
    }

    /// Parent, before sending message `seq` in `slot`: marks it PENDING.
    pub(crate) fn publish(&self, slot: usize, seq: u64) {
        // ORDERING: Release; the send that follows orders it for the worker anyway (the worker
        // reads the word only after receiving the message), this makes it explicit.
        self.word(slot, 0)
            .store(seq << 3 | PENDING, Ordering::Release);
    }

    /// Worker: claims message `seq` before running it. Ok(()) means run it; Err is what the
    /// word held instead (REVOKED: skip it; anything else: a protocol error).
    pub(crate) fn start(&self, slot: usize, seq: u64) -> Result<(), (u64, Claim)> {
        // ORDERING: Relaxed store of the stamp, published by the Release CAS below.
        self.word(slot, 1).store(monotonic_ns(), Ordering::Relaxed);
        // ORDERING: AcqRel: Release publishes the stamp; Acquire makes a parent's REVOKED visible
        // together with anything it wrote before.
        self.word(slot, 0)
            .compare_exchange(
                seq << 3 | PENDING,
                seq << 3 | STARTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(Self::split)
    }

    /// Worker: the function of message `seq` returned. True if the parent asked for a kill in
    /// the meantime (the worker then must not start anything else).
    pub(crate) fn finish(&self, slot: usize, seq: u64) -> bool {
        // ORDERING: AcqRel swap: one total order with the parent's KILL CAS on the same word.
        let prev = self.word(slot, 0).swap(seq << 3 | DONE, Ordering::AcqRel);
        prev & KILL != 0
    }

    /// Parent: revokes message `seq` if it has not started. True when revoked (now or before).
    pub(crate) fn revoke(&self, slot: usize, seq: u64) -> bool {
        let w = self.word(slot, 0);
        // ORDERING: AcqRel CAS: exactly one of this and the worker's `start` succeeds.
        match w.compare_exchange(
            seq << 3 | PENDING,
            seq << 3 | REVOKED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(cur) => cur == seq << 3 | REVOKED,
        }
    }

    /// Parent: marks a STARTED message `seq` for killing. True if it is running and now
    /// marked (the caller must kill the worker); false if it is not running (any more).
    pub(crate) fn mark_kill(&self, slot: usize, seq: u64) -> bool {
        let w = self.word(slot, 0);
        // ORDERING: AcqRel CAS against the worker's `finish` swap: if the function already
        // returned, this fails and nobody kills a worker that moved on.
        w.compare_exchange(
            seq << 3 | STARTED,
            seq << 3 | STARTED | KILL,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped; no reference into it outlives `self`
        // (`word` borrows `self`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), Self::bytes(self.slots)) };
    }
}

// ===== the program image =====

/// Where the running executable is loaded, read from the dynamic loader.
#[derive(Debug, Clone, Default)]
pub(crate) struct Image {
    /// The load bias: file addresses plus this are run-time addresses.
    pub(crate) base: usize,
    /// Lowest and one-past-highest run-time address of the executable's code segments.
    pub(crate) code: (usize, usize),
    /// The GNU build id note, if the linker wrote one.
    pub(crate) build_id: Vec<u8>,
}

unsafe extern "C" fn first_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and `data` is
    // the `&mut Image` that `main_image` passed, alive for the whole iteration.
    let (info, image) = unsafe { (&*info, &mut *data.cast::<Image>()) };
    image.base = info.dlpi_addr as usize;
    let mut lo = usize::MAX;
    let mut hi = 0;
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        let start = image.base.wrapping_add(ph.p_vaddr as usize);
        let len = ph.p_memsz as usize;
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            lo = lo.min(start);
            hi = hi.max(start.saturating_add(len));
        }
        if ph.p_type == libc::PT_NOTE && image.build_id.is_empty() {
            // SAFETY: a PT_NOTE segment of a loaded object is mapped readable for `p_memsz`
            // bytes at its run-time address.
            let notes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
            image.build_id = find_build_id(notes).unwrap_or_default();
        }
    }
    image.code = if lo < hi { (lo, hi) } else { (0, 0) };
    1 // the first object is the main program: stop
}

/// The GNU build id in a run of ELF notes, read with bounds checks only.
fn find_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    let word = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as usize)
    };
    let pad = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name = notes.get(12..12 + namesz)?;
        let desc_at = 12 + pad(namesz);
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == 3 && name == b"GNU\0" {
            return Some(desc.to_vec());
        }
        notes = notes.get(desc_at + pad(descsz)..)?;
    }
    None
}

/// The running executable's image.
pub(crate) fn main_image() -> Image {
    let mut image = Image::default();
    // SAFETY: the callback matches the expected signature and only touches `image` through
    // the pointer passed here, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first_object), (&raw mut image).cast()) };
    image
}

/// Turns a run-time code address back into a function pointer of type `F`.
///
/// Private: reached only through the three typed wrappers below, each of which fixes `F` to
/// the type the parent's offset was taken from.
fn code_at<F: Copy>(image: &Image, offset: u64, verified: &SameBuild) -> Option<F> {
    let _ = verified;
    const { assert!(size_of::<F>() == size_of::<usize>()) };
    let addr = image.base.checked_add(usize::try_from(offset).ok()?)?;
    if addr < image.code.0 || addr >= image.code.1 {
        return None;
    }
    // Why this is a function of type `F`: (1) the parent computed `offset` as the address of a
    // function of exactly type `F` minus its image base (`registry::fn_ref`, the only place
    // that builds a `FnRef`); (2) the parent runs the same build as this process (`verified`
    // exists only after the fingerprints matched: same build id and layout), so the same
    // function sits at the same offset here; (3) the address is inside this image's code
    // (checked above). So `addr` is a function of type `F` here, and `F` is a pointer-sized
    // `fn` type: this is the inverse of `f as usize`.
    // SAFETY: `addr` is a function of exactly type `F` in this image, per (1)-(3) above.
    Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) })
}

/// The trampoline of a task message (`FnRef::entry`).
pub(crate) fn entry_at(image: &Image, r: &FnRef, verified: &SameBuild) -> Option<EntryFn> {
    code_at(image, r.entry, verified)
}

/// The trampoline of an initializer (`InitCall::func.entry`).
pub(crate) fn init_entry_at(image: &Image, r: &FnRef, verified: &SameBuild) -> Option<InitEntryFn> {
    code_at(image, r.entry, verified)
}

/// The user's function of a message, as the trampoline for `A`, `R` sees it. Refuses unless
/// the signature hash the parent sent is that of `fn(A) -> R`.
pub(crate) fn task_fn_at<A: 'static, R: 'static>(
    image: &Image,
    r: &FnRef,
    verified: &SameBuild,
) -> Option<fn(A) -> R> {
    if r.sig != signature::<A, R>() {
        return None;
    }
    code_at(image, r.func, verified)
}
