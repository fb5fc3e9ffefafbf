//! How fast a dead client is noticed and dropped.

use std::time::Duration;

use heartwire_core::LivenessConfig;

use super::{declared_defaults, parse};

/// When the server pings a silent client, when it gives up on it, and how long a
/// close may take. The defaults are those of Python `websockets`.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
#[command(next_help_heading = "Liveness")]
pub struct LivenessTiming {
    /// Send a Ping after this much silence from a client (any frame from it counts)
    #[arg(
        long,
        env = "HEARTWIRE_PING_INTERVAL",
        value_name = "DURATION",
        default_value = "20s",
        value_parser = parse::duration
    )]
    pub ping_interval: Duration,

    /// Drop a client that sends nothing at all for this long after a Ping, with close
    /// 1011
    #[arg(
        long,
        env = "HEARTWIRE_PING_TIMEOUT",
        value_name = "DURATION",
        default_value = "20s",
        value_parser = parse::duration
    )]
    pub ping_timeout: Duration,

    /// Drop a connection whose close handshake takes longer than this
    #[arg(
        long,
        env = "HEARTWIRE_CLOSE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse::duration
    )]
    pub close_timeout: Duration,
}

impl Default for LivenessTiming {
    fn default() -> Self {
        declared_defaults()
    }
}

impl LivenessTiming {
    /// The liveness machine's config for one connection, which also sends an
    /// application heartbeat every `heartbeat_interval` when given one.
    pub fn machine(&self, heartbeat_interval: Option<Duration>) -> LivenessConfig {
        LivenessConfig {
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            close_timeout: self.close_timeout,
            heartbeat_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_those_of_the_liveness_machine() {
        let core = LivenessConfig::default();
        assert_eq!(LivenessTiming::default().machine(None), core);
    }
}
