//! How much one client, or all of them, can make the server hold in memory: history
//! bytes, channels, publish ids, and messages left incomplete.

use std::time::Duration;

use super::{declared_defaults, parse};

/// Bounds on what clients can make a node keep.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
#[command(next_help_heading = "Memory bounds")]
pub struct Holdings {
    /// Bytes of history kept per channel; older messages are dropped past it (a
    /// client resuming before them is told recovered: false)
    #[arg(
        long,
        env = "HEARTWIRE_HISTORY_MAX_BYTES",
        value_name = "SIZE",
        default_value = "16MiB",
        value_parser = parse::size
    )]
    pub history_max_bytes: usize,

    /// Bytes of history kept by the node for all channels together; past it the
    /// oldest messages of any channel are dropped first
    #[arg(
        long,
        env = "HEARTWIRE_HISTORY_TOTAL_BYTES",
        value_name = "SIZE",
        default_value = "256MiB",
        value_parser = parse::size
    )]
    pub history_total_bytes: usize,

    /// Channels the node holds at once; a publish or subscribe that would create one
    /// more is refused with the error too_many_channels
    #[arg(
        long,
        env = "HEARTWIRE_MAX_CHANNELS",
        value_name = "N",
        default_value = "100000"
    )]
    pub max_channels: usize,

    /// Channels one connection may have created that the node still holds; one more
    /// is refused with the error too_many_channels
    #[arg(
        long,
        env = "HEARTWIRE_MAX_CREATED_CHANNELS",
        value_name = "N",
        default_value = "1000"
    )]
    pub max_created_channels: usize,

    /// Longest publish id accepted, in bytes; a longer one is refused with the error
    /// id_too_long
    #[arg(
        long,
        env = "HEARTWIRE_MAX_PUBLISH_ID_LENGTH",
        value_name = "N",
        default_value = "128"
    )]
    pub max_publish_id_length: usize,

    /// Publish ids the node remembers at once for --dedup-window; past it the oldest
    /// are forgotten early
    #[arg(
        long,
        env = "HEARTWIRE_MAX_PUBLISH_IDS",
        value_name = "N",
        default_value = "200000"
    )]
    pub max_publish_ids: usize,

    /// Close with 1008 a connection whose message (a frame, or fragments) stays
    /// incomplete for longer than this
    #[arg(
        long,
        env = "HEARTWIRE_MESSAGE_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse::duration
    )]
    pub message_timeout: Duration,
}

impl Default for Holdings {
    fn default() -> Self {
        declared_defaults()
    }
}
