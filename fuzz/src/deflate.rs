//! permessage-deflate: the negotiation of a client's offers, and the bounded inflater.
//!
//! - Any `Sec-WebSocket-Extensions` value either is declined or gets an answer that is
//!   itself an offer the server accepts with the same window (the answer is well
//!   formed), and the window is one zlib can compress with (9 to 15 bits).
//! - Inflating any bytes gives a message of at most the limit, or an error; never a
//!   panic, and never more than the limit.
//! - What the server compresses inflates back to itself, at every window size.

use heartwire_core::DisconnectReason;
use heartwire_server::fuzzing::{deflate_message, inflate_message, negotiate_deflate};

/// Limits the inflater is run with: tiny, a frame's worth, the server's default.
const LIMITS: [usize; 4] = [0, 125, 65_536, 1 << 20];

/// Checks every invariant on `input`: `selector` picks a limit and a window size.
pub fn check(selector: u8, input: &[u8]) {
    let headers: Vec<&[u8]> = input.split(|&byte| byte == b'\n').collect();
    if let Some((answer, window_bits)) = negotiate_deflate(headers.iter().copied()) {
        assert!((9..=15).contains(&window_bits), "window {window_bits}");
        let again = negotiate_deflate([answer.as_bytes()]);
        assert_eq!(
            again.map(|(_, bits)| bits),
            Some(window_bits),
            "the answer {answer:?} is not an offer the server accepts"
        );
    }

    let limit = LIMITS[usize::from(selector) % LIMITS.len()];
    match inflate_message(input, limit) {
        Ok(message) => assert!(message.len() <= limit, "{} > {limit}", message.len()),
        Err(DisconnectReason::MessageTooBig | DisconnectReason::ProtocolError(_)) => {}
        Err(other) => panic!("inflating failed with {other:?}"),
    }

    let window_bits = 9 + selector % 7;
    let compressed = deflate_message(input, window_bits);
    let inflated = inflate_message(&compressed, input.len()).expect("our own output inflates");
    assert_eq!(inflated, input, "window {window_bits}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_and_streams_of_any_bytes_hold_the_invariants() {
        let inputs: [&[u8]; 6] = [
            b"permessage-deflate; client_max_window_bits",
            b"permessage-deflate; server_max_window_bits=9\npermessage-deflate; x",
            b"permessage-deflate; server_max_window_bits=\"12\"",
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &[0xff; 64],
            b"",
        ];
        for input in inputs {
            for selector in 0..8 {
                check(selector, input);
            }
        }
    }
}
