//! Shared memory between the parent and one worker: a `memfd` that both map `MAP_SHARED`,
//! seen only as a slice of atomic words.

use crate::loom::interprocess::AtomicU64;
use rustix::fs::MemfdFlags;
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// A mapping of `words` zero-initialised atomic words, shared across processes.
#[derive(Debug)]
pub(crate) struct SharedWords {
    base: NonNull<AtomicU64>,
    words: usize,
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping is plain shared memory accessed only through atomics; the pointer is
// valid until Drop (which needs `&mut self`), so sharing and sending the handle is fine.
unsafe impl Send for SharedWords {}
// SAFETY: as above: all access is through `&AtomicU64`.
unsafe impl Sync for SharedWords {}

impl SharedWords {
    fn bytes(words: usize) -> usize {
        (words * size_of::<u64>()).max(64)
    }

    /// A new zeroed mapping of `words` words (parent side), named `name` for `/proc`. Its
    /// descriptor is close-on-exec.
    pub(crate) fn create(name: &std::ffi::CStr, words: usize) -> io::Result<SharedWords> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
        // New pages read as zero.
        rustix::fs::ftruncate(&fd, Self::bytes(words) as u64)?;
        Self::map(fd, words)
    }

    /// Maps what the parent created (worker side), after checking its size.
    pub(crate) fn attach(fd: OwnedFd, words: usize) -> io::Result<SharedWords> {
        let len = std::fs::File::from(fd.try_clone()?).metadata()?.len();
        if len < Self::bytes(words) as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared memory smaller than announced",
            ));
        }
        Self::map(fd, words)
    }

    fn map(fd: OwnedFd, words: usize) -> io::Result<SharedWords> {
        // SAFETY: maps `bytes` bytes of a memfd at least that large, shared, at an address the
        // kernel picks (no existing mapping is touched); failure is an error, not a pointer.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                Self::bytes(words),
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }?;
        let base = NonNull::new(p.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SharedWords {
            base,
            words,
            fd: Some(fd),
        })
    }

    /// The descriptor to hand to the worker (parent side, until [`SharedWords::close_fd`]).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Closes the descriptor once the worker has it; the mapping stays.
    pub(crate) fn close_fd(&mut self) {
        self.fd = None;
    }

    /// The words, as atomics.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds at least `words` u64 words at a page-aligned base, zeroed
        // or written only through atomics, and lives as long as `self` (the slice borrows it).
        // `AtomicU64` has the size and alignment of `u64`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.words) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped; no reference into it outlives `self`
        // (`words` borrows `self`).
        let _ = unsafe { munmap(self.base.as_ptr().cast(), Self::bytes(self.words)) };
    }
}
