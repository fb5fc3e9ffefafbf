//! What a server is told at start: addresses, heartbeat timing, limits.

use std::net::SocketAddr;
use std::time::Duration;

use heartwire_core::LivenessConfig;

use super::broker::Retention;
use crate::Error;

/// An inbound text that counts as a heartbeat and the text sent back for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The exact text a client sends, such as `ping`.
    pub inbound: String,
    /// The text the server answers with, such as `pong`.
    pub outbound: String,
}

impl std::str::FromStr for HeartbeatReply {
    type Err = Error;

    /// Parses `IN=OUT`, splitting at the first `=`.
    fn from_str(rule: &str) -> Result<Self, Error> {
        match rule.split_once('=') {
            Some((inbound, outbound)) if !inbound.is_empty() => Ok(Self {
                inbound: inbound.to_owned(),
                outbound: outbound.to_owned(),
            }),
            _ => Err(Error::Config(format!(
                "heartbeat reply rule {rule:?} must look like IN=OUT, for example ping=pong"
            ))),
        }
    }
}

/// Everything a [`Server`](super::Server) needs to know.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Inbound silence after which the server sends a Ping.
    pub ping_interval: Duration,
    /// How long after a Ping a client has to send any frame.
    pub ping_timeout: Duration,
    /// How long a close handshake the server started may take.
    pub close_timeout: Duration,
    /// Magic heartbeat string sent on `/ws/{facility}`, and dropped when received.
    pub heartbeat_text: Option<String>,
    /// How often the magic heartbeat string is sent.
    pub heartbeat_interval: Duration,
    /// Inbound texts answered with a fixed text on every endpoint.
    pub heartbeat_replies: Vec<HeartbeatReply>,
    /// Largest message accepted, in bytes; larger ones close the connection with 1009.
    pub max_message_size: usize,
    /// Most WebSocket connections held at once; more get HTTP 503 before the upgrade.
    pub max_connections: usize,
    /// How long the last message of a ws4redis facility is kept for late joiners
    /// (zero: not kept).
    pub persist_for: Duration,
    /// Window over which reconnect hints are spread at shutdown.
    pub shutdown_spread: Duration,
    /// Time allowed for a TCP connection to deliver its HTTP request.
    pub handshake_timeout: Duration,
    /// Messages that may wait for a client that does not read before it is closed
    /// as a slow consumer.
    pub outbound_queue: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Messages kept per channel so that reconnecting clients miss nothing.
    pub history_size: usize,
    /// How long a channel without subscribers keeps its history and epoch.
    pub history_ttl: Duration,
    /// How long a publish id is remembered, so a publish sent again after a
    /// reconnect is not published twice.
    pub dedup_window: Duration,
    /// Channels whose members are tracked (join and leave events, `presence`
    /// queries): glob patterns where `*` matches any run of characters, such as
    /// `room:*`.
    pub presence: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let liveness = LivenessConfig::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ping_interval: liveness.ping_interval,
            ping_timeout: liveness.ping_timeout,
            close_timeout: liveness.close_timeout,
            heartbeat_text: None,
            heartbeat_interval: Duration::from_secs(4),
            heartbeat_replies: Vec::new(),
            max_message_size: 1 << 20,
            max_connections: 10_000,
            persist_for: Duration::from_secs(3600),
            shutdown_spread: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            outbound_queue: 1024,
            max_subscriptions: 256,
            history_size: 1000,
            history_ttl: Duration::from_secs(300),
            dedup_window: Duration::from_secs(120),
            presence: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("ping-interval", self.ping_interval),
            ("ping-timeout", self.ping_timeout),
            ("close-timeout", self.close_timeout),
            ("heartbeat-interval", self.heartbeat_interval),
            ("handshake-timeout", self.handshake_timeout),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(Error::Config(format!("{name} must be greater than zero")));
            }
        }
        if self.max_message_size == 0 {
            return Err(Error::Config(
                "max-message-size must be at least 1 byte".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(Error::Config("max-connections must be at least 1".into()));
        }
        if self.outbound_queue == 0 {
            return Err(Error::Config("outbound-queue must be at least 1".into()));
        }
        if self.heartbeat_text.as_deref() == Some("") {
            return Err(Error::Config("heartbeat-text must not be empty".into()));
        }
        Ok(())
    }

    /// What the broker keeps of each channel.
    pub fn retention(&self) -> Retention {
        Retention {
            persist_for: self.persist_for,
            history_size: self.history_size,
            history_ttl: self.history_ttl,
            dedup_window: self.dedup_window,
        }
    }

    /// Whether the members of `channel` are tracked.
    pub fn has_presence(&self, channel: &str) -> bool {
        self.presence
            .iter()
            .any(|pattern| glob_matches(pattern, channel))
    }

    /// Liveness timing of a connection, with the magic heartbeat when it sends one.
    pub(crate) fn liveness(&self, sends_heartbeat_text: bool) -> LivenessConfig {
        LivenessConfig {
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            close_timeout: self.close_timeout,
            heartbeat_interval: (sends_heartbeat_text && self.heartbeat_text.is_some())
                .then_some(self.heartbeat_interval),
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters
/// (none included) and every other character for itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or("");
    for piece in pieces {
        match text.find(piece) {
            Some(at) => text = &text[at + piece.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_rules_split_at_the_first_equals_sign() {
        let rule: HeartbeatReply = "ping=pong".parse().unwrap();
        assert_eq!(
            (rule.inbound.as_str(), rule.outbound.as_str()),
            ("ping", "pong")
        );
        let rule: HeartbeatReply = "a=b=c".parse().unwrap();
        assert_eq!(
            (rule.inbound.as_str(), rule.outbound.as_str()),
            ("a", "b=c")
        );
        assert!("nothing".parse::<HeartbeatReply>().is_err());
        assert!("=pong".parse::<HeartbeatReply>().is_err());
    }

    #[test]
    fn presence_patterns_are_globs() {
        for (pattern, text, expected) in [
            ("room:*", "room:1", true),
            ("room:*", "room:", true),
            ("room:*", "rooms:1", false),
            ("*", "anything", true),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-c-b", false),
            ("*:ops", "team:ops", true),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} {text}");
        }
        let config = ServerConfig {
            presence: vec!["room:*".into()],
            ..ServerConfig::default()
        };
        assert!(config.has_presence("room:7") && !config.has_presence("news"));
    }

    #[test]
    fn defaults_are_valid_and_zero_timings_are_not() {
        assert!(ServerConfig::default().validate().is_ok());
        let bad = ServerConfig {
            ping_timeout: Duration::ZERO,
            ..ServerConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("ping-timeout"), "{err}");
    }
}
