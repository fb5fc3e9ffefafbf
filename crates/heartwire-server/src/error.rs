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
    /// The Unix socket of live upgrades (`--upgrade-socket`) cannot be listened on.
    #[error("cannot listen for live upgrades on {}", path.display())]
    UpgradeSocket {
        /// The path asked for.
        path: std::path::PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// Taking over from a running server (`--take-over`) failed; that server goes on.
    #[error("cannot take over from the server at {}", path.display())]
    TakeOver {
        /// The path of its upgrade socket.
        path: std::path::PathBuf,
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
    /// The TLS certificate and key cannot be served.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsFileError),
    /// An I/O error outside any one connection.
    #[error(transparent)]
    Io(#[from] io::Error),
}
