//! When the node refuses new connections to keep the ones it holds responsive.

use std::time::Duration;

use super::{declared_defaults, parse};

/// The bounds past which a new connection is refused with HTTP 503 (docs/RELIABILITY.md,
/// "Overload").
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
#[command(next_help_heading = "Overload")]
pub struct OverloadBounds {
    /// Refuse new connections with HTTP 503 and Retry-After while the scheduler lag
    /// (how late a 100 ms timer fires) has stayed above this for 2 s: the workers are
    /// saturated. They are let in again once it falls below half of it (0: not checked)
    #[arg(
        long,
        env = "HEARTWIRE_OVERLOAD_MAX_LAG",
        value_name = "DURATION",
        default_value = "250ms",
        value_parser = parse::duration
    )]
    pub overload_max_lag: Duration,

    /// Refuse new connections with HTTP 503 and Retry-After while the process's resident
    /// memory is above this (e.g. 2GiB, under the container's limit); they are let in
    /// again once it falls below 90 % of it (none unless given: not checked)
    #[arg(
        long,
        env = "HEARTWIRE_OVERLOAD_MAX_MEMORY",
        value_name = "SIZE",
        value_parser = parse::size
    )]
    pub overload_max_memory: Option<usize>,

    /// Refuse new connections with HTTP 503 and Retry-After while more than this many
    /// accepted TCP connections have not had the answer to their first request (their
    /// handshake) yet (0: no limit)
    #[arg(
        long,
        env = "HEARTWIRE_MAX_PENDING_HANDSHAKES",
        value_name = "N",
        default_value = "1024"
    )]
    pub max_pending_handshakes: usize,
}

impl Default for OverloadBounds {
    fn default() -> Self {
        declared_defaults()
    }
}
