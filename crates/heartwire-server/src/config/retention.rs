//! What the broker keeps of each channel, and for how long.

use std::time::Duration;

use super::{declared_defaults, parse};

/// How much of each channel a broker keeps, and for how long.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
#[command(next_help_heading = "History")]
pub struct Retention {
    /// Messages kept per channel, so that a client that reconnects with its last
    /// position receives exactly what it missed
    #[arg(
        long,
        env = "HEARTWIRE_HISTORY_SIZE",
        value_name = "N",
        default_value = "1000"
    )]
    pub history_size: usize,

    /// How long a channel without subscribers keeps its history
    #[arg(
        long,
        env = "HEARTWIRE_HISTORY_TTL",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = parse::duration
    )]
    pub history_ttl: Duration,

    /// How long a publish id is remembered, so that a publish a client sends again
    /// after a reconnect is not published twice
    #[arg(
        long,
        env = "HEARTWIRE_DEDUP_WINDOW",
        value_name = "DURATION",
        default_value = "2m",
        value_parser = parse::duration
    )]
    pub dedup_window: Duration,

    /// Keep the last message of each django-websocket-redis facility this long for
    /// late joiners; 0 keeps none
    #[arg(
        long,
        env = "HEARTWIRE_PERSIST_FOR",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse::duration
    )]
    pub persist_for: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        declared_defaults()
    }
}
