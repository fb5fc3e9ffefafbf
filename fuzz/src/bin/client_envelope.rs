//! Fuzz target: the JSON envelopes a client sends on `/ws` (`ClientFrame::parse`).
//!
//! Input: the text of a frame. See `heartwire_fuzz::envelope::check_client`.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        heartwire_fuzz::envelope::check_client(text);
    }
});
