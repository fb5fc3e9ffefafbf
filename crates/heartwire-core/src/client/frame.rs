//! What crosses the wire between a client and its server, in the machine's own terms.
//!
//! The machine speaks no WebSocket library's types: its driver turns the library's
//! messages into [`Frame`]s on the way in and back on the way out.

use bytes::Bytes;

/// One WebSocket frame (a whole message for text and binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A protocol Ping with its payload.
    Ping(Bytes),
    /// A protocol Pong with its payload.
    Pong(Bytes),
    /// A close frame; `code` is `None` for a close frame without a status.
    Close {
        /// The close code.
        code: Option<u16>,
        /// The close reason text (empty when there is none).
        reason: String,
    },
}
