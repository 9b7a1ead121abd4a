//! The "take one more, if the count allows it" compare-and-swap loop that admission to the
//! bounded queue, the searcher limit and the worker limit all use.

use crate::loom::sync::atomic::{AtomicUsize, Ordering};

/// Adds one to `counter` if `allows(current)` is true, retrying when another thread changes the
/// count in between; true if it added.
///
/// `success` is the ordering of the increment; `load` that of every read of the current value
/// (the first load and a failed exchange), so a caller that needs its reads in the SeqCst order
/// passes SeqCst for both. Each call site's `// ORDERING:` note says which it needs and why.
#[inline]
pub(crate) fn increment_if(
    counter: &AtomicUsize,
    allows: impl Fn(usize) -> bool,
    success: Ordering,
    load: Ordering,
) -> bool {
    // ORDERING: as the caller says (see above).
    let mut cur = counter.load(load);
    loop {
        if !allows(cur) {
            return false;
        }
        // ORDERING: as the caller says (see above).
        match counter.compare_exchange_weak(cur, cur + 1, success, load) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}
