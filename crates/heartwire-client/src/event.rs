//! What the client tells its caller: state changes and received messages.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use heartwire_core::DisconnectReason;
use serde_json::Value;
use url::Url;

/// Something that happened to a [`Client`](super::Client).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An attempt to connect to `url` started.
    Connecting {
        /// The endpoint.
        url: Url,
        /// The attempt number in the current streak of failures (0 for the first
        /// connection).
        attempt: u32,
    },
    /// A connection is open.
    Open {
        /// The endpoint.
        url: Url,
        /// The session id from the server's `hello`; `None` when the server is not
        /// heartwire.
        session: Option<String>,
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

/// Why a client stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedReason {
    /// The caller closed it.
    ByCaller,
    /// The server closed in a way that means "do not come back".
    DoNotComeBack(DisconnectReason),
    /// Every endpoint refused in a way retrying cannot fix; the last refusal.
    NoUsableEndpoint(String),
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
            Self::NoUsableEndpoint(last) => write!(f, "no endpoint can work: {last}"),
            Self::GaveUp { attempts, last } => {
                write!(
                    f,
                    "gave up after {attempts} attempts; the last failed: {last}"
                )
            }
        }
    }
}
