//! The error type of `heartwire-server`.

use std::io;

/// Everything that can keep a heartwire server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Redis URL or client cannot be used.
    #[error("cannot use Redis at {url}")]
    Redis {
        /// The URL as given.
        url: String,
        /// Why it failed.
        source: redis::RedisError,
    },
    /// An I/O error outside any one connection.
    #[error(transparent)]
    Io(#[from] io::Error),
}
