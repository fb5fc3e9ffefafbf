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
    /// An endpoint URL the client cannot use.
    #[error("invalid endpoint URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client's outbox holds as many messages as it may; the message was not queued.
    #[error("the outbox is full ({capacity} messages wait for a connection)")]
    OutboxFull {
        /// The outbox's capacity.
        capacity: usize,
    },
    /// The client was closed, or stopped for good; it sends nothing more.
    #[error("the client is closed")]
    ClientClosed,
    /// The Redis URL or client cannot be used.
    #[error("cannot use Redis at {url}: {source}")]
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
