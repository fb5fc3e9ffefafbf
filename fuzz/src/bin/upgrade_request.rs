//! Fuzz target: the server's WebSocket upgrade checks on a request built field by
//! field, including what an HTTP parser would never pass on.
//!
//! Input: text lines, the first the method, each other a `name:value` header
//! (`heartwire_fuzz::upgrade::request_from_lines`).

#![no_main]

use heartwire_fuzz::upgrade;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let request = upgrade::request_from_lines(input);
    upgrade::check(&upgrade::exchange(request));
});
