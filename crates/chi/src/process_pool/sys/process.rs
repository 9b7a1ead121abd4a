//! Worker processes: the child's set-up between `fork` and `exec`, a `pidfd` per worker,
//! killing a worker's process group and checking for its exit without reaping it.

use super::cvt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

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

/// The parent's process id as the kernel sees it now.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}
