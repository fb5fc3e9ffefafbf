//! Round trips of the JSON envelopes: whatever parses must encode to text that parses
//! back to the same value, and encode the same way again.

use heartwire_core::protocol::{self, ClientFrame, ServerFrame};
use heartwire_core::report::SessionReport;
use heartwire_core::{Error, ErrorCode};
use serde_json::value::RawValue;

/// The longest refusal reason for a frame of `len` bytes: the sentence, and at most
/// the offending field quoted back with escapes (`\u{1}` is six bytes for one).
fn max_reason_len(len: usize) -> usize {
    256 + 6 * len
}

/// Checks a text frame a client sent to the server.
pub fn check_client(text: &str) {
    match ClientFrame::parse(text) {
        Ok(frame) => {
            let encoded = frame.encode();
            let again = ClientFrame::parse(&encoded)
                .unwrap_or_else(|err| panic!("{encoded} from {frame:?} does not parse: {err}"));
            assert_eq!(again, frame, "{encoded} parses to another frame");
            assert_eq!(again.encode(), encoded, "encoding is not stable");
            if let ClientFrame::Subscribe { channel, .. }
            | ClientFrame::Unsubscribe { channel }
            | ClientFrame::Publish { channel, .. }
            | ClientFrame::Presence { channel } = &frame
            {
                assert!(protocol::validate_channel(channel).is_ok());
            }
            if let ClientFrame::Report { fields } = &frame {
                // Any report is read or refused with a rule, never a panic; one read
                // goes out again as the same report.
                if let Ok(report) = SessionReport::from_fields(fields) {
                    let ClientFrame::Report { fields } = report.to_frame() else {
                        unreachable!("to_frame makes a report")
                    };
                    assert_eq!(SessionReport::from_fields(&fields), Ok(report));
                }
            }
            check_replies(frame);
        }
        Err(Error::Request { code, reason }) => {
            assert!(
                matches!(
                    code,
                    ErrorCode::BadJson
                        | ErrorCode::BadRequest
                        | ErrorCode::UnknownOp
                        | ErrorCode::InvalidChannel
                ),
                "{code:?} is not a parse error"
            );
            assert!(!reason.is_empty());
            assert!(reason.len() <= max_reason_len(text.len()));
        }
    }
}

/// What the server makes of a client's frame reaches other clients unchanged: a
/// publish's data in the `message` every subscriber gets (the server's path: the
/// parsed value, encoded once, copied through), a ping's fields in the `pong`.
fn check_replies(frame: ClientFrame) {
    let (sent, expected) = match frame {
        ClientFrame::Publish { channel, data, .. } => {
            let raw = serde_json::value::to_raw_value(&data).expect("a parsed value encodes");
            let sent = protocol::encode_delivery(&channel, 1, &raw);
            (
                sent,
                ServerFrame::Message {
                    channel,
                    seq: 1,
                    data,
                },
            )
        }
        ClientFrame::Ping { echo } => {
            let pong = ServerFrame::Pong { echo };
            (pong.encode(), pong)
        }
        _ => return,
    };
    let received = ServerFrame::parse(&sent)
        .unwrap_or_else(|err| panic!("the server sends {sent}, which does not parse: {err}"));
    assert_eq!(received, expected, "the server sends {sent}");
}

/// Checks a text frame a client received from the server.
pub fn check_server(text: &str) {
    let Ok(frame) = ServerFrame::parse(text) else {
        return;
    };
    let encoded = frame.encode();
    let again = ServerFrame::parse(&encoded)
        .unwrap_or_else(|err| panic!("{encoded} from {frame:?} does not parse: {err}"));
    assert_eq!(again, frame, "{encoded} parses to another frame");
    assert_eq!(again.encode(), encoded, "encoding is not stable");
    if let ServerFrame::Message { channel, seq, data } = &frame {
        // The server's fast path copies the published JSON through as written.
        let raw = RawValue::from_string(data.to_string()).expect("a value is valid JSON");
        let fast = protocol::encode_delivery(channel, *seq, &raw);
        assert_eq!(
            ServerFrame::parse(&fast).ok().as_ref(),
            Some(&frame),
            "{fast}"
        );
    }
}
