//! Worker processes: the child's set-up between `fork` and `exec`, a `pidfd` per worker,
//! killing a worker's process group and checking for its exit without reaping it.

use super::cvt;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+). Must be called
/// before the child is reaped, so `pid` cannot have been reused.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = pid_of(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// SIGKILL to every process in group `pgid` (a worker and whatever its tasks started). Errors
/// (the group is empty, or gone) are ignored: there is nothing left to stop.
pub(crate) fn kill_group(pgid: u32) {
    let Some(pgid) = pid_of(pgid) else {
        return;
    };
    if pgid.as_raw_nonzero().get() <= 1 {
        return; // never the caller's own group, never "every process"
    }
    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
}

/// True if child `pid` has exited, leaving it unreaped (a zombie still holds its pid, and so
/// its process group id, which therefore cannot have been reused).
pub(crate) fn exited_unreaped(pid: u32) -> bool {
    let Some(pid) = pid_of(pid) else {
        return false;
    };
    // WNOWAIT leaves the child unreaped; `Some` means it has changed state (exited).
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    matches!(
        rustix::process::waitid(WaitId::Pid(pid), options),
        Ok(Some(_))
    )
}

/// Makes the spawned worker keep exactly the descriptors in `keep` (everything chi opens is
/// close-on-exec), die with SIGKILL when the thread that spawned it ends (`PR_SET_PDEATHSIG`),
/// and exit at once if the parent is already gone. It leads a process group of its own
/// (`setpgid(0, 0)` before exec), so that the processes its tasks start can be killed with it
/// ([`kill_group`]); a consequence is that a terminal's Ctrl-C no longer reaches it directly
/// (the parent's death signal and EOF on its socket still end it).
pub(crate) fn prepare_worker(cmd: &mut Command, keep: [RawFd; 4], parent_pid: u32) {
    cmd.process_group(0);
    let closure = move || -> io::Result<()> {
        for fd in keep {
            if fd >= 0 {
                // Raw `fcntl` on a number: the descriptors are the parent's, not borrowable here.
                // SAFETY: fcntl on a descriptor number is async-signal-safe; an invalid one is
                // an error, not undefined behaviour.
                cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
            }
        }
        // prctl and getppid are plain system calls: async-signal-safe, no allocation.
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        if self::parent_pid() != parent_pid {
            // The parent died before the death signal was armed.
            // SAFETY: _exit is async-signal-safe and ends the child without running anything.
            unsafe { libc::_exit(1) };
        }
        Ok(())
    };
    // The closure's calls are raw system calls, through rustix or libc.
    // SAFETY: the closure runs in the forked child before exec and makes only async-signal-safe
    // calls (fcntl, prctl, getppid, _exit); it allocates nothing and takes no lock (it captures
    // a copied array and an integer).
    unsafe { cmd.pre_exec(closure) };
}

/// The parent's process id as the kernel sees it now (0 when there is none).
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// A process id from its number: `None` for 0 and for numbers over `i32::MAX`.
fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}
