//! The heartbeat conventions of existing clients: django-websocket-redis's magic
//! string, and fixed answers to texts such as `ping`.

use std::time::Duration;

use super::{declared_defaults, parse};
use crate::Error;

/// Application heartbeats that are not WebSocket Pings.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "Heartbeat conventions")]
pub struct HeartbeatConventions {
    /// Magic heartbeat string, as django-websocket-redis's WS4REDIS_HEARTBEAT: sent on
    /// /ws/{facility} every --heartbeat-interval, and dropped when a client sends it
    /// (off unless given)
    #[arg(
        long,
        env = "HEARTWIRE_HEARTBEAT_TEXT",
        value_name = "TEXT",
        allow_hyphen_values = true
    )]
    pub heartbeat_text: Option<String>,

    /// How often the magic heartbeat string is sent
    #[arg(
        long,
        env = "HEARTWIRE_HEARTBEAT_INTERVAL",
        value_name = "DURATION",
        default_value = "4s",
        value_parser = parse::duration
    )]
    pub heartbeat_interval: Duration,

    /// Send the magic heartbeat string only on the facilities matching PATTERN (a glob
    /// where * matches anything, e.g. chat*); repeat for several. The environment
    /// variable holds one pattern, the config file a list (every facility unless given)
    #[arg(
        long = "heartbeat-facility",
        env = "HEARTWIRE_HEARTBEAT_FACILITY",
        value_name = "PATTERN"
    )]
    pub heartbeat_facilities: Vec<String>,

    /// Answer the text IN with the text OUT on every endpoint, as a heartbeat that is
    /// never published or echoed; repeat for several rules (e.g. ping=pong). The
    /// environment variable holds one rule; the config file takes a list
    #[arg(
        long = "heartbeat-reply",
        env = "HEARTWIRE_HEARTBEAT_REPLY",
        value_name = "IN=OUT",
        allow_hyphen_values = true
    )]
    pub heartbeat_replies: Vec<HeartbeatReply>,
}

impl HeartbeatConventions {
    /// Whether the magic heartbeat string goes to sockets of `facility`.
    pub(crate) fn is_sent_on(&self, facility: &str) -> bool {
        self.heartbeat_facilities.is_empty()
            || self
                .heartbeat_facilities
                .iter()
                .any(|pattern| super::glob_matches(pattern, facility))
    }
}

impl Default for HeartbeatConventions {
    fn default() -> Self {
        declared_defaults()
    }
}

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
}
