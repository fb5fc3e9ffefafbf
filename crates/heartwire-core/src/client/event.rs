//! What the client machine tells its driver and, through it, the application.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::error::ErrorCode;
use crate::protocol::PresenceUser;

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The connection is open: the server's kind is known (a heartwire server's
    /// `hello`, or anything else from any other server) and the outbox drains.
    Open {
        /// The server's index in the client's list.
        server: usize,
        /// The session id from the server's `hello`; `None` when the server is not
        /// heartwire.
        session: Option<String>,
    },
    /// The server confirmed a subscription: messages of `channel` after `seq` follow,
    /// and with `recovered: Some(true)` the ones missed since the last connection come
    /// first. An application that loads a channel's state from elsewhere does it now.
    Subscribed {
        /// The channel.
        channel: String,
        /// The channel's latest sequence number when the subscription took effect.
        seq: u64,
        /// Whether what was missed since the position asked for follows (`None` when no
        /// position was asked for).
        recovered: Option<bool>,
    },
    /// A message arrived.
    Message(Incoming),
    /// Messages `from_seq ..= to_seq` of `channel` will not arrive.
    Gap {
        /// The channel.
        channel: String,
        /// The first sequence number missed (in the channel's new epoch when it
        /// changed).
        from_seq: u64,
        /// The last sequence number missed; below `from_seq` when the server could not
        /// tell which (a new epoch with no message yet).
        to_seq: u64,
        /// Why they will not arrive.
        reason: GapReason,
    },
    /// The server acknowledged publish `id`: the message is `seq` in `channel`. With
    /// `duplicate`, the server had taken it before (it was sent again after a
    /// reconnect or a lost ack) and published it once.
    Published {
        /// The publish's id.
        id: String,
        /// Its channel.
        channel: String,
        /// Its position in the channel.
        seq: u64,
        /// Whether the server had seen this id before.
        duplicate: bool,
    },
    /// The server refused publish `id` for good (any `error` naming it but
    /// `unavailable`, which sends it again): it is not published and not sent again.
    PublishRefused {
        /// The publish's id.
        id: String,
        /// Its channel.
        channel: String,
        /// The server's code.
        code: ErrorCode,
        /// The server's sentence.
        reason: String,
    },
    /// The server refused a request and the connection stays open: a channel the
    /// identity may not use (`forbidden`, with `channel`), a refused token refresh
    /// (`unauthorized` or `forbidden`, no channel), or any other `error` that answers
    /// no publish and no subscribe.
    Error {
        /// The server's code.
        code: ErrorCode,
        /// The server's sentence.
        reason: String,
        /// The channel it is about, when it is about one.
        channel: Option<String>,
    },
    /// The server refused to subscribe to `channel` (`forbidden`): the identity may
    /// not read it. The driver stops subscribing to it on later connections.
    SubscriptionRefused {
        /// The channel.
        channel: String,
        /// The server's sentence.
        reason: String,
    },
    /// The server ended a subscription the client did not leave: a `refresh` took away
    /// the permission to read `channel` (a `forbidden` naming it came just before).
    /// The driver stops subscribing to it on later connections.
    SubscriptionEnded {
        /// The channel.
        channel: String,
    },
    /// The answer to a presence request: who is subscribed to `channel`.
    Presence {
        /// The channel.
        channel: String,
        /// The member sessions, sorted.
        members: Vec<String>,
        /// The identified users among them, sorted, with their connections.
        users: Vec<PresenceUser>,
    },
    /// Someone arrived on a subscribed channel with presence.
    Join {
        /// The channel.
        channel: String,
        /// Their session.
        session: String,
        /// Their user; `None` for an anonymous session.
        user: Option<String>,
    },
    /// Someone left a subscribed channel with presence.
    Leave {
        /// The channel.
        channel: String,
        /// Their session.
        session: String,
        /// Their user; `None` for an anonymous session.
        user: Option<String>,
    },
    /// The server took a fresh token: the identity now lasts `expires_in` more
    /// (`None`: it no longer expires).
    Refreshed {
        /// How long the new token lasts.
        expires_in: Option<Duration>,
    },
    /// A Ping was answered after this long: the latest round-trip time.
    RoundTrip(Duration),
}

/// A message received from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A message on a subscribed channel of a heartwire server.
    Channel {
        /// The channel.
        channel: String,
        /// Its position in the channel.
        seq: u64,
        /// The published value.
        data: Value,
    },
    /// Any other text frame (every text frame of a server that is not heartwire).
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// Why messages of a channel will not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The server's history of the channel no longer reaches back to the last message
    /// this client received.
    HistoryTooShort,
    /// The channel started again with a new epoch (the server forgot it): what this
    /// client missed of the old one is gone.
    EpochChanged,
    /// A live message arrived past the next expected one, with no replay covering
    /// those between.
    Skipped,
}

impl GapReason {
    /// A stable, machine-readable name: `history_too_short`, `epoch_changed`,
    /// `skipped`.
    pub fn code(self) -> &'static str {
        match self {
            Self::HistoryTooShort => "history_too_short",
            Self::EpochChanged => "epoch_changed",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HistoryTooShort => "history too short",
            Self::EpochChanged => "epoch changed",
            Self::Skipped => "skipped",
        })
    }
}
