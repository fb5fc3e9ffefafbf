//! A published message, built once and shared by every recipient, with its
//! encodings for each endpoint, each computed at most once, and each of those
//! compressed at most once per window size that recipients agreed to
//! (permessage-deflate).
//!
//! The encodings are tungstenite's `Utf8Bytes`, which the connections send as they
//! are (a clone shares the bytes); they stay inside this crate.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use heartwire_core::protocol::encode_delivery;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::id::ConnectionId;
use crate::websocket::deflate;

/// How an endpoint sends a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// The `message` envelope of `/ws`.
    Native,
    /// The raw text of `/ws/{facility}`.
    Text,
}

/// The window sizes (9 to 15 bits) a compressed form may be made for.
const WINDOWS: usize = 7;

/// The compressed forms of both encodings, by window size, made on first use.
type DeflatedForms = [[OnceLock<Bytes>; WINDOWS]; 2];

/// The body of a published message.
#[derive(Debug)]
pub enum Payload {
    /// A JSON value, as published on `/ws`.
    Json(Box<RawValue>),
    /// Raw text, as published on `/ws/{facility}`.
    Text(Box<str>),
}

impl Payload {
    /// The raw text of the ws4redis conventions: a text as it was published, a JSON
    /// string as its contents, any other JSON value as its JSON text.
    pub fn raw_text(&self) -> Cow<'_, str> {
        match self {
            Payload::Text(text) => Cow::Borrowed(text),
            Payload::Json(data) => match serde_json::from_str::<String>(data.get()) {
                Ok(text) => Cow::Owned(text),
                Err(_) => Cow::Borrowed(data.get()),
            },
        }
    }
}

/// One published message, shared by all its recipients.
#[derive(Debug)]
pub struct Publication {
    /// The channel.
    pub channel: Arc<str>,
    /// Position in the channel, counting from 1.
    pub seq: u64,
    /// The body.
    pub payload: Payload,
    /// The connection that published it, if it came from one.
    pub origin: Option<ConnectionId>,
    native_frame: OnceLock<Utf8Bytes>,
    text_frame: OnceLock<Utf8Bytes>,
    /// Allocated only when a recipient has compression agreed.
    deflated: OnceLock<Box<DeflatedForms>>,
}

impl Publication {
    /// A message of `channel` at position `seq`.
    pub fn new(
        channel: Arc<str>,
        seq: u64,
        payload: Payload,
        origin: Option<ConnectionId>,
    ) -> Self {
        Self {
            channel,
            seq,
            payload,
            origin,
            native_frame: OnceLock::new(),
            text_frame: OnceLock::new(),
            deflated: OnceLock::new(),
        }
    }

    /// The message as `encoding` sends it.
    pub(crate) fn frame(&self, encoding: Encoding) -> Utf8Bytes {
        match encoding {
            Encoding::Native => self.native_frame(),
            Encoding::Text => self.text_frame(),
        }
    }

    /// [`frame`](Self::frame) compressed with a window of `window_bits` (9 to 15),
    /// once for every recipient that agreed to that window.
    pub(crate) fn deflated(&self, encoding: Encoding, window_bits: u8) -> Bytes {
        let forms = self.deflated.get_or_init(Box::default);
        let window = usize::from(window_bits.clamp(9, 15) - 9);
        let form = &forms[encoding as usize][window];
        form.get_or_init(|| {
            Bytes::from(deflate::deflate(
                self.frame(encoding).as_bytes(),
                window_bits,
            ))
        })
        .clone()
    }

    /// The `message` envelope of the native endpoint, encoded once.
    pub(crate) fn native_frame(&self) -> Utf8Bytes {
        self.native_frame
            .get_or_init(|| {
                let frame = match &self.payload {
                    Payload::Json(data) => encode_delivery(&self.channel, self.seq, data),
                    Payload::Text(text) => {
                        let data = serde_json::value::to_raw_value(text)
                            .expect("a string always encodes as JSON");
                        encode_delivery(&self.channel, self.seq, &data)
                    }
                };
                Utf8Bytes::from(frame)
            })
            .clone()
    }

    /// The raw text of the ws4redis endpoint: a text as it was published, a JSON
    /// string as its contents, any other JSON value as its JSON text.
    pub(crate) fn text_frame(&self) -> Utf8Bytes {
        self.text_frame
            .get_or_init(|| Utf8Bytes::from(self.payload.raw_text().into_owned()))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_compressed_form_is_made_once_and_shared() {
        let text = "a chat message that says the same thing twice, the same thing twice";
        let message = publication(Payload::Text(text.into()));
        let first = message.deflated(Encoding::Text, 15);
        let again = message.deflated(Encoding::Text, 15);
        // The same bytes, not a second compression.
        assert_eq!(first.as_ptr(), again.as_ptr());
        assert_eq!(deflate::inflate(&first, 1024).unwrap(), text.as_bytes());
        let native = message.deflated(Encoding::Native, 15);
        let native = deflate::inflate(&native, 1024).unwrap();
        assert_eq!(native, message.native_frame().as_bytes());
        let small_window = message.deflated(Encoding::Text, 9);
        assert_ne!(small_window.as_ptr(), first.as_ptr());
        assert_eq!(
            deflate::inflate(&small_window, 1024).unwrap(),
            text.as_bytes()
        );
    }

    fn publication(payload: Payload) -> Publication {
        Publication::new(Arc::from("broadcast:chat"), 3, payload, None)
    }

    #[test]
    fn text_payload_becomes_a_json_string_on_the_native_endpoint() {
        let message = publication(Payload::Text("say \"hi\"".into()));
        assert_eq!(
            message.native_frame().as_str(),
            r#"{"op":"message","channel":"broadcast:chat","seq":3,"data":"say \"hi\""}"#
        );
        assert_eq!(message.text_frame().as_str(), "say \"hi\"");
    }

    #[test]
    fn json_payload_becomes_text_on_the_ws4redis_endpoint() {
        let string = publication(Payload::Json(
            RawValue::from_string(r#""plain""#.into()).unwrap(),
        ));
        assert_eq!(string.text_frame().as_str(), "plain");
        let object = publication(Payload::Json(
            RawValue::from_string(r#"{"a":1}"#.into()).unwrap(),
        ));
        assert_eq!(object.text_frame().as_str(), r#"{"a":1}"#);
        assert_eq!(
            object.native_frame().as_str(),
            r#"{"op":"message","channel":"broadcast:chat","seq":3,"data":{"a":1}}"#
        );
    }
}
