//! The sans-IO heart of heartwire.
//!
//! Nothing in this crate touches a socket, a clock or a runtime: time comes in as an
//! explicit `now: Instant`, decisions come out as values. That makes the rules that
//! matter most — when a peer counts as dead, what goes on the wire — plain functions
//! that unit tests drive with synthetic time.
//!
//! - [`liveness`]: the per-connection state machine that sends Pings after silence,
//!   declares a peer dead, and bounds the close handshake.
//! - [`reason`]: why a connection ended, and the close code that goes with it.
//! - [`protocol`]: the JSON envelopes of the native `/ws` endpoint.
//! - [`backoff`]: the reconnect policy of clients (full-jitter delays, limits).
//! - [`reconnect`]: whether a client comes back after a close, and when.
//! - [`failover`]: fail-over and fail-back between a primary server and its backups.
//! - [`client`]: the client's connection machine (mode, resume, acks, fail-back),
//!   driven by `heartwire-client` and, in tests, against the server's own logic.
//! - [`report`]: the report of its previous session a client sends on its next
//!   connection (offline time and reason), and the checks a server makes of it.
//! - [`error`]: this crate's error type and the protocol's error codes.

pub mod backoff;
pub mod client;
pub mod error;
pub mod failover;
pub mod liveness;
pub mod protocol;
pub mod reason;
pub mod reconnect;
pub mod report;

pub use backoff::{Backoff, BackoffConfig, Delay};
pub use error::{Error, ErrorCode};
pub use failover::Failover;
pub use liveness::{Action, Liveness, LivenessConfig};
pub use reason::{DisconnectReason, close_code};
pub use reconnect::Retry;
