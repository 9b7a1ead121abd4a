//! Process helpers for the process-pool tests: `/proc` views (is a pid alive, children of a
//! process, open descriptors and their close-on-exec flag), sending a signal with the `kill`
//! program, marker files that tasks in workers write, and running this test binary again as a
//! child with its output captured. Every wait has a bound; nothing sleeps to synchronise.
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Far longer than any correct wait here; reaching it is a hang.
pub(crate) const NEVER: Duration = Duration::from_secs(60);

/// The state letter of process `pid` (`R`, `S`, `Z` zombie, ...), if it exists.
pub(crate) fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// The parent pid of process `pid`, if it exists.
pub(crate) fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// True while `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Every process whose parent is `parent`, zombies included.
pub(crate) fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if ppid(pid) == Some(parent)
            && let Some(s) = state(pid)
        {
            out.push((pid, s));
        }
    }
    out
}

/// This process's open descriptors and what they point at.
pub(crate) fn open_fds() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // The directory handle of the listing itself is gone by the time we read the link.
        if let Ok(target) = std::fs::read_link(e.path()) {
            out.push((fd, target.to_string_lossy().into_owned()));
        }
    }
    out.sort();
    out
}

/// True if descriptor `fd` of this process has close-on-exec set.
pub(crate) fn cloexec(fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0);
    flags & 0o2_000_000 != 0
}

/// Sends `signal` (a name such as `KILL`) to `pid` with the `kill` program.
pub(crate) fn kill(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -s {signal} {pid} failed");
}

/// Polls until a condition holds, bounded (shared with the other test binaries).
pub(crate) use crate::common::poll_until;

/// A fresh path in the temp directory (nothing is created). The first call in a test binary
/// also removes the marker files of earlier runs whose process is gone.
pub(crate) fn temp_path(tag: &str) -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_stale_markers);
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("chi-pp-{}-{tag}-{n}", std::process::id()))
}

/// Removes `chi-pp-<pid>-…` files of test processes that no longer exist. A held task
/// removes its release marker only when it reads it, so a test whose task was killed first
/// leaves one behind; the test itself cannot remove it safely while a task might still read
/// it.
fn sweep_stale_markers() {
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("chi-pp-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Waits for a task in a worker to create `path`, and returns its contents.
#[track_caller]
pub(crate) fn wait_for_file(path: &Path) -> String {
    let mut text = String::new();
    poll_until(
        &format!("{} to appear", path.display()),
        || match std::fs::read_to_string(path) {
            Ok(s) if !s.is_empty() => {
                text = s;
                true
            }
            _ => false,
        },
    );
    text
}

/// Running a test of this binary alone in a child (shared with the other test binaries).
pub(crate) use crate::common::run_test_child;
