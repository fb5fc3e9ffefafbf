//! What the client tells its caller: state changes and received messages.
//!
//! [`Incoming`] and [`GapReason`] come from the connection machine of
//! [`heartwire_core::client`] as they are.

use std::fmt;
use std::time::Duration;

use heartwire_core::DisconnectReason;
pub use heartwire_core::ErrorCode;
pub use heartwire_core::client::{GapReason, Incoming};
pub use heartwire_core::protocol::PresenceUser;
use url::Url;

/// Something that happened to a [`Client`](super::Client).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An attempt to connect to `url` started.
    Connecting {
        /// The server.
        url: Url,
        /// The attempt number in the current streak of failures: 0 for the first
        /// connection, then the `attempt` of the [`Event::Reconnecting`] before it.
        attempt: u32,
    },
    /// A connection is open.
    Open {
        /// The server.
        url: Url,
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
    /// Messages `from_seq ..= to_seq` of `channel` were published while this client
    /// was away and will not arrive: the application may reload its state. Messages
    /// after them follow.
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
    /// The server acknowledged publish `id` (as returned by
    /// [`Client::publish`](super::Client::publish)): the message is `seq` in
    /// `channel`. With `duplicate`, the server had taken it before (it went out again
    /// after a reconnect) and published it once. Only with
    /// [`ClientConfig::report_acks`](crate::ClientConfig::report_acks).
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
    /// The server refused publish `id` for good: it is not published and not sent
    /// again. (A publish the server could not take for want of a broker goes out
    /// again by itself.)
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
    /// The server refused a request; the connection stays open. A `forbidden` one
    /// naming a channel means the identity may not use it: a subscription to it is
    /// dropped, not asked for again. An `unauthorized` or `forbidden` one without a
    /// channel refused a token refresh.
    Error {
        /// The server's code.
        code: ErrorCode,
        /// The server's sentence.
        reason: String,
        /// The channel it is about, when it is about one.
        channel: Option<String>,
    },
    /// The server ended the subscription to `channel`: a token refresh took away the
    /// permission to read it (an [`Event::Error`] `forbidden` naming it came just
    /// before). It is no longer subscribed, now or on later connections.
    SubscriptionEnded {
        /// The channel.
        channel: String,
    },
    /// The answer to [`Client::presence`](super::Client::presence).
    Presence {
        /// The channel.
        channel: String,
        /// The member sessions, sorted.
        members: Vec<String>,
        /// The identified users among them, sorted, with their connections.
        users: Vec<PresenceUser>,
    },
    /// Someone arrived on a subscribed channel whose presence the server tracks.
    Join {
        /// The channel.
        channel: String,
        /// Their session.
        session: String,
        /// Their user; `None` for an anonymous session.
        user: Option<String>,
    },
    /// Someone left such a channel.
    Leave {
        /// The channel.
        channel: String,
        /// Their session.
        session: String,
        /// Their user; `None` for an anonymous session.
        user: Option<String>,
    },
    /// The server took a fresh token from the token provider: the connection now
    /// lasts `expires_in` more (`None`: it no longer expires).
    Refreshed {
        /// How long the new token lasts.
        expires_in: Option<Duration>,
    },
    /// The connection is gone; the next attempt starts after `delay`.
    Reconnecting {
        /// The attempt about to be made, counting from 1 in the current streak.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// Why the previous connection or attempt ended.
        reason: String,
    },
    /// The client stopped for good; no event follows.
    Closed {
        /// Why it stopped.
        reason: ClosedReason,
    },
}

/// Why a client stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedReason {
    /// The caller closed it.
    ByCaller,
    /// The server closed in a way that means "do not come back".
    DoNotComeBack(DisconnectReason),
    /// Every server refused in a way retrying cannot fix; the last refusal.
    NoUsableServer(String),
    /// The reconnect policy's attempt or time limit was reached.
    GaveUp {
        /// Attempts made in the last streak.
        attempts: u32,
        /// Why the last attempt or connection failed.
        last: String,
    },
}

impl fmt::Display for ClosedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ByCaller => f.write_str("closed by the caller"),
            Self::DoNotComeBack(reason) => write!(f, "the server said not to come back ({reason})"),
            Self::NoUsableServer(last) => write!(f, "no server can work: {last}"),
            Self::GaveUp { attempts, last } => {
                write!(
                    f,
                    "gave up after {attempts} attempts; the last failed: {last}"
                )
            }
        }
    }
}
