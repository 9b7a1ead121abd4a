//! The claim ring: how the parent and one worker agree, without a message round trip, whether
//! a message was cancelled before it started or started before it was cancelled.
//!
//! Slot `i` holds the claim word of the message in flight there, `seq << 3 | state`, and the
//! worker's start stamp. States: PENDING (written by the parent before it sends), STARTED
//! (worker, just before the user's function runs), REVOKED (parent: cancelled before start,
//! the worker skips it), DONE (worker, after the function returned), plus a KILL bit the
//! parent sets on a STARTED word before it kills the worker, so the worker never starts the
//! next message in the window between the decision and the signal. Every transition is one
//! compare-and-swap on the whole word, so the two processes always agree on who won.
//!
//! Each slot also holds the message's answer when the worker puts it there rather than in
//! the socket (up to [`ANSWER_BYTES`], the tag and payload of its `DONE` frame): a tag word,
//! `(seq + 1) << 8 | length`, written after the bytes, so the parent takes the bytes only
//! for the message it expects and only once they are complete. An answer there survives the
//! worker: the parent reads it after a crash as it reads frames already in the socket.
//!
//! The words live in shared memory ([`SharedWords`], a `memfd` both processes map); this
//! file is the algorithm only and has no `unsafe` code.

use super::bell::{self, Bell};
use super::sys::monotonic_ns;
use super::sys::shm::SharedWords;
use crate::loom::interprocess::{AtomicU64, Ordering};
use std::io;
use std::ops::Range;
use std::os::fd::{OwnedFd, RawFd};

/// Words per slot: the claim word, the start stamp, the answer's tag and length, and the
/// answer's bytes.
const WORDS_PER_SLOT: usize = 3 + ANSWER_WORDS;
/// Words of answer bytes per slot.
const ANSWER_WORDS: usize = 12;
/// The largest answer (the tag and payload of a `DONE` frame) a worker puts into its slot
/// instead of the socket: 96 bytes, enough for a few numbers or a short string.
pub(crate) const ANSWER_BYTES: usize = ANSWER_WORDS * 8;

/// The claim words of one worker's messages in flight (see the module docs).
#[derive(Debug)]
pub(crate) struct Ring {
    mem: SharedWords,
    slots: usize,
}

/// The slot is written by the parent, the message not yet started.
pub(crate) const PENDING: u64 = 0;
/// The worker started the message.
pub(crate) const STARTED: u64 = 1;
/// The parent revoked the message before it started.
pub(crate) const REVOKED: u64 = 2;
/// The worker finished the message's function(s).
pub(crate) const DONE: u64 = 3;
/// The parent decided to kill the worker running this message.
pub(crate) const KILL: u64 = 4;
const STATE_MASK: u64 = 3;

/// What a claim word said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    /// PENDING, STARTED, REVOKED or DONE.
    pub(crate) state: u64,
    /// The KILL bit.
    pub(crate) kill: bool,
}

impl Ring {
    /// A new zeroed ring of `slots` slots (parent side). Its descriptor is close-on-exec.
    pub(crate) fn create(slots: usize) -> io::Result<Ring> {
        let mem = SharedWords::create(c"chi-claims", Self::words(slots))?;
        Ok(Ring { mem, slots })
    }

    /// Maps a ring the parent created (worker side), after checking its size.
    pub(crate) fn attach(fd: OwnedFd, slots: usize) -> io::Result<Ring> {
        let mem = SharedWords::attach(fd, Self::words(slots))?;
        Ok(Ring { mem, slots })
    }

    /// Words in the mapping: the claim slots, then the doorbell's.
    fn words(slots: usize) -> usize {
        slots * WORDS_PER_SLOT + bell::WORDS
    }

    /// The doorbell between the parent and this worker (see `bell.rs`).
    pub(crate) fn bell(&self) -> Bell<'_> {
        Bell::over(&self.mem.words()[self.slots * WORDS_PER_SLOT..])
    }

    /// The descriptor to hand to the worker (parent side, until [`Ring::close_fd`]).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.mem.raw_fd()
    }

    /// Closes the descriptor once the worker has it; the mapping stays.
    pub(crate) fn close_fd(&mut self) {
        self.mem.close_fd();
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    fn word(&self, slot: usize, which: usize) -> &AtomicU64 {
        assert!(slot < self.slots, "claim slot {slot} out of range");
        &self.mem.words()[slot * WORDS_PER_SLOT + which]
    }

    fn split(word: u64) -> (u64, Claim) {
        // (The claim word is `seq << 3 | state`; see `answer_tag` for the answer's.)
        (
            word >> 3,
            Claim {
                state: word & STATE_MASK,
                kill: word & KILL != 0,
            },
        )
    }

    /// The state of `slot` if it still belongs to message `seq`.
    pub(crate) fn observe(&self, slot: usize, seq: u64) -> Option<Claim> {
        // ORDERING: Acquire pairs with the worker's Release transitions so that a STARTED seen
        // here comes with the start stamp written before it.
        let (s, c) = Self::split(self.word(slot, 0).load(Ordering::Acquire));
        (s == seq).then_some(c)
    }

    /// The worker's start stamp of the message in `slot` (valid once STARTED was observed).
    pub(crate) fn started_ns(&self, slot: usize) -> u64 {
        // ORDERING: Relaxed: ordered by the Acquire load of the claim word that showed STARTED.
        self.word(slot, 1).load(Ordering::Relaxed)
    }

    /// Parent, before sending message `seq` in `slot`: marks it PENDING.
    pub(crate) fn publish(&self, slot: usize, seq: u64) {
        // ORDERING: Release; the send that follows orders it for the worker anyway (the worker
        // reads the word only after receiving the message), this makes it explicit.
        self.word(slot, 0)
            .store(seq << 3 | PENDING, Ordering::Release);
    }

    /// Worker: claims message `seq` before running it. Ok(()) means run it; Err is what the
    /// word held instead (REVOKED: skip it; anything else: a protocol error).
    pub(crate) fn start(&self, slot: usize, seq: u64) -> Result<(), (u64, Claim)> {
        // ORDERING: Relaxed store of the stamp, published by the Release CAS below.
        self.word(slot, 1).store(monotonic_ns(), Ordering::Relaxed);
        // ORDERING: AcqRel: Release publishes the stamp; Acquire makes a parent's REVOKED visible
        // together with anything it wrote before.
        self.word(slot, 0)
            .compare_exchange(
                seq << 3 | PENDING,
                seq << 3 | STARTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(Self::split)
    }

    /// Worker: the function of message `seq` returned. True if the parent asked for a kill in
    /// the meantime (the worker then must not start anything else).
    pub(crate) fn finish(&self, slot: usize, seq: u64) -> bool {
        // ORDERING: AcqRel swap: one total order with the parent's KILL CAS on the same word.
        let prev = self.word(slot, 0).swap(seq << 3 | DONE, Ordering::AcqRel);
        prev & KILL != 0
    }

    /// Worker: puts the answer of message `seq` (`body`: the tag and payload of its `DONE`
    /// frame) into the message's slot instead of the socket. False if it does not fit: then
    /// it goes to the socket. After a true, the worker asks [`Bell::answered`] whether to
    /// ring: the supervisor may be watching only the socket.
    ///
    /// [`Bell::answered`]: super::bell::Bell::answered
    pub(crate) fn put_answer(&self, slot: usize, seq: u64, body: &[u8]) -> bool {
        if slot >= self.slots || body.len() > ANSWER_BYTES {
            return false;
        }
        for (k, chunk) in body.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            // ORDERING: Relaxed: published by the store of the tag word below.
            self.word(slot, 3 + k)
                .store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        // ORDERING: SeqCst (a Release at least, to publish the bytes): the worker then fences
        // and reads the bell's `want`, the supervisor disarms, fences and reads this word
        // (the store-then-load pair of `bell.rs`).
        self.word(slot, 2)
            .store(answer_tag(seq) | body.len() as u64, Ordering::SeqCst);
        true
    }

    /// Parent: the answer of message `seq` if its worker put it into the slot: its bytes
    /// appended to `out`, and where. The bytes are the worker's to write, so they are only
    /// as good as the decoder that reads them (a length over the slot is cut to it).
    pub(crate) fn take_answer(
        &self,
        slot: usize,
        seq: u64,
        out: &mut Vec<u8>,
    ) -> Option<Range<usize>> {
        // ORDERING: Acquire pairs with the worker's store of the tag: the bytes come with it.
        let tag = self.word(slot, 2).load(Ordering::Acquire);
        if tag & !0xff != answer_tag(seq) {
            return None;
        }
        let len = ((tag & 0xff) as usize).min(ANSWER_BYTES);
        let start = out.len();
        for k in 0..len.div_ceil(8) {
            // ORDERING: Relaxed: ordered by the Acquire load above.
            let w = self.word(slot, 3 + k).load(Ordering::Relaxed);
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.truncate(start + len);
        Some(start..start + len)
    }

    /// Parent: revokes message `seq` if it has not started. True when revoked (now or before).
    pub(crate) fn revoke(&self, slot: usize, seq: u64) -> bool {
        let w = self.word(slot, 0);
        // ORDERING: AcqRel CAS: exactly one of this and the worker's `start` succeeds.
        match w.compare_exchange(
            seq << 3 | PENDING,
            seq << 3 | REVOKED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(cur) => cur == seq << 3 | REVOKED,
        }
    }

    /// Parent: marks a STARTED message `seq` for killing. True if it is running and now
    /// marked (the caller must kill the worker); false if it is not running (any more).
    pub(crate) fn mark_kill(&self, slot: usize, seq: u64) -> bool {
        let w = self.word(slot, 0);
        // ORDERING: AcqRel CAS against the worker's `finish` swap: if the function already
        // returned, this fails and nobody kills a worker that moved on.
        w.compare_exchange(
            seq << 3 | STARTED,
            seq << 3 | STARTED | KILL,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    }
}

/// The answer word of message `seq` without its length: `seq + 1` above the low byte, so a
/// zeroed slot (a new ring) matches no message, and an older message's answer in the same
/// slot (`seq` less a multiple of the ring size) does not match either.
fn answer_tag(seq: u64) -> u64 {
    seq.wrapping_add(1) << 8
}

#[cfg(all(test, not(chi_loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_answer_round_trips_through_its_slot_for_its_message_only() {
        let ring = Ring::create(4).unwrap();
        let mut out = Vec::new();
        // A new ring answers nothing, not even message 0.
        assert_eq!(ring.take_answer(0, 0, &mut out), None);
        let body: Vec<u8> = (0..ANSWER_BYTES as u8).collect();
        for len in [0, 1, 7, 8, 9, ANSWER_BYTES] {
            assert!(ring.put_answer(1, 5, &body[..len]));
            out.clear();
            let r = ring.take_answer(1, 5, &mut out).expect("the answer");
            assert_eq!(&out[r], &body[..len]);
        }
        // Another message of the same slot (the ring size later), or another slot: nothing.
        assert_eq!(ring.take_answer(1, 9, &mut out), None);
        assert_eq!(ring.take_answer(2, 5, &mut out), None);
        // Too big, or a slot out of range: the socket's.
        assert!(!ring.put_answer(1, 6, &[0; ANSWER_BYTES + 1]));
        assert!(!ring.put_answer(4, 6, &[1]));
        assert_eq!(ring.take_answer(1, 6, &mut out), None);
    }

    #[test]
    fn a_scribbled_length_is_cut_to_the_slot() {
        let ring = Ring::create(1).unwrap();
        assert!(ring.put_answer(0, 3, &[9; 4]));
        // A task overwrote the length byte with 255.
        ring.word(0, 2).fetch_or(0xff, Ordering::SeqCst);
        let mut out = Vec::new();
        let r = ring.take_answer(0, 3, &mut out).unwrap();
        assert_eq!(r.len(), ANSWER_BYTES);
    }
}
