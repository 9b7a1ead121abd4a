//! The process pool's operating-system glue (Linux): every system call (through `rustix`, and
//! `libc` where rustix has no equivalent), and all of the pool's `unsafe` code but one block
//! (`func.rs` turns a verified code offset back into a function pointer, using
//! [`image::code_at`]).
//!
//! - [`fd`]: non-blocking `send`/`recv` on the per-worker socket pair, `poll`, an `eventfd` to
//!   wake a supervisor, and the worker's adoption of the descriptors it inherited;
//! - [`process`]: the child's set-up between `fork` and `exec` (parent-death signal, process
//!   group, keeping exactly the descriptors it needs), a `pidfd` to learn of a worker's exit
//!   without polling, killing a worker's process group, and checking for an unreaped exit;
//! - [`shm`]: a `memfd` mapped by the parent and one worker, seen as a slice of atomic words
//!   (the claim ring in `ring.rs` is built on it);
//! - [`image`]: the program image (base address, executable range and GNU build id, read from
//!   the loader with `dl_iterate_phdr`), and the one place a code address becomes a function
//!   pointer.
//!
//! Nothing here knows about tasks, messages or the pool: the arrows point into `sys`, never
//! out of it. ARCHITECTURE.md ("Unsafe code") lists each remaining `unsafe` block and why.

pub(crate) mod fd;
pub(crate) mod image;
pub(crate) mod process;
pub(crate) mod shm;

use std::io;

/// Turns a -1 return into the `io::Error` of `errno`.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Nanoseconds of CLOCK_MONOTONIC: the same clock in every process of the machine, so a
/// worker's start stamp can be compared with the parent's "now".
///
/// Through libc, not rustix: rustix reads the clock through the vDSO, and finding the vDSO
/// parses the auxiliary vector in a way that faults under valgrind (CI's `.ci/valgrind.sh`).
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
