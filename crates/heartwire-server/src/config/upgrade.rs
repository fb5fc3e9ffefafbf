//! Live upgrade: the Unix socket a running server hands its connections over on, and
//! the one a new server takes them from (docs/RELIABILITY.md).

use std::path::PathBuf;

use super::declared_defaults;

/// Where a running server offers its connections, and where a new one takes them.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "Live upgrade")]
pub struct Upgrade {
    /// Listen on this Unix socket (mode 0600, removed on exit) for a new server
    /// started with --take-over, and hand it the listening socket and every plain-TCP
    /// WebSocket without closing them; TLS connections and /sse streams are closed
    /// with 1012 as at shutdown (off unless given)
    #[arg(long, env = "HEARTWIRE_UPGRADE_SOCKET", value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,

    /// Start by taking over the listening socket and the connections of the server
    /// whose --upgrade-socket is PATH, instead of binding --listen; if this fails,
    /// that server goes on serving (off unless given)
    #[arg(long, env = "HEARTWIRE_TAKE_OVER", value_name = "PATH")]
    pub take_over: Option<PathBuf>,
}

impl Default for Upgrade {
    fn default() -> Self {
        declared_defaults()
    }
}
