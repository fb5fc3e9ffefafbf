//! The versioned format of what crosses from the old process to the new one: every
//! message of the handover, each a JSON document (see [`super::wire`] for the framing
//! and the file descriptors that come with some of them).
//!
//! The first message, [`Message::Begin`], carries the format's version, and keeps the
//! same shape in every version: a new process that does not read the version refuses
//! it ([`Message::Refuse`]) and the old one falls back to closing its connections with
//! 1012. Any change to the documents below that a build of the same version could not
//! read takes a new [`VERSION`]; a field added with a default (read as empty from an
//! older build, ignored by one) does not. A build reads every version from
//! [`OLDEST_READ`] to its own, so an upgrade to a newer build goes live.

use std::net::IpAddr;
use std::time::Duration;

use heartwire_core::liveness::LivenessSnapshot;
use heartwire_core::protocol::Position;
use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::id::ConnectionId;

/// The version of the format this build speaks.
pub(crate) const VERSION: u32 = 2;

/// The oldest version this build still reads: version 2 only added
/// [`EndpointState::Ws4Redis`], so a document of version 1 reads the same.
pub(crate) const OLDEST_READ: u32 = 1;

/// One message of the handover.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Message {
    /// Old → new, with the listening socket: the format's version.
    Begin {
        /// The version of the documents that follow.
        version: u32,
    },
    /// New → old: the version is known; send the rest.
    Ready,
    /// New → old: the version is not known (or the new process cannot adopt);
    /// the old one falls back to closing its connections with 1012.
    Refuse {
        /// Why, for the old process's log.
        reason: String,
    },
    /// Old → new: the in-process broker's channels.
    Channels(Vec<ChannelState>),
    /// Old → new, with the connection's socket: one connection.
    Connection(Box<ConnectionState>),
    /// Old → new: every connection has been sent.
    End,
    /// New → old: every connection is adopted, none driven yet.
    Adopted {
        /// How many.
        connections: usize,
    },
    /// Old → new: the old process lets go; the new one drives the connections.
    Commit,
}

impl Message {
    /// Whether a file descriptor comes with the message: the listening socket with
    /// `begin`, its socket with each connection.
    pub(crate) fn carries_fd(&self) -> bool {
        matches!(self, Self::Begin { .. } | Self::Connection(_))
    }
}

/// A channel of the in-process broker: its epoch, sequence and history, so that
/// clients see neither a new epoch nor a gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// The channel's name.
    pub name: String,
    /// Its epoch.
    pub epoch: String,
    /// The sequence number of its latest message.
    pub seq: u64,
    /// Its history, oldest first.
    pub history: Vec<MessageState>,
    /// The publish ids remembered on it (the dedup window), oldest first.
    pub publish_ids: Vec<PublishIdState>,
    /// Its presence members among the connections handed over: the new process
    /// knows them before they subscribe again, so nobody sees them join twice.
    #[serde(default)]
    pub members: Vec<MemberState>,
    /// Its retained message (django-websocket-redis's last message of a facility,
    /// which a socket gets as it subscribes), while it is kept.
    #[serde(default)]
    pub retained: Option<RetainedState>,
}

/// A retained message, and how much longer it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedState {
    /// The message.
    pub message: MessageState,
    /// How long it is kept still.
    pub expires_in: Duration,
}

/// A presence member of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// Its connection (session).
    pub session: ConnectionId,
    /// Its user; `None` when anonymous.
    pub user: Option<String>,
}

/// A publish id remembered within the dedup window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishIdState {
    /// Who published (a user, or an anonymous client's address).
    pub publisher: String,
    /// The id.
    pub id: String,
    /// The `seq` the message got.
    pub seq: u64,
    /// How long ago it was published.
    pub age: Duration,
}

/// A message in a channel's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// Its sequence number.
    pub seq: u64,
    /// Its body: JSON text, or raw text.
    pub payload: PayloadState,
    /// The connection that published it.
    pub origin: Option<ConnectionId>,
}

/// The body of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadState {
    /// A JSON value, as its text.
    Json(String),
    /// Raw text.
    Text(String),
}

/// One WebSocket connection, paused between two polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConnectionState {
    /// Its session id.
    pub(crate) session: ConnectionId,
    /// The address it comes from.
    pub(crate) address: IpAddr,
    /// Who it is.
    pub(crate) identity: Option<Identity>,
    /// Its endpoint and what the endpoint holds.
    pub(crate) endpoint: EndpointState,
    /// Its liveness machine, as durations.
    pub(crate) liveness: LivenessSnapshot,
    /// How long its socket has held an incomplete message.
    pub(crate) incomplete_for: Option<Duration>,
    /// permessage-deflate as agreed (no context takeover: nothing more to carry).
    pub(crate) deflate: Option<DeflateState>,
    /// What was read and not decoded yet.
    pub(crate) reader: ReaderState,
    /// Encoded frames the kernel has not taken yet.
    #[serde(with = "base64_bytes")]
    pub(crate) unsent: Vec<u8>,
    /// What is left of its message rate; `None` when the rate limits nothing (or
    /// from a build that did not send it: the bucket starts full).
    #[serde(default)]
    pub(crate) rate: Option<RateState>,
}

/// A connection's message rate (`--message-rate`), between two processes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct RateState {
    /// Tokens left in its bucket.
    pub(crate) tokens: f64,
    /// Messages refused since the last one taken.
    pub(crate) refused: u32,
}

/// What an endpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndpointState {
    /// `/ws`, with its subscriptions.
    Native {
        /// Each subscription, and the position of the last message queued to it.
        subscriptions: Vec<SubscriptionState>,
    },
    /// `/echo`.
    Echo,
    /// `/ws/{facility}` (django-websocket-redis), since version 2.
    Ws4Redis(Ws4RedisState),
}

/// What a `/ws/{facility}` socket holds once open: its query flags have become its
/// channels, so they do not cross.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ws4RedisState {
    /// The facility.
    pub(crate) facility: String,
    /// Whether it receives its own messages.
    pub(crate) echo: bool,
    /// The channels it receives, and the position of the last message queued from each.
    pub(crate) subscriptions: Vec<SubscriptionState>,
    /// The channels each text it sends is published on.
    pub(crate) publishing: Vec<String>,
}

/// A subscription of `/ws` or `/ws/{facility}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubscriptionState {
    /// The channel.
    pub(crate) channel: String,
    /// The last position sent (or queued) to the client; `None` before the
    /// subscription was confirmed.
    pub(crate) position: Option<Position>,
}

impl SubscriptionState {
    /// A subscription to `channel` whose last message queued is `seq` of `epoch`;
    /// `epoch` is `None` before the subscription was confirmed.
    pub(crate) fn at(channel: &str, epoch: Option<&str>, seq: u64) -> Self {
        Self {
            channel: channel.to_owned(),
            position: epoch.map(|epoch| Position {
                epoch: epoch.to_owned(),
                seq,
            }),
        }
    }
}

/// permessage-deflate as agreed with a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeflateState {
    /// The server's window, in bits.
    pub(crate) window_bits: u8,
    /// Messages shorter than this go out uncompressed.
    pub(crate) min_size: usize,
}

/// What the frame reader keeps between reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct ReaderState {
    /// Bytes of a frame that has not fully arrived, or complete frames not decoded.
    #[serde(with = "base64_bytes")]
    pub(crate) partial: Vec<u8>,
    /// Whether `partial` may hold complete frames.
    pub(crate) undecoded: bool,
    /// A message that came in fragments and has not ended.
    pub(crate) fragmented: Option<FragmentedState>,
}

/// A fragmented message being assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FragmentedState {
    /// A text message (else binary).
    pub(crate) text: bool,
    /// Its data is compressed.
    pub(crate) compressed: bool,
    /// Its data so far.
    #[serde(with = "base64_bytes")]
    pub(crate) data: Vec<u8>,
    /// How much of `data` is known to be valid UTF-8.
    pub(crate) validated: usize,
}

/// Bytes as base64 text, a third larger rather than four times as JSON numbers.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_names_its_version_in_every_version() {
        let begin = serde_json::to_string(&Message::Begin { version: VERSION }).unwrap();
        assert_eq!(begin, format!(r#"{{"begin":{{"version":{VERSION}}}}}"#));
    }

    #[test]
    fn bytes_cross_as_base64() {
        let reader = ReaderState {
            partial: vec![0x81, 0x85, 0, 255],
            undecoded: false,
            fragmented: None,
        };
        let text = serde_json::to_string(&reader).unwrap();
        assert!(text.contains(r#""partial":"gYUA/w==""#), "{text}");
        assert_eq!(serde_json::from_str::<ReaderState>(&text).unwrap(), reader);
    }
}
