//! Channels: who is subscribed, and how a published message reaches them.
//!
//! Connections talk to a [`Broker`] only. Its methods never wait: results come back
//! as [`Outbound`] items in the caller's [`Mailbox`] (the `subscribed` confirmation, the
//! publish `ack`, the messages themselves), so a broker that crosses the network
//! answers the same way as the in-process one, and connection code does not change
//! with it.
//!
//! A [`Publication`] is built once per message and shared by every recipient; its
//! encodings for each endpoint are computed at most once.

mod memory;
mod redis;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use heartwire_core::protocol::{Position, encode_delivery};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use memory::MemoryBroker;
pub use redis::{RedisBroker, RedisConfig};

pub(crate) use crate::config::Retention;

use super::mailbox::{ConnectionId, Mailbox};

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
        }
    }

    /// The `message` envelope of the native endpoint, encoded once.
    pub fn native_frame(&self) -> Utf8Bytes {
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
    pub fn text_frame(&self) -> Utf8Bytes {
        self.text_frame
            .get_or_init(|| Utf8Bytes::from(self.payload.raw_text().into_owned()))
            .clone()
    }
}

/// A request to publish.
#[derive(Debug)]
pub struct PublishRequest {
    /// The channel.
    pub channel: Arc<str>,
    /// The body.
    pub payload: Payload,
    /// Keep this message as the channel's last, for late ws4redis joiners.
    pub retain: bool,
    /// The publishing connection: it receives the `ack` (when `ack_id` is set) or
    /// the error.
    pub origin: Option<Arc<Mailbox>>,
    /// The id to acknowledge.
    pub ack_id: Option<String>,
}

/// A request to subscribe.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// The channel.
    pub channel: Arc<str>,
    /// The subscribing connection.
    pub subscriber: Arc<Mailbox>,
    /// Deliver the channel's retained message first, when one is fresh (ws4redis).
    pub with_retained: bool,
    /// Deliver first every message after this position, or say that it cannot.
    pub since: Option<Position>,
    /// The channel's members are tracked: others learn that this subscriber joined
    /// and, when it unsubscribes, that it left.
    pub presence: bool,
}

/// How a broker's link to other nodes is doing, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerHealth {
    /// Messages reach other nodes (always true for a broker of one node).
    pub up: bool,
    /// Times the link was lost and made again.
    pub reconnects: u64,
}

/// Fans channel messages out to subscribed connections. See the [module docs](self).
pub trait Broker: Send + Sync + 'static {
    /// Adds the subscriber to the channel (with `presence`, as a member whose
    /// arrival every other subscriber learns). The broker then delivers
    /// [`Outbound::Subscribed`](super::mailbox::Outbound::Subscribed); then the
    /// channel's retained message when asked for and fresh; then, when `since` was
    /// given and the history covers it, every message after it; then every later
    /// message, each exactly once and in `seq` order.
    fn subscribe(&self, request: SubscribeRequest);

    /// Removes the connection `subscriber` from `channel`. When it was a member
    /// (subscribed with `presence`), every other subscriber learns that it left.
    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId);

    /// Delivers [`Outbound::Presence`](super::mailbox::Outbound::Presence) to `asker`:
    /// the members of `channel`, on every node of this broker.
    fn presence(&self, channel: Arc<str>, asker: Arc<Mailbox>);

    /// Publishes a message to every subscriber of its channel, in one order for all.
    /// A request whose `ack_id` was published on the channel within the dedup window
    /// is not published again: its origin gets the first `seq`, marked duplicate.
    fn publish(&self, request: PublishRequest);

    /// A name for `/healthz` and logs, such as `memory`.
    fn name(&self) -> &'static str;

    /// The state of the link to other nodes; a broker of one node is always up.
    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            up: true,
            reconnects: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
