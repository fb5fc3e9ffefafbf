//! The error type of `heartwire-client`.

/// Everything a heartwire client can refuse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server URL the client cannot use.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration names no server to connect to.
    #[error("a client needs at least one server URL")]
    NoServers,
    /// A setting that must be positive is zero.
    #[error("{setting} must be greater than zero")]
    ZeroSetting {
        /// The setting's name, as in [`ClientConfig`](crate::ClientConfig).
        setting: &'static str,
    },
    /// The certificate authorities for `wss://` cannot be loaded.
    #[error("cannot load the TLS roots: {0}")]
    TlsRoots(String),
    /// A channel name breaks the naming rules.
    #[error(transparent)]
    InvalidChannel(#[from] heartwire_core::Error),
    /// The client's outbox holds as many messages as it may; the message was not queued.
    #[error("the outbox is full ({capacity} messages wait for a connection)")]
    OutboxFull {
        /// The outbox's capacity.
        capacity: usize,
    },
    /// The client was closed, or stopped for good; it sends nothing more.
    #[error("the client is closed")]
    ClientClosed,
}
