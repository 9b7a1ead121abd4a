//! The function reference: how the parent names a function for a worker, how the worker finds
//! it again, and how both sides prove they run the same build.
//!
//! A task function crosses the wire as a [`FnRef`]: two offsets from the image base (the
//! user's `fn(A) -> R` and a trampoline monomorphised for `A` and `R` that decodes the
//! argument, calls the function under `catch_unwind` and encodes the result) and a hash of the
//! signature. Offsets from the image base are the same in every process running the same
//! executable, whatever address space layout randomisation did.
//!
//! That is only sound if the worker runs *the same build*, so nothing is resolved before the
//! hand-shake: both sides compute a [`Fingerprint`] of their own running image (its GNU build
//! id, a layout probe and the executable's identity) and a mismatch is an error that no task
//! gets past. On top of that every resolved address must lie inside the image's code, and the
//! trampoline checks the signature hash before it turns the function's offset into a pointer.
//! (procspawn, the pattern's origin, jumps to the offset unchecked.)
//!
//! Functions outside the main executable (in a `dylib`) have no stable offset; `submit`
//! refuses them with a clear error.

use super::protocol::{
    self, ARG, ARG_CODEC, Fingerprint, FnRef, Items, OK, PANICKED, RESULT_CODEC, push_item,
};
use super::sys::image::{Image, code_at, main_image};
use crate::unwind;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::OnceLock;

/// Environment variable mixed into a worker's fingerprint: set it on a pool's workers (with
/// `ProcessPoolBuilder::env`) to see what a build mismatch looks like. Tests use it.
pub(crate) const FINGERPRINT_SALT: &str = "CHI_PROCESS_POOL_FINGERPRINT_SALT";

/// Everything a trampoline needs to run one message.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    /// This process's image.
    pub(crate) image: &'a Image,
    /// The function, as the parent sent it.
    pub(crate) func: &'a FnRef,
    /// Proof of the hand-shake.
    pub(crate) verified: &'a SameBuild,
    /// The argument items (already checked to be well formed).
    pub(crate) items: &'a [u8],
    /// The largest encoded result item allowed.
    pub(crate) max_item: usize,
}

/// A task trampoline: runs every item of a message, appending one result item per argument.
/// `Err` (nothing appended) when the function cannot be resolved.
pub(crate) type EntryFn = fn(&Call<'_>, &mut Vec<u8>) -> Result<(), String>;

/// An initializer trampoline: decodes the argument and runs the function.
pub(crate) type InitEntryFn = fn(&Image, &FnRef, &SameBuild, &[u8]) -> Result<(), String>;

/// Proof that the parent's fingerprint equals this process's. Only [`verify`] makes one.
#[derive(Debug)]
pub(crate) struct SameBuild(());

/// This process's image, read once.
pub(crate) fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(main_image)
}

/// A stable hash (FNV-1a, 64 bit) of `fn(A) -> R`'s type names.
pub(crate) fn signature<A: 'static, R: 'static>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        std::any::type_name::<A>(),
        " -> ",
        std::any::type_name::<R>(),
    ] {
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn offset_of(image: &Image, addr: usize, what: &str) -> Result<u64, String> {
    if addr < image.code.0 || addr >= image.code.1 {
        return Err(format!(
            "the {what} at {addr:#x} is not in the program's own code ({:#x}..{:#x}); a process pool \
             can only run functions linked into the executable, not ones from a dynamic library",
            image.code.0, image.code.1
        ));
    }
    Ok((addr - image.base) as u64)
}

/// The wire form of task function `f`.
pub(crate) fn fn_ref<A, R>(f: fn(A) -> R) -> Result<FnRef, String>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let image = image();
    let tramp: EntryFn = entry::<A, R>;
    Ok(FnRef {
        entry: offset_of(image, tramp as usize, "task trampoline")?,
        func: offset_of(image, f as usize, "task function")?,
        sig: signature::<A, R>(),
    })
}

/// The wire form of initializer `f`.
pub(crate) fn init_ref<A>(f: fn(A)) -> Result<FnRef, String>
where
    A: DeserializeOwned + 'static,
{
    let image = image();
    let tramp: InitEntryFn = init_entry::<A>;
    Ok(FnRef {
        entry: offset_of(image, tramp as usize, "initializer trampoline")?,
        func: offset_of(image, f as usize, "initializer")?,
        sig: signature::<A, ()>(),
    })
}

/// The task trampoline for `fn(A) -> R`.
fn entry<A, R>(call: &Call<'_>, out: &mut Vec<u8>) -> Result<(), String>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let f = task_fn_at::<A, R>(call.image, call.func, call.verified).ok_or_else(|| {
        "the task function could not be found in the worker (signature or address mismatch)"
            .to_owned()
    })?;
    for item in Items::new(call.items) {
        let (tag, bytes) = item.map_err(|e| e.to_string())?;
        if tag != ARG {
            // The parent could not encode this argument; echo its message.
            push_item(out, ARG_CODEC, bytes);
            continue;
        }
        let a = match protocol::decode::<A>(bytes) {
            Ok(a) => a,
            Err(e) => {
                let msg = format!("the argument did not decode in the worker: {e}");
                push_item(out, ARG_CODEC, msg.as_bytes());
                continue;
            }
        };
        let start = out.len();
        // Encoding runs under the same catch: a panicking `Serialize` is the task's panic.
        let ran = unwind::catch(|| {
            let r = f(a);
            protocol::push_encoded_item(out, OK, RESULT_CODEC, &r);
        });
        match ran {
            Err(message) => {
                out.truncate(start);
                push_item(out, PANICKED, message.as_bytes());
            }
            Ok(()) => {
                let len = out.len() - start - 5;
                if len > call.max_item {
                    out.truncate(start);
                    let msg = format!(
                        "the result is {len} bytes, over the pool's maximum message size of {} bytes",
                        call.max_item
                    );
                    push_item(out, RESULT_CODEC, msg.as_bytes());
                }
            }
        }
    }
    Ok(())
}

/// The initializer trampoline for `fn(A)`.
fn init_entry<A>(
    image: &Image,
    func: &FnRef,
    verified: &SameBuild,
    arg: &[u8],
) -> Result<(), String>
where
    A: DeserializeOwned + 'static,
{
    let f = task_fn_at::<A, ()>(image, func, verified)
        .ok_or_else(|| "the initializer could not be found in the worker".to_owned())?;
    let a = protocol::decode::<A>(arg)
        .map_err(|e| format!("the initializer's argument did not decode: {e}"))?;
    unwind::catch(|| f(a)).map_err(|m| format!("the initializer panicked: {m}"))
}

/// Turns a [`FnRef`] offset into a function of type `F`. Private: reached only through the
/// three typed wrappers below, each of which fixes `F` to the type the offset was taken from.
fn lookup<F: Copy>(image: &Image, offset: u64, verified: &SameBuild) -> Option<F> {
    let _ = verified;
    // Why `offset` is a function of type `F` in this build, as `code_at` requires: (1) the
    // parent computed it as the address of a function of exactly type `F` minus its image base
    // (`fn_ref` and `init_ref` above, the only places that build a `FnRef`; each wrapper below
    // reads the field that holds that type); (2) the parent runs the same build as this
    // process (`verified` exists only after the fingerprints matched: same build id and
    // layout), so the same function sits at the same offset here; `code_at` also checks that
    // the address is inside this image's code, and every `F` here is a `fn` pointer type.
    // SAFETY: `offset` is a function of exactly type `F` in this build, per (1)-(2) above.
    unsafe { code_at::<F>(image, offset) }
}

/// The trampoline of a task message (`FnRef::entry`).
pub(crate) fn entry_at(image: &Image, r: &FnRef, verified: &SameBuild) -> Option<EntryFn> {
    lookup(image, r.entry, verified)
}

/// The trampoline of an initializer (`InitCall::func.entry`).
pub(crate) fn init_entry_at(image: &Image, r: &FnRef, verified: &SameBuild) -> Option<InitEntryFn> {
    lookup(image, r.entry, verified)
}

/// The user's function of a message, as the trampoline for `A`, `R` sees it. Refuses unless
/// the signature hash the parent sent is that of `fn(A) -> R`.
fn task_fn_at<A: 'static, R: 'static>(
    image: &Image,
    r: &FnRef,
    verified: &SameBuild,
) -> Option<fn(A) -> R> {
    if r.sig != signature::<A, R>() {
        return None;
    }
    lookup(image, r.func, verified)
}

/// Never called: its offset from the image base is the fingerprint's layout probe.
#[inline(never)]
fn layout_probe() {}

/// This process's fingerprint, computed once.
pub(crate) fn fingerprint() -> &'static Fingerprint {
    static FP: OnceLock<Fingerprint> = OnceLock::new();
    FP.get_or_init(|| {
        let image = image();
        let probe: fn() = layout_probe;
        let mut layout = (probe as usize).wrapping_sub(image.base) as u64;
        if let Some(salt) = std::env::var_os(FINGERPRINT_SALT) {
            for b in salt.as_encoded_bytes() {
                layout = layout.rotate_left(5) ^ u64::from(*b) ^ 0x5bd1_e995;
            }
        }
        Fingerprint {
            build_id: image.build_id.clone(),
            layout,
            exe: exe_identity(),
            chi: env!("CARGO_PKG_VERSION").to_owned(),
        }
    })
}

fn exe_identity() -> [u64; 4] {
    use std::os::unix::fs::MetadataExt;
    // Opening follows the magic link to the file really running, even if the path was since
    // replaced or deleted.
    match std::fs::File::open("/proc/self/exe").and_then(|f| f.metadata()) {
        Ok(m) => [
            m.dev(),
            m.ino(),
            m.size(),
            (m.mtime() as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(m.mtime_nsec() as u64),
        ],
        Err(_) => [0; 4],
    }
}

/// Checks the other side's fingerprint against this process's.
pub(crate) fn verify(theirs: &Fingerprint) -> Result<SameBuild, String> {
    let ours = fingerprint();
    if ours.same_build(theirs) {
        Ok(SameBuild(()))
    } else {
        Err(format!(
            "the worker runs a different build of the program than the pool (pool: {ours}; worker: {theirs}); \
             was the executable rebuilt or replaced while it ran?"
        ))
    }
}
