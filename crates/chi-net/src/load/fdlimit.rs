//! The file-descriptor budget: raise the soft `RLIMIT_NOFILE` to the hard limit, and say
//! clearly when the connections asked for still do not fit.
//!
//! All OS access of the load generator is here, through the safe `rlimit` crate.

use std::fmt;

/// Descriptors a run needs beyond its sockets: stdio, each worker's epoll instance, the
/// progress thread, the allocator's and the test harness's own, with room to spare.
pub(crate) const SPARE: u64 = 64;

/// Descriptors a run of `threads` workers with `sockets` connections needs.
pub(crate) fn needed(sockets: u64, threads: u64) -> u64 {
    sockets
        .saturating_add(threads.saturating_mul(2))
        .saturating_add(SPARE)
}

/// The limits before and after raising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The soft limit now in force.
    pub(crate) soft: u64,
    /// The hard limit, which an unprivileged process cannot pass.
    pub(crate) hard: u64,
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "soft {} / hard {}", self.soft, self.hard)
    }
}

/// Raises the soft limit to the hard limit (best effort) and returns the limits in force.
/// On a platform without `RLIMIT_NOFILE` both are reported as unlimited.
pub(crate) fn raise() -> Limits {
    let hard = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((_, hard)) => hard,
        Err(_) => u64::MAX,
    };
    // Linux caps descriptors at fs.nr_open (2^20 by default) even when the hard limit is
    // "unlimited"; asking for more would fail.
    let target = if hard == rlimit::INFINITY {
        1 << 20
    } else {
        hard
    };
    match rlimit::increase_nofile_limit(target) {
        Ok(soft) => Limits { soft, hard },
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the file-descriptor limit");
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |l| l.0);
            Limits { soft, hard }
        }
    }
}
