//! The one place that names std's (or, under `--cfg chi_loom`, loom's) synchronisation types.
//!
//! Every other module imports atomics, `Mutex`, `Condvar`, `Arc`, `thread` and `UnsafeCell`
//! from here, so the same source is model-checked by loom and compiled against std otherwise.
//! `clippy.toml` forbids naming the std types anywhere else.
#![allow(clippy::disallowed_types, unreachable_pub, dead_code, unused_imports)]

/// Atomics that live in memory shared with another process (the process pool's claim ring).
/// Always std's, also under loom: loom cannot model another process, and no loom model
/// touches these words.
pub(crate) mod interprocess {
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
}

/// std's `Arc` and `Mutex` for values that only travel inside an error (a panic payload): never
/// part of a race the loom models check, and created outside models too, where loom's types
/// cannot be.
pub(crate) mod unmodeled {
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
}

#[cfg(not(chi_loom))]
pub(crate) use std_impl::*;

#[cfg(chi_loom)]
pub(crate) use loom_impl::*;

#[cfg(not(chi_loom))]
mod std_impl {
    pub(crate) mod sync {
        pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
        pub(crate) mod atomic {
            pub(crate) use std::sync::atomic::{
                AtomicBool, AtomicU64, AtomicUsize, Ordering, fence,
            };
        }
    }
    pub(crate) mod thread {
        pub(crate) use std::thread::{
            Builder, JoinHandle, Thread, current, park, park_timeout, yield_now,
        };
    }
    pub(crate) mod cell {
        /// `std::cell::UnsafeCell` behind loom's closure-based API.
        #[derive(Debug)]
        pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

        impl<T> UnsafeCell<T> {
            pub(crate) const fn new(value: T) -> Self {
                Self(std::cell::UnsafeCell::new(value))
            }
            /// Shared access through a raw pointer; the caller upholds the aliasing rules.
            #[inline(always)]
            pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
                f(self.0.get())
            }
            /// Exclusive access through a raw pointer; the caller upholds the aliasing rules.
            #[inline(always)]
            pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
                f(self.0.get())
            }
        }
    }
    /// A lock-free spin hint; a no-op yield under loom.
    #[inline(always)]
    pub(crate) fn spin_hint() {
        std::hint::spin_loop();
    }
}

#[cfg(chi_loom)]
mod loom_impl {
    pub(crate) mod sync {
        pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
        pub(crate) mod atomic {
            pub(crate) use loom::sync::atomic::{
                AtomicBool, AtomicU64, AtomicUsize, Ordering, fence,
            };
        }
    }
    pub(crate) mod thread {
        pub(crate) use loom::thread::{Builder, JoinHandle, Thread, current, park, yield_now};
        /// loom has no timed park; a yield keeps models finite and is a legal spurious wake-up.
        pub(crate) fn park_timeout(_d: std::time::Duration) {
            loom::thread::yield_now();
        }
    }
    pub(crate) mod cell {
        pub(crate) use loom::cell::UnsafeCell;
    }
    /// Under loom a spin must yield, or the model never ends.
    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }
}

/// Runs `f` as a loom model under `--cfg chi_loom`, once otherwise: the models' entry point.
#[cfg(test)]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    #[cfg(chi_loom)]
    loom::model(f);
    #[cfg(not(chi_loom))]
    f();
}

/// Starts a thread of a model (loom's under `chi_loom`, std's otherwise).
#[cfg(test)]
pub(crate) fn spawn(f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    #[cfg(chi_loom)]
    return loom::thread::spawn(f);
    #[cfg(not(chi_loom))]
    return std::thread::spawn(f);
}
