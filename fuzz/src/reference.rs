//! A reference decoder of what a client sends (RFC 6455 §5), written to be obviously
//! right rather than fast: it takes the whole stream at once, keeps every byte, and
//! validates a text message from its start each time a fragment arrives.
//!
//! It checks a frame in the same order as the server's decoder, so both name the same
//! close code for a stream that breaks several rules at once: a reserved opcode first,
//! then the header (reserved bits, mask, a fragmented or long control frame), then the
//! size of a data frame (counting the message it would continue), then the payload.
//! Close codes allowed on the wire are those RFC 6455 §7.4 and the IANA registry
//! define for endpoints (1000–1003, 1007–1013) and 3000–4999.

/// One message, in a form both decoders can be compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text message.
    Text(String),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A Ping and its payload.
    Ping(Vec<u8>),
    /// A Pong and its payload.
    Pong(Vec<u8>),
    /// A close frame: its status code and reason, if it had a payload.
    Close(Option<(u16, String)>),
}

/// Everything a stream decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The messages, in order.
    pub events: Vec<Event>,
    /// The close code of the violation that ended decoding, if one did.
    pub failure: Option<u16>,
}

/// Where each complete frame of a stream ends, and how many bytes of a fragmented
/// message are assembled at that point: what any decoder must keep after reading a
/// prefix of the stream follows from it.
#[derive(Debug, Clone, Default)]
pub struct FrameEnds {
    /// (offset just past the frame, bytes of the unfinished message), in order.
    ends: Vec<(usize, usize)>,
}

impl FrameEnds {
    /// The bytes a decoder needs to keep after reading the first `read` bytes of the
    /// stream: those of the frame not complete yet, and the message being assembled.
    pub fn kept_after(&self, read: usize) -> usize {
        let done = self.ends.partition_point(|&(end, _)| end <= read);
        let (end, assembling) = done.checked_sub(1).map_or((0, 0), |last| self.ends[last]);
        read - end + assembling
    }
}

/// The close codes of the violations.
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const MESSAGE_TOO_BIG: u16 = 1009;

/// Whether a peer may send `code` in a close frame.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// Decodes `stream`, a client's bytes after the handshake, with messages limited to
/// `max_message_size` bytes. A frame that has not fully arrived ends the outcome
/// without a failure, unless its header alone breaks a rule.
pub fn decode(stream: &[u8], max_message_size: usize) -> Outcome {
    decode_with_frame_ends(stream, max_message_size).0
}

/// [`decode`], and where its frames end.
pub fn decode_with_frame_ends(stream: &[u8], max_message_size: usize) -> (Outcome, FrameEnds) {
    let mut events = Vec::new();
    let mut ends = FrameEnds::default();
    let failure = decode_into(stream, max_message_size, &mut events, &mut ends).err();
    (Outcome { events, failure }, ends)
}

fn decode_into(
    stream: &[u8],
    max: usize,
    events: &mut Vec<Event>,
    ends: &mut FrameEnds,
) -> Result<(), u16> {
    // The message being assembled from fragments: whether it is text, and its bytes.
    let mut fragmented: Option<(bool, Vec<u8>)> = None;
    let mut rest = stream;
    loop {
        let Some(header) = Header::read(rest) else {
            return Ok(());
        };
        if matches!(header.opcode, 0x3..=0x7 | 0xb..=0xf) {
            return Err(PROTOCOL_ERROR);
        }
        let control = header.opcode >= 0x8;
        if header.reserved_bits != 0 || header.mask.is_none() {
            return Err(PROTOCOL_ERROR);
        }
        // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
        if header.length > i64::MAX as u64 {
            return Err(PROTOCOL_ERROR);
        }
        if control && (!header.fin || header.length > 125) {
            return Err(PROTOCOL_ERROR);
        }
        if !control {
            let so_far = fragmented.as_ref().map_or(0, |(_, data)| data.len());
            if so_far as u128 + u128::from(header.length) > max as u128 {
                return Err(MESSAGE_TOO_BIG);
            }
        }
        let body = &rest[header.size..];
        if (body.len() as u64) < header.length {
            return Ok(());
        }
        let length = header.length as usize;
        let mask = header.mask.expect("checked above");
        let payload: Vec<u8> = body[..length]
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4])
            .collect();
        rest = &body[length..];
        let end = stream.len() - rest.len();
        match header.opcode {
            0x8 => {
                events.push(Event::Close(close_payload(&payload)?));
                return Ok(());
            }
            0x9 => events.push(Event::Ping(payload)),
            0xa => events.push(Event::Pong(payload)),
            0x0 => {
                let Some((text, data)) = fragmented.as_mut() else {
                    return Err(PROTOCOL_ERROR);
                };
                data.extend_from_slice(&payload);
                if *text {
                    check_text(data, header.fin)?;
                }
                if header.fin {
                    let (text, data) = fragmented.take().expect("checked above");
                    events.push(message(text, data));
                }
            }
            opcode => {
                if fragmented.is_some() {
                    return Err(PROTOCOL_ERROR);
                }
                let text = opcode == 0x1;
                if text {
                    check_text(&payload, header.fin)?;
                }
                if header.fin {
                    events.push(message(text, payload));
                } else {
                    fragmented = Some((text, payload));
                }
            }
        }
        let assembling = fragmented.as_ref().map_or(0, |(_, data)| data.len());
        ends.ends.push((end, assembling));
    }
}

/// A frame header, read only when every byte of it is there.
struct Header {
    fin: bool,
    reserved_bits: u8,
    opcode: u8,
    length: u64,
    mask: Option<[u8; 4]>,
    /// The header's own length in bytes.
    size: usize,
}

impl Header {
    fn read(bytes: &[u8]) -> Option<Self> {
        let [first, second, ..] = *bytes else {
            return None;
        };
        let (length, mut size) = match second & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
                4,
            ),
            127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?), 10),
            short => (u64::from(short), 2),
        };
        let mask = if second & 0x80 != 0 {
            let key = bytes.get(size..size + 4)?.try_into().ok()?;
            size += 4;
            Some(key)
        } else {
            None
        };
        Some(Self {
            fin: first & 0x80 != 0,
            reserved_bits: first & 0x70,
            opcode: first & 0x0f,
            length,
            mask,
            size,
        })
    }
}

/// Text so far must be valid UTF-8, except for a character cut at its end when more
/// fragments follow.
fn check_text(data: &[u8], fin: bool) -> Result<(), u16> {
    match std::str::from_utf8(data) {
        Ok(_) => Ok(()),
        Err(err) if err.error_len().is_none() && !fin => Ok(()),
        Err(_) => Err(INVALID_PAYLOAD),
    }
}

fn message(text: bool, data: Vec<u8>) -> Event {
    if text {
        Event::Text(String::from_utf8(data).expect("checked fragment by fragment"))
    } else {
        Event::Binary(data)
    }
}

fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, u16> {
    if payload.is_empty() {
        return Ok(None);
    }
    if payload.len() == 1 {
        return Err(PROTOCOL_ERROR);
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    if !close_code_allowed(code) {
        return Err(PROTOCOL_ERROR);
    }
    let reason = std::str::from_utf8(&payload[2..]).map_err(|_| INVALID_PAYLOAD)?;
    Ok(Some((code, reason.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut bytes = vec![first, 0x80 | payload.len() as u8];
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
        bytes
    }

    #[test]
    fn decodes_fragments_control_frames_and_close() {
        let mut stream = frame(0x01, "caf".as_bytes());
        stream.extend(frame(0x89, b"p"));
        stream.extend(frame(0x80, &[0xc3, 0xa9]));
        stream.extend(frame(0x88, &[0x03, 0xe8, b'o', b'k']));
        stream.extend(frame(0x81, b"ignored after the close"));
        let outcome = decode(&stream, 100);
        assert_eq!(
            outcome.events,
            [
                Event::Ping(b"p".to_vec()),
                Event::Text("café".into()),
                Event::Close(Some((1000, "ok".into()))),
            ]
        );
        assert_eq!(outcome.failure, None);
    }

    #[test]
    fn names_each_violation() {
        let too_big = decode(&frame(0x82, &[0; 11]), 10);
        assert_eq!(too_big.failure, Some(MESSAGE_TOO_BIG));
        let unmasked = decode(&[0x81, 0x00], 10);
        assert_eq!(unmasked.failure, Some(PROTOCOL_ERROR));
        let bad_text = decode(&frame(0x81, &[0xff]), 10);
        assert_eq!(bad_text.failure, Some(INVALID_PAYLOAD));
        let bad_code = decode(&frame(0x88, &[0x03, 0xec]), 10);
        assert_eq!(bad_code.failure, Some(PROTOCOL_ERROR));
        let incomplete = decode(&frame(0x82, &[0; 5])[..8], 10);
        assert_eq!(
            incomplete,
            Outcome {
                events: vec![],
                failure: None
            }
        );
    }
}
