//! What each request holds and what its answer must be.
//!
//! A request of S bytes is a *header* of `min(S, HEADER_MAX)` lower-case letters that encode
//! (connection, message number), followed by the shared *body*: bytes `HEADER_MAX..S` of one
//! pattern that mixes lower-case letters with every other byte value (digits, punctuation,
//! control bytes, bytes ≥ 0x80). The header makes every request of a run different, so a
//! server that answers with a stale or another connection's message is caught; the body makes
//! sure the server leaves non-letters alone. The expected answer is the request with `a`–`z`
//! upper-cased ([`crate::ascii_upper`]).
//!
//! The body and its upper-case copy are built once per run and shared by every connection, so
//! a connection costs its header, not S bytes: 10 connections of 1 MiB messages hold 2 MiB.

use std::io::IoSlice;
use std::sync::Arc;

/// Longest header: 12 letters, 26^12 (about 10^17) different headers.
pub(crate) const HEADER_MAX: usize = 12;

/// The request body and its expected answer, shared by every connection of a run.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    /// The whole request pattern; bytes `..header_len` are replaced by each message's header.
    body: Arc<[u8]>,
    /// `body` upper-cased: the expected answer bytes past the header.
    upper: Arc<[u8]>,
}

impl Payload {
    /// The shared pattern for messages of `size` bytes.
    pub(crate) fn new(size: usize) -> Payload {
        let body: Vec<u8> = (0..size)
            .map(|i| {
                if i % 3 == 0 {
                    // The byte values 0..=255 in a scrambled order (7 is coprime with 256).
                    (i.wrapping_mul(7) % 256) as u8
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        let upper = crate::ascii_upper(&body);
        Payload {
            body: body.into(),
            upper: upper.into(),
        }
    }

    /// Bytes per message.
    pub(crate) fn size(&self) -> usize {
        self.body.len()
    }

    /// Length of each message's header.
    pub(crate) fn header_len(&self) -> usize {
        self.size().min(HEADER_MAX)
    }

    /// Writes the header of message `seq` of connection `conn` into `out`.
    pub(crate) fn header(&self, conn: u64, seq: u64, out: &mut [u8; HEADER_MAX]) {
        let mut x = mix(conn.rotate_left(40) ^ seq);
        for byte in out.iter_mut().take(self.header_len()) {
            *byte = b'a' + (x % 26) as u8;
            x /= 26;
        }
    }

    /// The unsent part of a request, from byte `from` on, as at most two slices for `writev`.
    pub(crate) fn slices<'a>(
        &'a self,
        header: &'a [u8; HEADER_MAX],
        from: usize,
    ) -> [IoSlice<'a>; 2] {
        let h = self.header_len();
        let head = &header[from.min(h)..h];
        let tail = &self.body[from.max(h)..];
        [IoSlice::new(head), IoSlice::new(tail)]
    }

    /// True when `got` equals the expected answer bytes starting at offset `at`.
    pub(crate) fn answer_matches(&self, header: &[u8; HEADER_MAX], at: usize, got: &[u8]) -> bool {
        let h = self.header_len();
        let end = at + got.len();
        debug_assert!(end <= self.size());
        let split = h.clamp(at, end) - at;
        let (in_header, in_body) = got.split_at(split);
        in_header
            .iter()
            .zip(&header[at.min(h)..])
            .all(|(g, want)| *g == want.to_ascii_uppercase())
            && in_body == &self.upper[at + split..end]
    }
}

/// SplitMix64's finaliser: spreads (connection, message) over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(p: &Payload, conn: u64, seq: u64) -> Vec<u8> {
        let mut header = [0; HEADER_MAX];
        p.header(conn, seq, &mut header);
        p.slices(&header, 0)
            .iter()
            .flat_map(|s| s.to_vec())
            .collect()
    }

    #[test]
    fn payload_request_has_size_and_varies() {
        for size in [1, 5, 11, 12, 13, 64, 4096] {
            let p = Payload::new(size);
            let a = request(&p, 0, 0);
            assert_eq!(a.len(), size);
            assert_ne!(a, request(&p, 0, 1), "size {size}");
            assert_ne!(a, request(&p, 1, 0), "size {size}");
        }
    }

    #[test]
    fn payload_body_mixes_letters_and_other_bytes() {
        let p = Payload::new(1024);
        let req = request(&p, 3, 4);
        assert!(req.iter().any(u8::is_ascii_lowercase));
        assert!(req.iter().any(|b| *b >= 0x80));
        assert!(req.iter().any(u8::is_ascii_digit));
    }

    #[test]
    fn payload_answer_matches_upper_case_in_any_split() {
        for size in [1, 7, 12, 13, 100] {
            let p = Payload::new(size);
            let mut header = [0; HEADER_MAX];
            p.header(9, 77, &mut header);
            let req = request(&p, 9, 77);
            let answer = crate::ascii_upper(&req);
            for cut in 0..=size {
                assert!(p.answer_matches(&header, 0, &answer[..cut]));
                assert!(p.answer_matches(&header, cut, &answer[cut..]));
            }
            // The request itself (not upper-cased) is a wrong answer: it has a lower-case letter.
            assert!(!p.answer_matches(&header, 0, &req), "size {size}");
            // So is the answer to another message.
            let other = crate::ascii_upper(&request(&p, 9, 78));
            assert!(!p.answer_matches(&header, 0, &other), "size {size}");
        }
    }

    #[test]
    fn payload_slices_resume_mid_message() {
        let p = Payload::new(40);
        let mut header = [0; HEADER_MAX];
        p.header(1, 2, &mut header);
        let whole = request(&p, 1, 2);
        for from in 0..=40 {
            let rest: Vec<u8> = p
                .slices(&header, from)
                .iter()
                .flat_map(|s| s.to_vec())
                .collect();
            assert_eq!(rest, whole[from..]);
        }
    }
}
