//! Who a connection is: the [`Identity`] decided in the HTTP handler before the
//! upgrade, and carried by the connection for as long as it lives.

use std::time::SystemTime;

/// The identity of a connection that was identified.
///
/// An anonymous connection carries none (`Option<Box<Identity>>` is one word), so
/// identifying costs nothing to connections that are not identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user: the JWT's `sub`, or the connect hook's `user`.
    pub user: String,
    /// The user's groups: the JWT's `groups`, or the connect hook's `groups`.
    pub groups: Vec<String>,
    /// The value of the session cookie (`--session-cookie`), when the request had one.
    pub session_key: Option<String>,
    /// When the identity stops being valid unless refreshed.
    pub expires_at: Option<SystemTime>,
    /// Channel patterns this identity may use beyond the rules (the JWT's `channels`).
    pub channels: Vec<String>,
}
