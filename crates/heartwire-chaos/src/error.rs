//! The error type of `heartwire-chaos`.

use std::io;
use std::net::SocketAddr;

/// Everything that can go wrong in the proxy and the check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A fault's JSON was refused.
    #[error("the fault is not valid: {0}")]
    InvalidFault(String),
    /// The proxy or the control API could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why not.
        source: io::Error,
    },
    /// The control API stopped with an error.
    #[error("the control API failed: {0}")]
    Control(io::Error),
    /// The Tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    /// An option of the check cannot work.
    #[error("{option}: {reason}")]
    InvalidOption {
        /// The option, as spelled on the command line.
        option: &'static str,
        /// Why it cannot work.
        reason: String,
    },
    /// The server to check could not be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL given.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server to check does not speak heartwire's native protocol.
    #[error(
        "{url} sent no hello ({first}): the check needs a heartwire server's native endpoint, such as ws://HOST:PORT/ws"
    )]
    NotHeartwire {
        /// The URL given.
        url: String,
        /// What came instead.
        first: String,
    },
    /// The check's client refused its configuration.
    #[error("the check's client cannot start: {0}")]
    Client(#[from] heartwire_client::Error),
    /// The check ran, and some verdicts failed.
    #[error("{failed} of {total} verdicts failed")]
    VerdictsFailed {
        /// How many failed.
        failed: usize,
        /// How many were given.
        total: usize,
    },
}
