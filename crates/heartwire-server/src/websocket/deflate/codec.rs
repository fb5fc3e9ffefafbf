//! Compressing and inflating one message (RFC 7692 §7.2), with one compressor per
//! window size and one inflater per worker thread, reset after each message.
//!
//! Since every connection agrees to no context takeover (see `offer`), no message
//! depends on another: the state of a compressor or an inflater is needed only while
//! one message passes through it, so the threads share them rather than each
//! connection keeping its own.
//!
//! Inflation is bounded: it stops as soon as the output passes the limit, and the
//! output buffer grows only as output comes, so a small message that would inflate
//! to gigabytes costs no more memory than the limit.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use heartwire_core::DisconnectReason;

/// What a sync flush ends with, which the sender removes and the receiver puts back
/// (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A fast level: chat-sized messages compress about as well as at higher levels, and
/// large ones several times faster. (Level 1 of zlib-rs always uses fixed Huffman
/// codes, which makes data that does not compress 5 % larger.)
const LEVEL: u32 = 2;

/// The window sizes a compressor may be made for: 9 to 15 bits.
const WINDOWS: usize = 7;

thread_local! {
    static COMPRESSORS: RefCell<[Option<Box<Compress>>; WINDOWS]> = RefCell::default();
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// `data` compressed as one message with a window of `window_bits` (9 to 15), without
/// the sync flush's tail.
///
/// What does not shrink is sent compressed all the same (a few bytes longer): some
/// clients mishandle an uncompressed message on a connection that agreed to
/// compression, and `--compression-min-size` already keeps the small ones out.
pub(crate) fn deflate(data: &[u8], window_bits: u8) -> Vec<u8> {
    let slot = usize::from(window_bits.clamp(9, 15) - 9);
    COMPRESSORS.with_borrow_mut(|compressors| {
        let compressor = compressors[slot].get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(LEVEL),
                false,
                window_bits,
            ))
        });
        let deflated = deflate_with(compressor, data);
        compressor.reset();
        deflated
    })
}

fn deflate_with(compressor: &mut Compress, data: &[u8]) -> Vec<u8> {
    // Room for what does not compress: stored blocks add 5 bytes per 64 KiB.
    let mut out = Vec::with_capacity(data.len() + data.len() / 8192 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let consumed = compressor.total_in() as usize;
        compressor
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .expect("a fresh compressor takes any input");
        // The flush is complete once it leaves room in the output.
        if compressor.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    debug_assert!(out.ends_with(&TAIL), "a sync flush ends with its tail");
    out.truncate(out.len().saturating_sub(TAIL.len()));
    out
}

/// Inflates one message (`compressed`, without its tail), failing with
/// [`DisconnectReason::MessageTooBig`] as soon as the output passes `limit` bytes.
pub(crate) fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, DisconnectReason> {
    INFLATER.with_borrow_mut(|inflater| {
        let inflated = inflate_with(inflater, compressed, limit);
        inflater.reset(false);
        inflated
    })
}

fn inflate_with(
    inflater: &mut Decompress,
    compressed: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DisconnectReason> {
    let corrupt = || DisconnectReason::ProtocolError("invalid permessage-deflate data".into());
    // A first guess at the ratio; the buffer doubles as output comes, up to the limit
    // and one byte more, which is how passing the limit is seen.
    let ceiling = limit.saturating_add(1);
    let guess = compressed.len().saturating_mul(4).max(64);
    let mut out = Vec::with_capacity(guess.min(ceiling));
    for input in [compressed, &TAIL] {
        let start = inflater.total_in();
        loop {
            let consumed = (inflater.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() >= ceiling {
                    return Err(DisconnectReason::MessageTooBig);
                }
                out.reserve_exact(out.len().max(64).min(ceiling - out.len()));
            }
            let produced = out.len();
            let status = inflater
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .map_err(|_| corrupt())?;
            if out.len() > limit {
                return Err(DisconnectReason::MessageTooBig);
            }
            if status == Status::StreamEnd {
                // A final block: whatever follows it is not part of the message.
                return Ok(out);
            }
            let read = (inflater.total_in() - start) as usize;
            let all_read = read == input.len();
            let progressed = out.len() > produced || read > consumed;
            if all_read && (out.len() < out.capacity() || !progressed) {
                break;
            }
            if !progressed {
                // Input left and room for output, yet nothing moved: every turn of
                // this loop takes input or gives output, or it ends here.
                return Err(corrupt());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_message() -> Vec<u8> {
        br#"{"op":"message","channel":"room:lobby","seq":1042,"data":{"user":"ada","text":"Are we still meeting at ten? I have the notes from yesterday and the draft agenda.","sent":"2026-12-02T11:28:03Z"}}"#.to_vec()
    }

    #[test]
    fn a_message_goes_round_at_every_window_size() {
        let text = chat_message().repeat(20);
        for bits in 9..=15 {
            let deflated = deflate(&text, bits);
            assert!(
                deflated.len() < text.len() / 2,
                "{bits}: {}",
                deflated.len()
            );
            assert_eq!(inflate(&deflated, text.len()).unwrap(), text, "{bits}");
        }
        let one = chat_message();
        let deflated = deflate(&one, 15);
        assert!(deflated.len() < one.len(), "{}", deflated.len());
        assert_eq!(inflate(&deflated, one.len()).unwrap(), one);
    }

    #[test]
    fn what_does_not_shrink_goes_round_a_few_bytes_longer() {
        // RFC 7692 §7.2.3.6: an empty message compresses to one byte.
        assert_eq!(deflate(b"", 15), [0x00]);
        assert_eq!(inflate(&[0x00], 0).unwrap(), b"");
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let deflated = deflate(&noise, 15);
        assert!(
            deflated.len() <= noise.len() + noise.len() / 8192 + 64,
            "{}",
            deflated.len()
        );
        assert_eq!(inflate(&deflated, noise.len()).unwrap(), noise);
    }

    /// RFC 7692 §7.2.3.1: "Hello" compressed, as the RFC prints it.
    #[test]
    fn the_rfc_example_inflates() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&hello, 5).unwrap(), b"Hello");
        // The same with a final block and no tail (§7.2.3.3's second form).
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&final_block, 5).unwrap(), b"Hello");
    }

    #[test]
    fn inflation_stops_at_the_limit_without_allocating_the_output() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = deflate(&zeros, 15);
        assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
        assert_eq!(
            inflate(&bomb, 1 << 20),
            Err(DisconnectReason::MessageTooBig)
        );
        assert_eq!(inflate(&bomb, zeros.len()).unwrap().len(), zeros.len());
        assert_eq!(
            inflate(&bomb, zeros.len() - 1),
            Err(DisconnectReason::MessageTooBig)
        );
        // The inflater is reset after a refusal.
        let text = chat_message();
        assert_eq!(inflate(&deflate(&text, 15), 4096).unwrap(), text);
    }

    #[test]
    fn corrupt_data_is_a_protocol_error() {
        let result = inflate(&[0xff, 0xff, 0xff, 0xff], 1024);
        assert!(
            matches!(result, Err(DisconnectReason::ProtocolError(_))),
            "{result:?}"
        );
        let text = chat_message();
        assert_eq!(inflate(&deflate(&text, 15), 4096).unwrap(), text);
    }
}
