//! The task functions the tests submit: they run in the workers.

use super::*;

pub(crate) fn square(x: u64) -> u64 {
    x * x
}

pub(crate) fn pid(_: ()) -> u32 {
    std::process::id()
}

pub(crate) fn panics(n: u32) -> u32 {
    panic!("boom {n}")
}

pub(crate) fn exits(code: i32) -> u32 {
    std::process::exit(code)
}

pub(crate) fn aborts(_: ()) -> u32 {
    std::process::abort()
}

/// Raises SIGSEGV on itself (with the `kill` program, so the test needs no `unsafe`). Twice:
/// std's stack-overflow handler takes the first one, finds no guard-page fault, and restores
/// the default action, which the second one then meets.
pub(crate) fn segfaults(_: ()) -> u32 {
    let me = std::process::id().to_string();
    loop {
        let _ = std::process::Command::new("kill")
            .args(["-s", "SEGV", &me])
            .status();
    }
}

/// Writes this worker's pid to `started`, then waits until `release` exists.
#[derive(Serialize, Deserialize)]
pub(crate) struct Hold {
    pub(crate) started: String,
    pub(crate) release: String,
}

pub(crate) fn hold(h: Hold) -> u32 {
    std::fs::write(&h.started, std::process::id().to_string()).expect("write the start marker");
    while !Path::new(&h.release).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = std::fs::remove_file(&h.release);
    std::process::id()
}

/// Holds like [`hold`] when given a `Hold`, else answers at once.
pub(crate) fn hold_or_pid(h: Option<Hold>) -> u32 {
    h.map_or_else(std::process::id, hold)
}

pub(crate) fn touch(path: String) -> u32 {
    std::fs::write(path, "ran").expect("write");
    std::process::id()
}

/// Appends `id` and a newline to the file at `path` (one `write` with `O_APPEND`, so runs in
/// several processes never interleave); returns `id`.
pub(crate) fn append((path, id): (String, u64)) -> u64 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open");
    f.write_all(format!("{id}\n").as_bytes()).expect("append");
    id
}

/// Burns `us` microseconds of CPU (a worker busy with a short task, not asleep).
pub(crate) fn spins_us(us: u64) -> u64 {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
    us
}

pub(crate) fn sleeps_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

pub(crate) fn shout(s: String) -> usize {
    println!("worker {} says {s}", std::process::id());
    s.len()
}

/// Never encodes.
#[derive(Debug)]
pub(crate) struct Unencodable;
impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses to encode"))
    }
}
impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unencodable)
    }
}

/// Encodes, never decodes.
#[derive(Debug)]
pub(crate) struct Undecodable;
impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}
impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undecodable refuses to decode"))
    }
}

pub(crate) fn takes_unencodable(_: Unencodable) -> u32 {
    1
}
pub(crate) fn takes_undecodable(_: Undecodable) -> u32 {
    1
}
pub(crate) fn returns_unencodable(_: ()) -> Unencodable {
    Unencodable
}
pub(crate) fn returns_undecodable(_: ()) -> Undecodable {
    Undecodable
}

/// Bytes encoded as one byte string (fast in postcard, unlike a sequence of `u8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob(pub(crate) Vec<u8>);
impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}
impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

pub(crate) fn pattern(len: usize, seed: u8) -> Blob {
    Blob(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect(),
    )
}

/// Reverses the blob (so an echo bug cannot pass).
pub(crate) fn reverse(mut b: Blob) -> Blob {
    b.0.reverse();
    b
}

pub(crate) fn make_blob(len: usize) -> Blob {
    pattern(len, 7)
}

/// Writes the head of a 16 MiB `DONE` frame straight to the worker's socket, then aborts:
/// from the pool's side, a worker that crashed while writing a big result.
pub(crate) fn dies_mid_result(_: ()) -> Blob {
    use std::io::Write;
    use std::os::fd::{BorrowedFd, RawFd};
    let marker = std::env::var("CHI_PROCESS_POOL_WORKER").expect("the worker marker");
    let fd: RawFd = marker
        .split(':')
        .nth(2)
        .and_then(|s| s.parse().ok())
        .expect("socket fd in the marker");
    // SAFETY: `fd` is the worker's socket, open for the whole life of the worker process,
    // which ends in `abort` below before anything could close it.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut stream =
        std::os::unix::net::UnixStream::from(sock.try_clone_to_owned().expect("dup the socket"));
    let mut frame = (16u32 << 20).to_le_bytes().to_vec();
    frame.push(19); // DONE
    frame.extend(std::iter::repeat_n(0xAB, 64 << 10));
    let _ = stream.write_all(&frame);
    std::process::abort()
}

/// Lists the worker's own socket descriptors and whether each is close-on-exec.
pub(crate) fn worker_socket_flags(_: ()) -> Vec<(i32, bool)> {
    proc::open_fds()
        .into_iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .map(|(fd, _)| (fd, proc::cloexec(fd)))
        .collect()
}

pub(crate) fn setup_ok(v: u32) {
    INIT_VALUE
        .set(v)
        .expect("the initializer runs once per worker");
}
pub(crate) fn setup_panics(msg: String) {
    panic!("{msg}")
}
pub(crate) fn setup_exits(code: i32) {
    std::process::exit(code)
}
pub(crate) static INIT_VALUE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
pub(crate) fn read_init_value(_: ()) -> Option<u32> {
    INIT_VALUE.get().copied()
}
