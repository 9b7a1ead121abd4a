//! The wire format between a pool and its worker processes. Pure code: no I/O, no `unsafe`,
//! checked by a case matrix and a proptest (`tests.rs`) and fuzzed (`fuzz/`).
//!
//! ```text
//! frame   = len:u32le  body                      len = body length, at most the pool's max
//! body    = tag:u8  payload
//!
//! worker → parent                                parent → worker
//!   HELLO        postcard(Hello)                   WELCOME   postcard(Welcome)
//!   READY        (empty)                           RUN       postcard(RunHeader) items
//!   INIT_FAILED  postcard(String)                  SHUTDOWN  (empty)
//!   DONE         postcard(DoneHeader) items
//!
//! items   = item*                                exactly `count` of them (RunHeader/DoneHeader)
//! item    = tag:u8  len:u32le  bytes             bytes = postcard of the argument or result,
//!                                                or a UTF-8 message for the error tags
//! ```
//!
//! A `RUN` carries one item for `submit` and `chunksize` items for `map`; its `DONE` carries
//! one result item per argument item, in order. Every length is checked against the bytes
//! actually present, so a truncated or hostile stream is an error, never a panic or an
//! over-read.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;
use std::os::fd::RawFd;

/// Bytes in the length prefix of a frame.
pub(crate) const LEN_BYTES: usize = 4;
/// The largest frame body the hand-shake accepts before the real limit is agreed.
pub(crate) const HANDSHAKE_MAX: usize = 64 * 1024;
/// Version of this format; a worker speaking another one is refused.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

// Frame tags. Parent → worker:
/// The parent's answer to `HELLO`: its fingerprint and the pool's settings.
pub(crate) const WELCOME: u8 = 1;
/// Run one message of work (one item for `submit`, a chunk for `map`).
pub(crate) const RUN: u8 = 2;
/// Exit after the current message (recycling, shutdown).
pub(crate) const SHUTDOWN: u8 = 3;
// Worker → parent:
/// The worker's first frame: its fingerprint and pid.
pub(crate) const HELLO: u8 = 16;
/// The initializer ran; the worker takes work.
pub(crate) const READY: u8 = 17;
/// The initializer panicked (message follows); the worker exits.
pub(crate) const INIT_FAILED: u8 = 18;
/// The results of one `RUN`.
pub(crate) const DONE: u8 = 19;

// Item tags. Arguments:
/// A postcard-encoded argument.
pub(crate) const ARG: u8 = 0;
/// The parent could not encode this argument; the bytes are the message, echoed back as
/// `ARG_CODEC` so the item keeps its place in a chunk.
pub(crate) const ARG_FAILED: u8 = 1;
// Results:
/// A postcard-encoded result.
pub(crate) const OK: u8 = 0;
/// The task panicked; the bytes are the message.
pub(crate) const PANICKED: u8 = 1;
/// The argument could not be decoded in the worker (or encoded in the parent).
pub(crate) const ARG_CODEC: u8 = 2;
/// The result could not be encoded in the worker.
pub(crate) const RESULT_CODEC: u8 = 3;

/// Why bytes from the other side are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    /// A frame announced more bytes than the limit.
    TooLarge {
        /// The announced body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A frame with no tag or an unknown one.
    UnknownTag(u8),
    /// A frame whose payload does not decode, or whose items run past its end.
    Malformed(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::TooLarge { len, max } => {
                write!(
                    f,
                    "a message of {len} bytes is over the maximum message size of {max} bytes"
                )
            }
            ProtocolError::UnknownTag(t) => write!(f, "unknown message tag {t}"),
            ProtocolError::Malformed(m) => write!(f, "malformed message: {m}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

fn malformed(what: impl fmt::Display) -> ProtocolError {
    ProtocolError::Malformed(what.to_string())
}

// ===== messages =====

/// What both sides compute from their own running program; equal means the same build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    /// The GNU build id of the loaded executable (empty when the linker wrote none).
    pub(crate) build_id: Vec<u8>,
    /// Offset of a known function from the image base: a cheap layout check.
    pub(crate) layout: u64,
    /// Device, inode, size and modification time (ns) of `/proc/self/exe`.
    pub(crate) exe: [u64; 4],
    /// chi's version.
    pub(crate) chi: String,
}

impl Fingerprint {
    /// Same build: same layout and chi, and the same build id when both have one, else the
    /// same executable file.
    pub(crate) fn same_build(&self, other: &Fingerprint) -> bool {
        let ids = if !self.build_id.is_empty() && !other.build_id.is_empty() {
            self.build_id == other.build_id
        } else {
            self.exe == other.exe
        };
        ids && self.layout == other.layout && self.chi == other.chi
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "build id ")?;
        if self.build_id.is_empty() {
            write!(f, "(none)")?;
        }
        for b in &self.build_id {
            write!(f, "{b:02x}")?;
        }
        write!(
            f,
            ", layout {:#x}, exe inode {} size {}, chi {}",
            self.layout, self.exe[1], self.exe[2], self.chi
        )
    }
}

/// The worker's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// [`PROTOCOL_VERSION`] of the worker.
    pub(crate) protocol: u32,
    /// The worker's own fingerprint.
    pub(crate) fingerprint: Fingerprint,
    /// The worker's process id.
    pub(crate) pid: u32,
}

/// A function as it crosses the wire: offsets from the image base, and a hash of its
/// signature. Built only by `func::fn_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FnRef {
    /// Offset of the monomorphised trampoline that decodes, calls and encodes.
    pub(crate) entry: u64,
    /// Offset of the user's `fn(A) -> R`.
    pub(crate) func: u64,
    /// Hash of the type names of `A` and `R`, checked by the trampoline before the call.
    pub(crate) sig: u64,
}

/// The worker initializer: which function, and its encoded argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InitCall {
    /// The function (its trampoline decodes the argument and runs it).
    pub(crate) func: FnRef,
    /// postcard of the argument.
    pub(crate) arg: Vec<u8>,
}

/// The parent's answer to `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Welcome {
    /// The parent's fingerprint, for the worker's own check.
    pub(crate) fingerprint: Fingerprint,
    /// The maximum frame body, both directions.
    pub(crate) max_frame: u64,
    /// Run before taking work.
    pub(crate) init: Option<InitCall>,
}

/// The fixed part of a `RUN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunHeader {
    /// Per-worker sequence number of this message.
    pub(crate) seq: u64,
    /// The claim slot in the shared ring (see `ring::Ring`).
    pub(crate) slot: u32,
    /// The function to run on every item.
    pub(crate) func: FnRef,
    /// How many items follow.
    pub(crate) count: u32,
}

/// Whether the worker ran a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum DoneStatus {
    /// It ran; one result item per argument item follows.
    Ran,
    /// The parent revoked it before it started (cancel); no items follow.
    Skipped,
}

/// The fixed part of a `DONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DoneHeader {
    /// The `seq` of the `RUN` this answers.
    pub(crate) seq: u64,
    /// Ran or skipped.
    pub(crate) status: DoneStatus,
    /// How many result items follow.
    pub(crate) count: u32,
}

/// A decoded frame from a worker. Item bytes borrow the frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromWorker<'a> {
    /// `HELLO`.
    Hello(Hello),
    /// `READY`.
    Ready,
    /// `INIT_FAILED` with the panic message.
    InitFailed(String),
    /// `DONE`: the header and the raw items (checked to hold exactly `count` items).
    Done(DoneHeader, &'a [u8]),
}

/// A decoded frame from the parent. Item bytes borrow the frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    /// `WELCOME`.
    Welcome(Welcome),
    /// `RUN`: the header and the raw items (checked to hold exactly `count` items).
    Run(RunHeader, &'a [u8]),
    /// `SHUTDOWN`.
    Shutdown,
}

// ===== encoding =====

/// A postcard output that appends to an existing `Vec` (postcard's own flavors allocate).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the postcard encoding of `value` to `out`. On error `out` is left as it was.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    let mark = out.len();
    postcard::serialize_with_flavor(value, Append(out)).inspect_err(|_| {
        out.truncate(mark);
    })
}

/// Decodes a whole postcard value.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Starts a frame with `tag` in `out`; returns where it starts, for [`end_frame`].
pub(crate) fn begin_frame(out: &mut Vec<u8>, tag: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    out.push(tag);
    start
}

/// Writes the length of the frame begun at `start`. If the body is over `max`, the frame is
/// removed from `out` and the error says by how much.
pub(crate) fn end_frame(out: &mut Vec<u8>, start: usize, max: usize) -> Result<(), ProtocolError> {
    let len = out.len() - start - LEN_BYTES;
    if len > max || len > u32::MAX as usize {
        out.truncate(start);
        return Err(ProtocolError::TooLarge { len, max });
    }
    out[start..start + LEN_BYTES].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Appends a whole frame: `tag` and the postcard encoding of `value`.
pub(crate) fn encode_frame<T: Serialize>(
    out: &mut Vec<u8>,
    tag: u8,
    value: &T,
    max: usize,
) -> Result<(), String> {
    let start = begin_frame(out, tag);
    if let Err(e) = encode_into(value, out) {
        out.truncate(start);
        return Err(e.to_string());
    }
    end_frame(out, start, max).map_err(|e| e.to_string())
}

/// Appends a frame with no payload.
pub(crate) fn encode_empty(out: &mut Vec<u8>, tag: u8) {
    let start = begin_frame(out, tag);
    out[start..start + LEN_BYTES].copy_from_slice(&1u32.to_le_bytes());
}

/// Starts an item with `tag`; returns where it starts, for [`end_item`].
pub(crate) fn begin_item(out: &mut Vec<u8>, tag: u8) -> usize {
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&[0; 4]);
    start
}

/// Writes the length of the item begun at `start`.
pub(crate) fn end_item(out: &mut Vec<u8>, start: usize) -> Result<(), ProtocolError> {
    let len = out.len() - start - 5;
    let Ok(len32) = u32::try_from(len) else {
        out.truncate(start);
        return Err(ProtocolError::TooLarge {
            len,
            max: u32::MAX as usize,
        });
    };
    out[start + 1..start + 5].copy_from_slice(&len32.to_le_bytes());
    Ok(())
}

/// Appends one item holding `bytes` as they are.
pub(crate) fn push_item(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    let start = begin_item(out, tag);
    out.extend_from_slice(bytes);
    // A slice that fits in memory next to a 4 GiB limit check: lengths over u32 are refused
    // by the frame limit long before; saturate rather than panic.
    if end_item(out, start).is_err() {
        push_item(out, tag, b"item over 4 GiB");
    }
}

/// Appends one item holding the postcard encoding of `value`, or, if encoding fails, an item
/// with `err_tag` and the error message.
pub(crate) fn push_encoded_item<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    tag: u8,
    err_tag: u8,
    value: &T,
) {
    let start = begin_item(out, tag);
    match encode_into(value, out) {
        Ok(()) => {
            if end_item(out, start).is_err() {
                push_item(out, err_tag, b"item over 4 GiB");
            }
        }
        Err(e) => {
            out.truncate(start);
            push_item(out, err_tag, e.to_string().as_bytes());
        }
    }
}

/// Appends a `RUN` frame with already-encoded `items`.
pub(crate) fn encode_run(
    out: &mut Vec<u8>,
    header: &RunHeader,
    items: &[u8],
    max: usize,
) -> Result<(), ProtocolError> {
    let start = begin_frame(out, RUN);
    encode_into(header, out).map_err(malformed)?;
    out.extend_from_slice(items);
    end_frame(out, start, max)
}

// ===== decoding =====

/// The items section of a `RUN` or `DONE`, item by item.
#[derive(Debug, Clone)]
pub(crate) struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Items<'a> {
    /// Reads `bytes` as items (validated lazily; use [`check_items`] to validate first).
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Items { rest: bytes }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<(u8, &'a [u8]), ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((head, body)) = self.rest.split_at_checked(5) else {
            self.rest = &[];
            return Some(Err(malformed("an item header is cut short")));
        };
        let tag = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let Some((item, rest)) = body.split_at_checked(len) else {
            self.rest = &[];
            return Some(Err(malformed(format!(
                "an item of {len} bytes has only {} bytes left",
                body.len()
            ))));
        };
        self.rest = rest;
        Some(Ok((tag, item)))
    }
}

/// Checks that `bytes` holds exactly `count` well-formed items.
pub(crate) fn check_items(bytes: &[u8], count: u32) -> Result<(), ProtocolError> {
    let mut n: u64 = 0;
    for item in Items::new(bytes) {
        item?;
        n += 1;
    }
    if n != u64::from(count) {
        return Err(malformed(format!(
            "{n} items where the header says {count}"
        )));
    }
    Ok(())
}

fn split_tag(body: &[u8]) -> Result<(u8, &[u8]), ProtocolError> {
    match body.split_first() {
        Some((&tag, rest)) => Ok((tag, rest)),
        None => Err(ProtocolError::UnknownTag(0)),
    }
}

fn whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(malformed(format!("{} bytes after the payload", rest.len()))),
        Err(e) => Err(malformed(e)),
    }
}

fn expect_empty(rest: &[u8]) -> Result<(), ProtocolError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(malformed("a payload on an empty message"))
    }
}

/// Decodes a frame body sent by a worker.
pub(crate) fn decode_from_worker(body: &[u8]) -> Result<FromWorker<'_>, ProtocolError> {
    let (tag, rest) = split_tag(body)?;
    match tag {
        HELLO => Ok(FromWorker::Hello(whole(rest)?)),
        READY => expect_empty(rest).map(|()| FromWorker::Ready),
        INIT_FAILED => Ok(FromWorker::InitFailed(whole(rest)?)),
        DONE => {
            let (h, items) = postcard::take_from_bytes::<DoneHeader>(rest).map_err(malformed)?;
            check_items(items, h.count)?;
            Ok(FromWorker::Done(h, items))
        }
        t => Err(ProtocolError::UnknownTag(t)),
    }
}

/// Decodes a frame body sent by the parent.
pub(crate) fn decode_to_worker(body: &[u8]) -> Result<ToWorker<'_>, ProtocolError> {
    let (tag, rest) = split_tag(body)?;
    match tag {
        WELCOME => Ok(ToWorker::Welcome(whole(rest)?)),
        RUN => {
            let (h, items) = postcard::take_from_bytes::<RunHeader>(rest).map_err(malformed)?;
            check_items(items, h.count)?;
            Ok(ToWorker::Run(h, items))
        }
        SHUTDOWN => expect_empty(rest).map(|()| ToWorker::Shutdown),
        t => Err(ProtocolError::UnknownTag(t)),
    }
}

// ===== the frame buffer =====

/// Bytes read from a socket, cut into frames.
///
/// Reads append at the end ([`FrameBuf::read_space`]); [`FrameBuf::next_frame`] hands out the
/// range of each complete frame body. Consumed bytes are dropped only when more space is
/// needed, so ranges handed out stay valid until the next `read_space`.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    pos: usize,
    max: usize,
}

impl FrameBuf {
    /// An empty buffer that refuses frames whose body is over `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        FrameBuf {
            buf: Vec::new(),
            pos: 0,
            max,
        }
    }

    /// Changes the limit (after the hand-shake).
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Bytes received and not yet handed out.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The buffer to read into: consumed bytes are dropped and at least `min` bytes of spare
    /// capacity are ensured, more when a large frame is known to be coming.
    pub(crate) fn read_space(&mut self, min: usize) -> &mut Vec<u8> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
            // Do not keep a big message's buffer around once it is consumed.
            if self.buf.is_empty() && self.buf.capacity() > 4 << 20 {
                self.buf = Vec::new();
            }
        }
        let want = match self.announced() {
            Some(len) if len <= self.max => {
                (LEN_BYTES + len).saturating_sub(self.buf.len()).max(min)
            }
            _ => min,
        };
        self.buf.reserve(want);
        &mut self.buf
    }

    /// The announced body length of the frame at `pos`, if its prefix has arrived.
    fn announced(&self) -> Option<usize> {
        let head = self.buf.get(self.pos..self.pos + LEN_BYTES)?;
        Some(u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize)
    }

    /// Appends `data` (tests and the fuzz target; sockets use `read_space`).
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.read_space(data.len()).extend_from_slice(data);
    }

    /// The body range of the next complete frame, `None` if it has not fully arrived, or an
    /// error if its length is over the limit (the stream is then unusable).
    pub(crate) fn next_frame(&mut self) -> Result<Option<Range<usize>>, ProtocolError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > self.max {
            return Err(ProtocolError::TooLarge { len, max: self.max });
        }
        let start = self.pos + LEN_BYTES;
        if self.buf.len() - start < len {
            return Ok(None);
        }
        self.pos = start + len;
        Ok(Some(start..start + len))
    }

    /// The bytes of a range handed out by `next_frame`.
    pub(crate) fn get(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// Runs arbitrary bytes through everything a worker or a parent does with received bytes
/// (frame splitting, both message decoders, the items of `RUN` and `DONE`). Never panics; the
/// fuzz target and the proptest call it. Returns how many frames decoded cleanly.
pub(crate) fn decode_stream(data: &[u8], max: usize) -> usize {
    let mut fb = FrameBuf::new(max);
    // Feed in two pieces to exercise a frame split across reads.
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut ok = 0;
    for piece in [&data[..cut], &data[cut..]] {
        fb.push(piece);
        while let Ok(Some(r)) = fb.next_frame() {
            let body = fb.get(r);
            if let Ok(FromWorker::Done(_, items)) = decode_from_worker(body) {
                ok += Items::new(items).filter(Result::is_ok).count().min(1);
            }
            if let Ok(ToWorker::Run(_, items)) = decode_to_worker(body) {
                ok += Items::new(items).filter(Result::is_ok).count().min(1);
            }
        }
    }
    ok
}

/// What the marker variable (`CHI_PROCESS_POOL_WORKER`) tells a worker: its parent and the
/// descriptors it inherited. Encoded as `v2:<parent>:<sock>:<ring>:<stdout>:<bell>:<slots>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) parent: u32,
    pub(crate) sock: RawFd,
    pub(crate) ring: RawFd,
    pub(crate) stdout: RawFd,
    /// The doorbell: an eventfd the worker writes to wake its supervisor.
    pub(crate) bell: RawFd,
    pub(crate) slots: usize,
}

impl Marker {
    pub(crate) fn encode(&self) -> String {
        format!(
            "v2:{}:{}:{}:{}:{}:{}",
            self.parent, self.sock, self.ring, self.stdout, self.bell, self.slots
        )
    }

    pub(crate) fn parse(s: &str) -> Option<Marker> {
        let mut it = s.split(':');
        if it.next()? != "v2" {
            return None;
        }
        let m = Marker {
            parent: it.next()?.parse().ok()?,
            sock: it.next()?.parse().ok()?,
            ring: it.next()?.parse().ok()?,
            stdout: it.next()?.parse().ok()?,
            bell: it.next()?.parse().ok()?,
            slots: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(m)
    }
}
