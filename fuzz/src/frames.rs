//! The server's frame decoder, run on one byte stream in several ways that must all
//! agree with each other and with the [`reference`](crate::reference) decoder.

use std::ops::ControlFlow;

use heartwire_core::DisconnectReason;
use heartwire_server::fuzzing::{FrameDecoder, Message};

use crate::reference::{self, Event};
use crate::split::Cuts;

/// What a run of the server's decoder gave: the messages, then how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The messages, in order.
    pub messages: Vec<Message>,
    /// The violation that ended decoding, if one did.
    pub result: Result<(), DisconnectReason>,
}

/// Message sizes the target picks from with one byte: the edges of the length
/// encodings and of control frames, and the server's default (1 MiB).
const LIMITS: [usize; 8] = [1, 2, 125, 126, 127, 65_535, 65_536, 1 << 20];

/// The longest stream also fed one byte per read.
const BYTE_BY_BYTE_MAX: usize = 1024;

/// The smallest allocation of a growing `Vec<u8>`.
const MIN_ALLOCATION: usize = 8;

/// Checks every invariant of the decoder on `stream`. `limit_byte` picks the message
/// size limit and `seed` the cuts.
pub fn check(limit_byte: u8, seed: u64, stream: &[u8]) {
    let limit = LIMITS[usize::from(limit_byte) % LIMITS.len()];

    let (expected, ends) = reference::decode_with_frame_ends(stream, limit);
    let whole = run_in_chunks(limit, &[stream], &ends);
    check_messages(limit, &whole);
    assert_eq!(
        outcome(&whole),
        expected,
        "the decoder and the reference disagree"
    );

    // Byte by byte costs a read per byte: longer streams are cut at random only.
    if stream.len() <= BYTE_BY_BYTE_MAX {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run_in_chunks(limit, &bytes, &ends), whole, "byte by byte");
    }
    let mut cuts = Cuts::new(seed);
    let chunks = cuts.chunks(stream);
    assert_eq!(
        run_in_chunks(limit, &chunks, &ends),
        whole,
        "in chunks {chunks:?}"
    );
    assert_eq!(
        run_stopping_after_each_message(limit, &chunks),
        whole,
        "stopped after every message, in chunks {chunks:?}"
    );
    let early = cuts.chunk_len(stream.len().max(1)).min(stream.len());
    assert_eq!(
        run_with_handshake_bytes(limit, &stream[..early], &stream[early..]),
        whole,
        "with {early} bytes arriving with the handshake"
    );
}

/// Feeds `chunks` one read at a time, taking every message, and checks the memory the
/// decoder holds after each read against what it needs to keep (an incomplete frame,
/// a message being assembled), with at most a growing vector's slack: twice the
/// length, or its smallest allocation. Never the room of a past read; nothing after
/// a close.
pub fn run_in_chunks(limit: usize, chunks: &[&[u8]], ends: &reference::FrameEnds) -> Run {
    let mut decoder = FrameDecoder::new(limit);
    let mut messages = Vec::new();
    let mut read = 0;
    for chunk in chunks {
        read += chunk.len();
        let result = decoder.feed(&mut chunk.to_vec(), &mut |message| {
            messages.push(message);
            ControlFlow::Continue(())
        });
        if result.is_err() {
            return Run { messages, result };
        }
        assert!(!decoder.has_undecoded(), "nothing was stopped");
        let held = decoder.held_bytes();
        let kept = ends.kept_after(read);
        let closed = matches!(messages.last(), Some(Message::Close(_)));
        let bound = if closed {
            0
        } else {
            2 * kept + 2 * MIN_ALLOCATION
        };
        assert!(
            held <= bound,
            "holds {held} bytes to keep {kept} after reading {read}, in reads of {:?}",
            chunks.iter().map(|chunk| chunk.len()).collect::<Vec<_>>()
        );
    }
    Run {
        messages,
        result: Ok(()),
    }
}

/// Feeds `chunks` but stops decoding after every message, then resumes from the kept
/// bytes (as a connection does when replies pile up), before the next read.
fn run_stopping_after_each_message(limit: usize, chunks: &[&[u8]]) -> Run {
    let mut decoder = FrameDecoder::new(limit);
    let mut messages = Vec::new();
    let mut take_one = |message| {
        messages.push(message);
        ControlFlow::Break(())
    };
    for chunk in chunks {
        let mut result = decoder.feed(&mut chunk.to_vec(), &mut take_one);
        while result.is_ok() && decoder.has_undecoded() {
            result = decoder.feed(&mut [], &mut take_one);
        }
        if result.is_err() {
            return Run { messages, result };
        }
    }
    Run {
        messages,
        result: Ok(()),
    }
}

/// Starts from `early`, bytes that came in the same read as the upgrade request, then
/// feeds the rest in one read.
fn run_with_handshake_bytes(limit: usize, early: &[u8], rest: &[u8]) -> Run {
    let mut decoder = FrameDecoder::with_input(limit, early);
    assert_eq!(decoder.has_undecoded(), !early.is_empty());
    let mut messages = Vec::new();
    let mut result = Ok(());
    for input in [&[][..], rest] {
        result = decoder.feed(&mut input.to_vec(), &mut |message| {
            messages.push(message);
            ControlFlow::Continue(())
        });
        if result.is_err() {
            break;
        }
    }
    Run { messages, result }
}

/// What every message must be, whatever the input.
fn check_messages(limit: usize, run: &Run) {
    for (index, message) in run.messages.iter().enumerate() {
        match message {
            Message::Text(text) => {
                assert!(std::str::from_utf8(text.as_bytes()).is_ok());
                assert!(text.len() <= limit, "text of {} > {limit}", text.len());
            }
            Message::Binary(data) => {
                assert!(data.len() <= limit, "binary of {} > {limit}", data.len());
            }
            Message::Ping(data) | Message::Pong(data) => assert!(data.len() <= 125),
            Message::Close(frame) => {
                assert_eq!(index, run.messages.len() - 1, "a message after a close");
                if let Some(frame) = frame {
                    let code = u16::from(frame.code);
                    assert!(reference::close_code_allowed(code), "close code {code}");
                    assert!(frame.reason.len() <= 123);
                }
            }
            Message::Frame(_) => panic!("the decoder yields messages, not raw frames"),
        }
    }
}

/// A run in the reference decoder's terms.
fn outcome(run: &Run) -> reference::Outcome {
    let events = run
        .messages
        .iter()
        .map(|message| match message {
            Message::Text(text) => Event::Text(text.as_str().to_owned()),
            Message::Binary(data) => Event::Binary(data.to_vec()),
            Message::Ping(data) => Event::Ping(data.to_vec()),
            Message::Pong(data) => Event::Pong(data.to_vec()),
            Message::Close(frame) => Event::Close(
                frame
                    .as_ref()
                    .map(|frame| (u16::from(frame.code), frame.reason.as_str().to_owned())),
            ),
            Message::Frame(_) => panic!("the decoder yields messages, not raw frames"),
        })
        .collect();
    let failure = run
        .result
        .as_ref()
        .err()
        .map(|reason| reason.close_code().expect("a violation has a close code"));
    reference::Outcome { events, failure }
}
