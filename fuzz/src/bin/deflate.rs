//! Fuzz target: permessage-deflate's offer parser and bounded inflater.
//!
//! Input: one byte that picks the inflater's limit and a window size, then bytes
//! read both as `Sec-WebSocket-Extensions` values (one per line) and as a compressed
//! message. See `heartwire_fuzz::deflate::check` for what must hold.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let [selector, rest @ ..] = input {
        heartwire_fuzz::deflate::check(*selector, rest);
    }
});
