//! heartwire: WebSocket connections that notice when they die.
//!
//! - [`server`]: the axum server behind `heartwire serve`: it pings clients, reaps the
//!   dead, fans channel messages out and speaks the heartbeat conventions of existing
//!   clients.
//! - [`client`]: the client behind `heartwire connect`: one logical connection to a
//!   primary and its backups that detects a dead server, reconnects with full-jitter
//!   backoff, restores subscriptions and keeps what was sent while disconnected.
//!
//! The rules of liveness themselves live in the sans-IO crate [`heartwire_core`],
//! which this crate drives with real sockets and timers.

pub mod client;
pub mod error;
pub mod server;

pub use error::Error;
pub use heartwire_core as core;
