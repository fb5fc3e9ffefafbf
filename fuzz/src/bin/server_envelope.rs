//! Fuzz target: the JSON envelopes the server sends on `/ws` (`ServerFrame::parse`),
//! as a client reads them.
//!
//! Input: the text of a frame. See `heartwire_fuzz::envelope::check_server`.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        heartwire_fuzz::envelope::check_server(text);
    }
});
