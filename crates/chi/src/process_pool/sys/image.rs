//! The program image: where the running executable is loaded (read from the dynamic loader),
//! and the one place a code address becomes a function pointer ([`code_at`]).

use std::mem::size_of;

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

/// Turns a code offset from the image base back into a function pointer of type `F`, if the
/// address lies inside this image's code.
///
/// # Safety
///
/// `offset` must be the offset of a function of exactly type `F` in *this* build of the
/// program (the caller proves it: the offset was taken from such a function in a process
/// whose fingerprint matched this one's), and `F` must be a `fn` pointer type.
pub(crate) unsafe fn code_at<F: Copy>(image: &Image, offset: u64) -> Option<F> {
    const { assert!(size_of::<F>() == size_of::<usize>()) };
    let addr = image.base.checked_add(usize::try_from(offset).ok()?)?;
    if addr < image.code.0 || addr >= image.code.1 {
        return None;
    }
    // SAFETY: per this function's contract `addr` is a function of exactly type `F` in this
    // image (and it is inside the image's code, checked above), and `F` is a pointer-sized
    // `fn` type: this is the inverse of `f as usize`.
    Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) })
}
