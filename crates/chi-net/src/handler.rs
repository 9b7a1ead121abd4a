//! What the server does with the bytes it reads: a [`Handler`] turns each chunk into output.
//!
//! The default, [`AsciiUpper`], is the upper-casing protocol: the reply stream is the request stream
//! with the ASCII letters `a`–`z` upper-cased, byte for byte, exactly as Python's
//! `bytes.upper()`. Every other byte (digits, punctuation, control bytes, bytes ≥ 0x80, broken
//! UTF-8) passes through unchanged.

/// A byte transform the server runs on every chunk it reads from a connection.
///
/// The server calls [`handle`](Handler::handle) once per successful read, with the bytes just
/// read, and sends whatever the handler appended to `output`, in order. TCP may split or join
/// the client's writes in any way, so a handler whose answer must not depend on that split has
/// to be a *per-byte* transform (or at least satisfy
/// `handle(a ++ b) == handle(a) ++ handle(b)`). [`AsciiUpper`] is such a transform.
///
/// Handlers are shared by every connection and, in the `event` model, run inline on an event
/// loop: keep them fast and non-blocking. A closure `Fn(&[u8], &mut Vec<u8>)` is a handler.
///
/// ```
/// use chi_net::Handler;
///
/// // Reverse the case of ASCII letters.
/// let swap = |input: &[u8], output: &mut Vec<u8>| {
///     output.extend(input.iter().map(|b| if b.is_ascii_alphabetic() { b ^ 0x20 } else { *b }));
/// };
/// let mut out = Vec::new();
/// swap.handle(b"Hi!", &mut out);
/// assert_eq!(out, b"hI!");
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Appends the answer for `input` to `output` (which may already hold unsent bytes).
    fn handle(&self, input: &[u8], output: &mut Vec<u8>);
}

impl<F> Handler for F
where
    F: Fn(&[u8], &mut Vec<u8>) + Send + Sync + 'static,
{
    fn handle(&self, input: &[u8], output: &mut Vec<u8>) {
        self(input, output)
    }
}

/// The upper-casing protocol: ASCII letters upper-cased, every other byte unchanged (`bytes.upper()`).
///
/// ```
/// use chi_net::{AsciiUpper, Handler};
///
/// let mut out = Vec::new();
/// AsciiUpper.handle(b"hello world \xff\xc3\xa9", &mut out);
/// assert_eq!(out, b"HELLO WORLD \xff\xc3\xa9");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsciiUpper;

impl Handler for AsciiUpper {
    fn handle(&self, input: &[u8], output: &mut Vec<u8>) {
        let start = output.len();
        output.extend_from_slice(input);
        output[start..].make_ascii_uppercase();
    }
}

/// The answer the upper-casing protocol gives to `request`: a copy with ASCII letters upper-cased.
///
/// Clients and the load generator use it to check answers.
///
/// ```
/// assert_eq!(chi_net::ascii_upper(b"hello world"), b"HELLO WORLD");
/// ```
pub fn ascii_upper(request: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.len());
    AsciiUpper.handle(request, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Python's `bytes.upper()`, written from its definition: only `a`..=`z` change.
    #[expect(
        clippy::manual_is_ascii_check,
        reason = "the reference spells out the range instead of using the std helpers under test"
    )]
    fn python_upper(data: &[u8]) -> Vec<u8> {
        data.iter()
            .map(|&b| {
                if (b'a'..=b'z').contains(&b) {
                    b - 32
                } else {
                    b
                }
            })
            .collect()
    }

    #[test]
    fn ascii_upper_all_byte_values() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(ascii_upper(&all), python_upper(&all));
        // Bytes >= 0x80 are untouched, including Latin-1 lower-case letters such as 0xE9.
        assert_eq!(ascii_upper(b"\xe9\xb5"), b"\xe9\xb5");
    }

    #[test]
    fn ascii_upper_appends_after_existing_output() {
        let mut out = b"abc".to_vec();
        AsciiUpper.handle(b"def", &mut out);
        assert_eq!(out, b"abcDEF");
    }

    proptest! {
        #[test]
        fn ascii_upper_random_splits_equal_python_upper(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut out = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                AsciiUpper.handle(&data[start..cut], &mut out);
                start = cut;
            }
            prop_assert_eq!(out, python_upper(&data));
        }
    }
}
