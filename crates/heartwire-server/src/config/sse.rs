//! The Server-Sent Events fallback, `/sse`.

use std::time::Duration;

use super::{declared_defaults, parse};

/// How browsers reading `/sse` with `EventSource` come back after a stream ends.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
#[command(next_help_heading = "Server-Sent Events")]
pub struct SseOptions {
    /// The reconnect delay told to EventSource on /sse (its retry field): each stream
    /// gets a value drawn from [DURATION, 2 × DURATION], and at shutdown DURATION plus
    /// the stream's share of --shutdown-spread
    #[arg(
        long,
        env = "HEARTWIRE_SSE_RETRY",
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse::duration
    )]
    pub sse_retry: Duration,
}

impl Default for SseOptions {
    fn default() -> Self {
        declared_defaults()
    }
}
