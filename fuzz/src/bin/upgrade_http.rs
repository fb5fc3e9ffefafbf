//! Fuzz target: raw bytes of an HTTP/1.1 connection, through hyper (configured as
//! the server's listener configures it) to the server's upgrade extractor.
//!
//! Input: what a client sends on the connection. Every request that reaches the
//! extractor must get the answer RFC 6455 asks for (`heartwire_fuzz::upgrade::check`),
//! and nothing is served after a 101.

#![no_main]

use axum::http::StatusCode;
use heartwire_fuzz::upgrade;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let exchanges = upgrade::serve_raw(input);
    for (index, exchange) in exchanges.iter().enumerate() {
        upgrade::check(exchange);
        if exchange.status == StatusCode::SWITCHING_PROTOCOLS {
            assert_eq!(index, exchanges.len() - 1, "a request served after a 101");
        }
    }
});
