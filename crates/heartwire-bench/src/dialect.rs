//! What each kind of server speaks on top of WebSocket, for the scenarios' few needs:
//! hold a connection, subscribe, publish, echo, answer application heartbeats.

use serde::{Deserialize, Serialize};

/// The channel every benchmark subscriber of a heartwire server joins.
const CHANNEL: &str = "bench";

/// The protocol of a server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Dialect {
    /// heartwire: `/ws` with JSON envelopes, `/echo`.
    Heartwire,
    /// A plain WebSocket server: `/echo`, and `/broadcast` that fans out to the others.
    Plain,
    /// socket.io over its websocket transport: events `echo`, `publish`, `message`.
    Socketio,
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Held open; answers heartbeats only.
    Idle,
    /// Receives every broadcast message.
    Subscriber,
    /// Sends the broadcast messages.
    Publisher,
    /// Sends messages that come back.
    Echo,
}

/// An inbound text frame, as a scenario sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// An application-level Ping (socket.io's "2"); answer with [`Dialect::heartbeat_answer`].
    Heartbeat,
    /// A frame that may carry a benchmark payload.
    Data(&'a str),
}

impl Dialect {
    /// The path to connect to for `role`.
    pub(crate) fn path(self, role: Role) -> &'static str {
        match (self, role) {
            (Self::Socketio, _) => "/socket.io/?EIO=4&transport=websocket",
            (Self::Heartwire, Role::Echo) | (Self::Plain, Role::Echo | Role::Idle) => "/echo",
            (Self::Heartwire, _) => "/ws",
            (Self::Plain, _) => "/broadcast",
        }
    }

    /// Frames to send once the WebSocket is open, each followed by one awaited answer.
    pub(crate) fn opening(self, role: Role) -> Vec<String> {
        match (self, role) {
            (Self::Socketio, _) => vec!["40".into()],
            (Self::Heartwire, Role::Subscriber) => {
                vec![format!(r#"{{"op":"subscribe","channel":"{CHANNEL}"}}"#)]
            }
            _ => Vec::new(),
        }
    }

    /// Frames the server sends by itself on open, before any request: heartwire's
    /// `hello` on `/ws`, Engine.IO's open packet.
    pub(crate) fn greetings(self, role: Role) -> usize {
        match (self, role) {
            (Self::Socketio, _)
            | (Self::Heartwire, Role::Idle | Role::Subscriber | Role::Publisher) => 1,
            _ => 0,
        }
    }

    /// The frame that publishes `payload` to every subscriber.
    pub(crate) fn publish(self, payload: &str) -> String {
        match self {
            Self::Heartwire => {
                format!(r#"{{"op":"publish","channel":"{CHANNEL}","data":"{payload}"}}"#)
            }
            Self::Plain => payload.to_owned(),
            Self::Socketio => format!(r#"42["publish","{payload}"]"#),
        }
    }

    /// The frame that comes back carrying `payload`.
    pub(crate) fn echo(self, payload: &str) -> String {
        match self {
            Self::Heartwire | Self::Plain => payload.to_owned(),
            Self::Socketio => format!(r#"42["echo","{payload}"]"#),
        }
    }

    /// Classifies an inbound text frame.
    pub(crate) fn inbound(self, text: &str) -> Inbound<'_> {
        if self == Self::Socketio && text == "2" {
            Inbound::Heartbeat
        } else {
            Inbound::Data(text)
        }
    }

    /// The answer to an application heartbeat.
    pub(crate) fn heartbeat_answer(self) -> &'static str {
        "3"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketio_pings_are_heartbeats_and_everything_else_is_data() {
        assert_eq!(Dialect::Socketio.inbound("2"), Inbound::Heartbeat);
        assert_eq!(Dialect::Plain.inbound("2"), Inbound::Data("2"));
        assert_eq!(
            Dialect::Socketio.publish("~1"),
            r#"42["publish","~1"]"#.to_owned()
        );
    }
}
