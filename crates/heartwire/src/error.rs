//! The error type of the `heartwire` crate.

use std::io;

/// Everything that can go wrong in the `heartwire` server and client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O error outside any one connection.
    #[error(transparent)]
    Io(#[from] io::Error),
}
