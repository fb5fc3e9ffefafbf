//! The bounds that keep one client, or too many, from exhausting the server.

use std::time::Duration;

use super::{declared_defaults, parse};

/// How much a server accepts, holds and waits for.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Close a connection that sends a larger message, with close 1009 (e.g. 1MiB,
    /// 65536)
    #[arg(
        long,
        env = "HEARTWIRE_MAX_MESSAGE_SIZE",
        value_name = "SIZE",
        default_value = "1MiB",
        value_parser = parse::size
    )]
    pub max_message_size: usize,

    /// Refuse WebSocket upgrades beyond this many open connections, with HTTP 503
    #[arg(
        long,
        env = "HEARTWIRE_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "10000"
    )]
    pub max_connections: usize,

    /// Messages that may wait for a client that does not read; past this it is closed
    /// with 1008 "slow consumer"
    #[arg(
        long,
        env = "HEARTWIRE_OUTBOUND_QUEUE",
        value_name = "N",
        default_value = "1024"
    )]
    pub outbound_queue: usize,

    /// Subscriptions one connection may hold; one more is refused with an error
    /// envelope
    #[arg(
        long,
        env = "HEARTWIRE_MAX_SUBSCRIPTIONS",
        value_name = "N",
        default_value = "256"
    )]
    pub max_subscriptions: usize,

    /// Drop a TCP connection that has not sent its whole HTTP request within this
    /// time
    #[arg(
        long,
        env = "HEARTWIRE_HANDSHAKE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse::duration
    )]
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        declared_defaults()
    }
}
