//! Arbitrary bytes into the process pool's frame decoder and message decoders, as a worker or
//! a pool would receive them from its socket: they must never panic, over-read or allocate
//! past the frame limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chi::process_pool::__fuzz_decode(data);
});
