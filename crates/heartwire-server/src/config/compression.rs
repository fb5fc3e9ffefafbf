//! permessage-deflate (RFC 7692): whether it is negotiated, and what is worth
//! compressing.

use super::{declared_defaults, parse};

/// Whether messages are compressed, and from which size.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
#[command(next_help_heading = "Compression")]
pub struct Compression {
    /// Accept the permessage-deflate offers of clients (on or off). Each message is
    /// compressed on its own (no context takeover), so a connection keeps no
    /// compression state between messages
    #[arg(
        long,
        env = "HEARTWIRE_COMPRESSION",
        value_name = "SWITCH",
        default_value = "on",
        action = clap::ArgAction::Set,
        value_parser = parse::switch
    )]
    pub compression: bool,

    /// Send messages shorter than this uncompressed, where compressing saves too
    /// little to pay for itself (e.g. 128B, 1KiB)
    #[arg(
        long,
        env = "HEARTWIRE_COMPRESSION_MIN_SIZE",
        value_name = "SIZE",
        default_value = "128B",
        value_parser = parse::size
    )]
    pub compression_min_size: usize,
}

impl Default for Compression {
    fn default() -> Self {
        declared_defaults()
    }
}
