//! Frames in, messages out: RFC 6455 decoding of what a client sends, without I/O.
//!
//! The [`Reader`] is fed the bytes of each socket read and decodes every complete
//! frame in them where they lie. It keeps bytes only for a frame that is not complete
//! yet and for a fragmented message being assembled, and gives that memory back as
//! soon as the frame or message is done, so an idle connection holds no buffer.
//!
//! The caller may stop decoding after any message (it stops reading while too many
//! replies wait); the rest stays kept, undecoded, for the next call.
//!
//! With permessage-deflate agreed, a message whose first frame has RSV1 set is
//! compressed: a message in one frame is inflated where it lies; the frames of a
//! fragmented one are kept as they came and inflated once it ends. Inflation stops
//! at the size limit, whatever the compressed size (see `deflate::codec`).
//!
//! Every violation is a typed [`DisconnectReason`] carrying the close code to send:
//! 1002 for a malformed frame, 1007 for invalid UTF-8, 1009 for a message over the
//! limit, inflated or not.

use std::io::Cursor;
use std::ops::ControlFlow;

use bytes::Bytes;
use heartwire_core::DisconnectReason;

use super::deflate;
use crate::handover::state::{FragmentedState, ReaderState};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// The largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Decodes a client's frames. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Reader {
    /// In 32 bits, since every connection holds one: a larger limit (4 GiB and up)
    /// is taken as 4 GiB.
    max_message_size: u32,
    /// permessage-deflate was agreed: RSV1 marks a compressed message.
    inflates: bool,
    /// The bytes of a frame that has not fully arrived; empty between frames.
    partial: Vec<u8>,
    /// A message that came in fragments and has not ended yet.
    fragmented: Option<Box<Fragmented>>,
    /// A close frame was decoded: nothing after it is read.
    closed: bool,
    /// `partial` may hold complete frames: they came with the handshake, or the
    /// caller stopped decoding before them.
    undecoded: bool,
}

#[derive(Debug)]
struct Fragmented {
    text: bool,
    /// `data` is compressed, and inflated when the message ends.
    compressed: bool,
    data: Vec<u8>,
    /// How much of `data` is known to be valid UTF-8 (text only).
    validated: usize,
}

impl Reader {
    pub(crate) fn new(max_message_size: usize, inflates: bool) -> Self {
        Self {
            max_message_size: u32::try_from(max_message_size).unwrap_or(u32::MAX),
            inflates,
            partial: Vec::new(),
            fragmented: None,
            closed: false,
            undecoded: false,
        }
    }

    /// The largest message taken, inflated.
    fn max_message_size(&self) -> usize {
        self.max_message_size as usize
    }

    /// Starts from bytes that arrived with the handshake; the next [`Reader::feed`]
    /// decodes them first.
    pub(crate) fn with_input(max_message_size: usize, inflates: bool, input: &[u8]) -> Self {
        let mut reader = Self::new(max_message_size, inflates);
        reader.partial.extend_from_slice(input);
        reader.undecoded = !input.is_empty();
        reader
    }

    /// What is kept between reads, for another process to take over; `None` once a
    /// close frame was read.
    pub(crate) fn hand_over(&self) -> Option<ReaderState> {
        if self.closed {
            return None;
        }
        Some(ReaderState {
            partial: self.partial.clone(),
            undecoded: self.undecoded,
            fragmented: self.fragmented.as_ref().map(|message| FragmentedState {
                text: message.text,
                compressed: message.compressed,
                data: message.data.clone(),
                validated: message.validated,
            }),
        })
    }

    /// A reader that goes on from what another process kept ([`Reader::hand_over`]).
    pub(crate) fn resume(max_message_size: usize, inflates: bool, state: ReaderState) -> Self {
        let mut reader = Self::new(max_message_size, inflates);
        reader.partial = state.partial;
        reader.undecoded = state.undecoded;
        reader.fragmented = state.fragmented.map(|message| {
            Box::new(Fragmented {
                text: message.text,
                compressed: message.compressed,
                data: message.data,
                validated: message.validated,
            })
        });
        reader
    }

    /// Whether kept bytes may hold complete frames, to be decoded by feeding nothing
    /// before reading more.
    pub(crate) fn has_undecoded(&self) -> bool {
        self.undecoded
    }

    /// Whether a message has begun and not ended: a frame not fully arrived, or a
    /// fragmented message without its final frame.
    pub(crate) fn holds_incomplete(&self) -> bool {
        self.fragmented.is_some() || (!self.partial.is_empty() && !self.undecoded)
    }

    /// The memory held between reads: the capacity of what is kept of an incomplete
    /// frame and of a fragmented message.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn held_bytes(&self) -> usize {
        let fragmented = self.fragmented.as_ref();
        self.partial.capacity() + fragmented.map_or(0, |message| message.data.capacity())
    }

    /// Decodes every complete frame of what was kept and of `input` (unmasking it in
    /// place), passing each message to `on_message`, and keeps the bytes of a frame
    /// that is not complete. Stops at a close frame, or when `on_message` breaks, and
    /// then keeps what follows undecoded.
    pub(crate) fn feed(
        &mut self,
        input: &mut [u8],
        on_message: &mut impl FnMut(Message) -> ControlFlow<()>,
    ) -> Result<(), DisconnectReason> {
        self.undecoded = false;
        if self.closed {
            return Ok(());
        }
        if self.partial.is_empty() {
            let used = self.decode(input, on_message)?;
            if !self.closed {
                self.partial.extend_from_slice(&input[used..]);
            }
            return Ok(());
        }
        let mut buffer = std::mem::take(&mut self.partial);
        buffer.extend_from_slice(input);
        let used = self.decode(&mut buffer, on_message)?;
        if !self.closed && used < buffer.len() {
            // Decoded frames free their room: what is left is copied out rather than
            // kept in a buffer sized for everything this read brought.
            self.partial = if used == 0 {
                buffer
            } else {
                buffer[used..].to_vec()
            };
        }
        Ok(())
    }

    /// Decodes the complete frames at the start of `buffer`; returns how many bytes
    /// they took.
    fn decode(
        &mut self,
        buffer: &mut [u8],
        on_message: &mut impl FnMut(Message) -> ControlFlow<()>,
    ) -> Result<usize, DisconnectReason> {
        let mut used = 0;
        while !self.closed {
            let mut cursor = Cursor::new(&buffer[used..]);
            let parsed = FrameHeader::parse(&mut cursor)
                .map_err(|err| DisconnectReason::ProtocolError(err.to_string()))?;
            let Some((header, length)) = parsed else {
                break;
            };
            let mask = self.check(&header, length)?;
            let start = used + cursor.position() as usize;
            let available = (buffer.len() - start) as u64;
            if available < length {
                break;
            }
            let end = start + length as usize;
            let payload = &mut buffer[start..end];
            unmask(payload, mask);
            used = end;
            if self.on_frame(header, payload, on_message)?.is_break() {
                self.undecoded = !self.closed && used < buffer.len();
                break;
            }
        }
        Ok(used)
    }

    /// Checks a frame's header before its payload is waited for; returns its mask.
    fn check(&self, header: &FrameHeader, length: u64) -> Result<[u8; 4], DisconnectReason> {
        let violation = |detail: &str| Err(DisconnectReason::ProtocolError(detail.into()));
        if header.rsv2 || header.rsv3 {
            return violation("reserved bits set without an extension");
        }
        if header.rsv1 {
            let starts_message = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
            if !self.inflates {
                return violation("reserved bits set without an extension");
            }
            if !starts_message {
                return violation("RSV1 set on a frame that does not start a data message");
            }
        }
        let Some(mask) = header.mask else {
            return violation("unmasked frame from a client");
        };
        // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
        if length > i64::MAX as u64 {
            return violation("64-bit payload length with its most significant bit set");
        }
        match header.opcode {
            OpCode::Control(_) if !header.is_final => violation("fragmented control frame"),
            OpCode::Control(_) if length > MAX_CONTROL_PAYLOAD => {
                violation("control frame payload over 125 bytes")
            }
            OpCode::Control(_) => Ok(mask),
            OpCode::Data(_) => {
                // A new message inside a fragmented one counts what that one holds too:
                // it is refused for its size before it is refused for its place.
                let so_far = self
                    .fragmented
                    .as_ref()
                    .map_or(0, |message| message.data.len());
                let compressed = match &self.fragmented {
                    Some(message) if header.opcode == OpCode::Data(Data::Continue) => {
                        message.compressed
                    }
                    _ => header.rsv1,
                };
                let limit = if compressed {
                    // What does not compress grows a little on the wire (by a few
                    // percent at most); what it inflates to is bounded by the limit.
                    let slack = self.max_message_size() / 16 + 1024;
                    self.max_message_size().saturating_add(slack)
                } else {
                    self.max_message_size()
                };
                let room = limit.saturating_sub(so_far);
                if length > room as u64 {
                    return Err(DisconnectReason::MessageTooBig);
                }
                Ok(mask)
            }
        }
    }

    /// Handles one complete frame; returns whether decoding may go on.
    fn on_frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        on_message: &mut impl FnMut(Message) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, DisconnectReason> {
        let violation = |detail: &str| Err(DisconnectReason::ProtocolError(detail.into()));
        match header.opcode {
            OpCode::Control(Control::Ping) => {
                return Ok(on_message(Message::Ping(Bytes::copy_from_slice(payload))));
            }
            OpCode::Control(Control::Pong) => {
                return Ok(on_message(Message::Pong(Bytes::copy_from_slice(payload))));
            }
            OpCode::Control(Control::Close) => {
                self.closed = true;
                self.partial = Vec::new();
                self.fragmented = None;
                return Ok(on_message(Message::Close(close_frame(payload)?)));
            }
            OpCode::Control(Control::Reserved(code)) => {
                return violation(&format!("reserved control opcode {code:#x}"));
            }
            OpCode::Data(Data::Reserved(code)) => {
                return violation(&format!("reserved data opcode {code:#x}"));
            }
            OpCode::Data(Data::Continue) => {
                let Some(message) = self.fragmented.as_mut() else {
                    return violation("continuation frame with no message to continue");
                };
                message.data.extend_from_slice(payload);
                if message.text && !message.compressed {
                    validate_utf8(message, header.is_final)?;
                }
                if header.is_final {
                    let message = self.fragmented.take().expect("checked above");
                    return Ok(on_message(assemble(*message, self.max_message_size())?));
                }
            }
            OpCode::Data(kind) => {
                if self.fragmented.is_some() {
                    return violation("a new message began before the last one ended");
                }
                let text = kind == Data::Text;
                let compressed = header.rsv1;
                if header.is_final {
                    let data = if compressed {
                        Bytes::from(deflate::inflate(payload, self.max_message_size())?)
                    } else {
                        Bytes::copy_from_slice(payload)
                    };
                    return Ok(on_message(if text {
                        Message::Text(
                            Utf8Bytes::try_from(data).map_err(|_| DisconnectReason::InvalidUtf8)?,
                        )
                    } else {
                        Message::Binary(data)
                    }));
                } else {
                    let mut message = Fragmented {
                        text,
                        compressed,
                        data: payload.to_vec(),
                        validated: 0,
                    };
                    if text && !compressed {
                        validate_utf8(&mut message, false)?;
                    }
                    self.fragmented = Some(Box::new(message));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Checks what arrived of a fragmented text message, so invalid UTF-8 fails as soon
/// as it is seen; a character cut at the end of a fragment is allowed unless the
/// message ends there.
fn validate_utf8(message: &mut Fragmented, is_final: bool) -> Result<(), DisconnectReason> {
    match std::str::from_utf8(&message.data[message.validated..]) {
        Ok(_) => message.validated = message.data.len(),
        Err(err) if err.error_len().is_none() && !is_final => {
            message.validated += err.valid_up_to();
        }
        Err(_) => return Err(DisconnectReason::InvalidUtf8),
    }
    Ok(())
}

/// The message whose fragments have all arrived, inflated to at most
/// `max_message_size` bytes if it was compressed.
fn assemble(message: Fragmented, max_message_size: usize) -> Result<Message, DisconnectReason> {
    let data = if message.compressed {
        Bytes::from(deflate::inflate(&message.data, max_message_size)?)
    } else {
        Bytes::from(message.data)
    };
    if message.text {
        // Validated fragment by fragment already, unless it was compressed.
        let text = Utf8Bytes::try_from(data).map_err(|_| DisconnectReason::InvalidUtf8)?;
        Ok(Message::Text(text))
    } else {
        Ok(Message::Binary(data))
    }
}

/// The status code and reason of a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn close_frame(payload: &[u8]) -> Result<Option<CloseFrame>, DisconnectReason> {
    let violation = |detail: &str| Err(DisconnectReason::ProtocolError(detail.into()));
    match payload {
        [] => Ok(None),
        [_] => violation("close frame with a one-byte payload"),
        [high, low, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*high, *low]));
            if !code.is_allowed() {
                return violation(&format!("close code {code} is not allowed on the wire"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| DisconnectReason::InvalidUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            }))
        }
    }
}

/// Applies a client's masking key (RFC 6455 §5.3), four bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let key = u32::from_ne_bytes(mask);
    let mut words = payload.chunks_exact_mut(4);
    for word in &mut words {
        let value = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]) ^ key;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in words.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: opcode, FIN, payload, masked.
    fn frame(opcode: u8, is_final: bool, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![opcode | if is_final { 0x80 } else { 0 }];
        match payload.len() {
            len @ 0..=125 => bytes.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&MASK);
        bytes.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, k)| b ^ k));
        bytes
    }

    #[test]
    fn a_reader_handed_over_mid_frame_and_mid_message_goes_on_in_the_other_process() {
        let mut input = frame(0x1, false, b"hello ");
        let last = frame(0x0, true, "wörld".as_bytes());
        input.extend_from_slice(&last[..4]);
        let mut reader = Reader::new(1024, false);
        assert!(read_all(&mut reader, &input).unwrap().is_empty());
        assert!(reader.holds_incomplete());
        let state = reader.hand_over().expect("not closed");
        // The state crosses as JSON, as it does between the processes.
        let text = serde_json::to_string(&state).unwrap();
        let mut resumed = Reader::resume(1024, false, serde_json::from_str(&text).unwrap());
        let messages = read_all(&mut resumed, &last[4..]).unwrap();
        assert_eq!(messages, [Message::Text("hello wörld".into())]);
        assert!(!resumed.holds_incomplete());
    }

    fn read_all(reader: &mut Reader, input: &[u8]) -> Result<Vec<Message>, DisconnectReason> {
        let mut messages = Vec::new();
        reader.feed(&mut input.to_vec(), &mut |message| {
            messages.push(message);
            ControlFlow::Continue(())
        })?;
        Ok(messages)
    }

    #[test]
    fn decodes_every_frame_of_a_read_and_holds_nothing_afterwards() {
        let mut reader = Reader::new(1024, false);
        let mut input = frame(0x1, true, b"hello");
        input.extend(frame(0x2, true, &[1, 2, 3, 4, 5, 6, 7]));
        input.extend(frame(0x9, true, b"p"));
        let messages = read_all(&mut reader, &input).unwrap();
        assert_eq!(
            messages,
            [
                Message::Text("hello".into()),
                Message::Binary(vec![1, 2, 3, 4, 5, 6, 7].into()),
                Message::Ping(Bytes::from_static(b"p")),
            ]
        );
        assert_eq!(reader.partial.capacity(), 0);
    }

    #[test]
    fn a_frame_split_across_reads_is_kept_until_complete_then_released() {
        let mut reader = Reader::new(1024, false);
        let input = frame(0x1, true, &[b'x'; 300]);
        for cut in [1, 2, 4, 10, 299] {
            assert!(read_all(&mut reader, &input[..cut]).unwrap().is_empty());
            let rest = read_all(&mut reader, &input[cut..]).unwrap();
            assert_eq!(rest, [Message::Text("x".repeat(300).into())]);
            assert_eq!(reader.partial.capacity(), 0, "cut at {cut}");
        }
    }

    /// Found by fuzzing (target `frame_decoder`): the bytes kept of an incomplete
    /// frame stayed in the room of every read since the last one began, so an idle
    /// connection could hold a whole read buffer for one byte.
    #[test]
    fn bytes_kept_between_reads_hold_no_room_of_past_reads() {
        // A Ping with 9 bytes of payload then 2 bytes of the next frame, in 5 reads.
        let stream = [
            0x89, 0x89, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x26, 0x54,
            0x11, 0x11, 0xc3,
        ];
        let mut reader = Reader::new(2, false);
        let mut rest = &stream[..];
        for len in [7, 3, 3, 1, 3] {
            let (read, tail) = rest.split_at(len);
            read_all(&mut reader, read).unwrap();
            rest = tail;
        }
        assert_eq!(reader.partial, [0x11, 0xc3]);
        assert!(
            reader.partial.capacity() <= 8,
            "{}",
            reader.partial.capacity()
        );

        // The same at the size of a real read: one byte kept, then a full read buffer
        // of whole frames that ends with one byte of the next.
        let mut reader = Reader::new(1024, false);
        let first = frame(0x2, true, b"first");
        read_all(&mut reader, &first[..1]).unwrap();
        let mut input = first[1..].to_vec();
        while input.len() < 64 * 1024 {
            input.extend(frame(0x2, true, b"x"));
        }
        input.push(0x82);
        read_all(&mut reader, &input).unwrap();
        assert_eq!(reader.partial, [0x82]);
        assert!(
            reader.partial.capacity() <= 8,
            "{}",
            reader.partial.capacity()
        );
    }

    #[test]
    fn fragments_are_assembled_with_control_frames_between_them() {
        let mut reader = Reader::new(1024, false);
        let mut input = frame(0x1, false, "caf".as_bytes());
        input.extend(frame(0x9, true, b""));
        // 'é' is cut between two fragments.
        input.extend(frame(0x0, false, &[0xc3]));
        input.extend(frame(0x0, true, &[0xa9, b'!']));
        let messages = read_all(&mut reader, &input).unwrap();
        assert_eq!(
            messages,
            [Message::Ping(Bytes::new()), Message::Text("café!".into())]
        );
        assert!(reader.fragmented.is_none());
    }

    #[test]
    fn invalid_utf8_fails_with_1007_as_soon_as_a_fragment_shows_it() {
        let mut reader = Reader::new(1024, false);
        let result = read_all(&mut reader, &frame(0x1, false, &[b'a', 0xff]));
        assert_eq!(result, Err(DisconnectReason::InvalidUtf8));
        let mut reader = Reader::new(1024, false);
        let result = read_all(&mut reader, &frame(0x1, true, &[0xc3]));
        assert_eq!(result, Err(DisconnectReason::InvalidUtf8));
        let mut reader = Reader::new(1024, false);
        let mut input = frame(0x1, false, &[0xc3]);
        input.extend(frame(0x0, true, b""));
        assert_eq!(
            read_all(&mut reader, &input),
            Err(DisconnectReason::InvalidUtf8)
        );
    }

    #[test]
    fn size_limit_is_enforced_from_the_header_and_across_fragments() {
        let mut reader = Reader::new(100, false);
        // Only the header has arrived: the frame is refused before its payload.
        let header = &frame(0x2, true, &[0; 101])[..8];
        assert_eq!(
            read_all(&mut reader, header),
            Err(DisconnectReason::MessageTooBig)
        );
        let mut reader = Reader::new(100, false);
        let mut input = frame(0x2, false, &[0; 60]);
        input.extend(frame(0x0, true, &[0; 41]));
        assert_eq!(
            read_all(&mut reader, &input),
            Err(DisconnectReason::MessageTooBig)
        );
        let mut reader = Reader::new(100, false);
        assert!(read_all(&mut reader, &frame(0x2, true, &[0; 100])).is_ok());
    }

    /// Found by fuzzing (target `frame_decoder`): a continuation frame whose 64-bit
    /// length, added to what the message held, passed `u64::MAX` panicked in a debug
    /// build and, in a release build, wrapped round to a small size that passed the
    /// limit, so the reader kept every byte that followed, without bound.
    #[test]
    fn a_length_near_u64_max_after_a_fragment_is_too_big_not_an_overflow() {
        let mut input = frame(0x2, false, b"a");
        input.extend([0x80, 0x80 | 127]);
        input.extend((i64::MAX as u64).to_be_bytes());
        input.extend(MASK);
        assert_eq!(
            read_all(&mut Reader::new(1024, false), &input),
            Err(DisconnectReason::MessageTooBig)
        );

        // The input the fuzzer found: 24 bytes of a binary message, then a
        // continuation of 2^64 - 1 bytes.
        let found = [
            0x02, 0x98, 0x98, 0x25, 0x98, 0xff, 0x98, 0x98, 0xff, 0xfe, 0xff, 0xff, 0x27, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0xff, 0x00, 0x00, 0x09,
            0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x00, 0x00,
        ];
        // Its length has the top bit set, which RFC 6455 forbids: 1002, not 1009.
        assert!(matches!(
            read_all(&mut Reader::new(65_536, false), &found),
            Err(DisconnectReason::ProtocolError(_))
        ));
    }

    #[test]
    fn a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() {
        let mut input = vec![0x82, 0x80 | 127];
        input.extend((1u64 << 63).to_be_bytes());
        input.extend(MASK);
        let result = read_all(&mut Reader::new(1024, false), &input);
        assert_eq!(result.unwrap_err().close_code(), Some(1002));
    }

    #[test]
    fn an_unfinished_frame_or_fragmented_message_is_incomplete() {
        let mut reader = Reader::new(1024, false);
        assert!(!reader.holds_incomplete());
        let whole = frame(0x1, true, b"hello");
        assert!(read_all(&mut reader, &whole[..4]).is_ok());
        assert!(reader.holds_incomplete(), "half a frame");
        assert!(read_all(&mut reader, &whole[4..]).is_ok());
        assert!(!reader.holds_incomplete());
        assert!(read_all(&mut reader, &frame(0x1, false, b"he")).is_ok());
        assert!(reader.holds_incomplete(), "a first fragment");
        assert!(read_all(&mut reader, &frame(0x0, true, b"llo")).is_ok());
        assert!(!reader.holds_incomplete());
    }

    #[test]
    fn malformed_frames_are_protocol_errors() {
        let cases: [(&str, Vec<u8>); 8] = [
            ("unmasked", vec![0x81, 0x01, b'a']),
            ("reserved bit", {
                let mut bytes = frame(0x1, true, b"a");
                bytes[0] |= 0x40;
                bytes
            }),
            ("reserved data opcode", frame(0x3, true, b"")),
            ("reserved control opcode", frame(0xb, true, b"")),
            ("fragmented ping", frame(0x9, false, b"")),
            ("long ping", frame(0x9, true, &[0; 126])),
            ("continuation first", frame(0x0, true, b"a")),
            ("new message inside a fragmented one", {
                let mut bytes = frame(0x1, false, b"a");
                bytes.extend(frame(0x1, true, b"b"));
                bytes
            }),
        ];
        for (name, input) in cases {
            let result = read_all(&mut Reader::new(1024, false), &input);
            assert!(
                matches!(result, Err(DisconnectReason::ProtocolError(_))),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn close_frames_are_checked_and_end_reading() {
        let mut reader = Reader::new(1024, false);
        let mut input = frame(0x8, true, &[0x03, 0xe8, b'b', b'y', b'e']);
        input.extend(frame(0x1, true, b"after the close"));
        let messages = read_all(&mut reader, &input).unwrap();
        let expected = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        assert_eq!(messages, [Message::Close(Some(expected))]);
        assert!(
            read_all(&mut reader, &frame(0x1, true, b"more"))
                .unwrap()
                .is_empty()
        );

        let empty = read_all(&mut Reader::new(1024, false), &frame(0x8, true, b"")).unwrap();
        assert_eq!(empty, [Message::Close(None)]);
        let one_byte = read_all(&mut Reader::new(1024, false), &frame(0x8, true, &[0x03]));
        assert!(matches!(one_byte, Err(DisconnectReason::ProtocolError(_))));
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let result = read_all(
                &mut Reader::new(1024, false),
                &frame(0x8, true, &code.to_be_bytes()),
            );
            assert!(
                matches!(result, Err(DisconnectReason::ProtocolError(_))),
                "code {code}: {result:?}"
            );
        }
        let bad_reason = frame(0x8, true, &[0x03, 0xe8, 0xff]);
        let result = read_all(&mut Reader::new(1024, false), &bad_reason);
        assert_eq!(result, Err(DisconnectReason::InvalidUtf8));
    }

    #[test]
    fn decoding_stops_when_asked_and_resumes_from_the_kept_bytes() {
        let mut reader = Reader::new(1024, false);
        let mut input: Vec<u8> = (0..5u8).flat_map(|n| frame(0x2, true, &[n])).collect();
        input.extend(&frame(0x2, true, &[5, 5])[..3]);
        let mut taken = Vec::new();
        let mut take_two = |reader: &mut Reader, input: &mut [u8]| {
            let mut count = 0;
            reader
                .feed(input, &mut |message| {
                    taken.push(message);
                    count += 1;
                    if count == 2 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .unwrap();
        };
        take_two(&mut reader, &mut input);
        assert!(reader.has_undecoded());
        take_two(&mut reader, &mut []);
        assert!(reader.has_undecoded());
        take_two(&mut reader, &mut []);
        // Five whole frames are out; the sixth has not fully arrived.
        assert!(!reader.has_undecoded());
        assert_eq!(taken.len(), 5);
        let rest = read_all(&mut reader, &frame(0x2, true, &[5, 5])[3..]).unwrap();
        assert_eq!(rest, [Message::Binary(vec![5, 5].into())]);
        let expected: Vec<Message> = (0..5u8).map(|n| Message::Binary(vec![n].into())).collect();
        assert_eq!(taken, expected);
    }

    #[test]
    fn bytes_that_came_with_the_handshake_are_decoded_first() {
        let mut reader = Reader::with_input(1024, false, &frame(0x1, true, b"early"));
        assert!(reader.has_undecoded());
        let messages = read_all(&mut reader, &[]).unwrap();
        assert_eq!(messages, [Message::Text("early".into())]);
        assert_eq!(reader.partial.capacity(), 0);
    }

    /// Found by fuzzing (target `frame_decoder`): with permessage-deflate, a new
    /// message that began inside a fragmented one was measured on its own, so it was
    /// refused for its place (1002) where the size of both called for 1009 first, as
    /// the reference decoder says.
    #[test]
    fn a_new_message_inside_a_fragmented_one_is_measured_with_it() {
        let mut input = frame(0x2, false, &[0; 60]);
        input.extend(frame(0x2, true, &[0; 41]));
        for inflates in [false, true] {
            let result = read_all(&mut Reader::new(100, inflates), &input);
            assert_eq!(result, Err(DisconnectReason::MessageTooBig), "{inflates}");
        }
    }

    /// A client frame with RSV1 set: the first frame of a compressed message.
    fn compressed(opcode: u8, is_final: bool, payload: &[u8]) -> Vec<u8> {
        let mut bytes = frame(opcode, is_final, payload);
        bytes[0] |= 0x40;
        bytes
    }

    #[test]
    fn compressed_messages_are_inflated_whole_or_in_fragments() {
        let text = "a message that says it twice, a message that says it twice".repeat(8);
        let deflated = deflate::deflate(text.as_bytes(), 15);
        let mut reader = Reader::new(1024, true);
        let mut input = compressed(0x1, true, &deflated);
        // Fragments: RSV1 on the first only, a Ping between them.
        let (head, tail) = deflated.split_at(deflated.len() / 2);
        input.extend(compressed(0x2, false, head));
        input.extend(frame(0x9, true, b""));
        input.extend(frame(0x0, true, tail));
        input.extend(frame(0x1, true, b"plain"));
        let messages = read_all(&mut reader, &input).unwrap();
        assert_eq!(
            messages,
            [
                Message::Text(text.as_str().into()),
                Message::Ping(Bytes::new()),
                Message::Binary(Bytes::from(text.clone())),
                Message::Text("plain".into()),
            ]
        );
        assert!(reader.fragmented.is_none());
        assert_eq!(reader.partial.capacity(), 0);
    }

    #[test]
    fn rsv1_is_a_protocol_error_unless_agreed_and_on_a_first_data_frame() {
        let deflated = deflate::deflate(&[b'a'; 200], 15);
        let cases: [(&str, bool, Vec<u8>); 3] = [
            ("not agreed", false, compressed(0x1, true, &deflated)),
            ("on a ping", true, compressed(0x9, true, b"")),
            ("on a continuation", true, {
                let mut bytes = frame(0x1, false, b"a");
                bytes.extend(compressed(0x0, true, b"b"));
                bytes
            }),
        ];
        for (name, inflates, input) in cases {
            let result = read_all(&mut Reader::new(1024, inflates), &input);
            assert!(
                matches!(result, Err(DisconnectReason::ProtocolError(_))),
                "{name}: {result:?}"
            );
        }
    }

    /// A decompression bomb: about 1 MiB on the wire, 1 GiB inflated. It is refused
    /// with 1009 once the limit is passed, in one frame or in fragments.
    #[test]
    fn a_bomb_is_too_big_as_soon_as_it_inflates_past_the_limit() {
        use flate2::{Compress, Compression, FlushCompress};
        // 1 MiB of zeros at the best ratio, ending in a sync flush: copies of it
        // follow each other as one stream of 1 GiB.
        let mut compressor = Compress::new(Compression::best(), false);
        let mut chunk = Vec::with_capacity(64 * 1024);
        compressor
            .compress_vec(&vec![0; 1 << 20], &mut chunk, FlushCompress::Sync)
            .unwrap();
        let mut bomb = chunk.repeat(1024);
        bomb.truncate(bomb.len() - 4);
        assert!(bomb.len() < 1100 * 1024, "{}", bomb.len());
        let limit = 2 << 20;
        let result = read_all(&mut Reader::new(limit, true), &compressed(0x2, true, &bomb));
        assert_eq!(result, Err(DisconnectReason::MessageTooBig));
        let (head, tail) = bomb.split_at(bomb.len() / 2);
        let mut input = compressed(0x2, false, head);
        input.extend(frame(0x0, true, tail));
        let result = read_all(&mut Reader::new(limit, true), &input);
        assert_eq!(result, Err(DisconnectReason::MessageTooBig));
    }

    #[test]
    fn unmasking_handles_every_length() {
        for len in 0..20 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut data: Vec<u8> = original
                .iter()
                .zip(MASK.iter().cycle())
                .map(|(b, k)| b ^ k)
                .collect();
            unmask(&mut data, MASK);
            assert_eq!(data, original);
        }
    }
}
