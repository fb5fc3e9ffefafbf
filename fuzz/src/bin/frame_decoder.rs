//! Fuzz target: the server's decoder of client frames.
//!
//! Input: one byte that picks the message size limit, one byte that seeds the cuts
//! between reads, then the bytes a client sends after the handshake. See
//! `heartwire_fuzz::frames::check` for what must hold.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let [limit, seed, stream @ ..] = input {
        heartwire_fuzz::frames::check(*limit, u64::from(*seed), stream);
    }
});
