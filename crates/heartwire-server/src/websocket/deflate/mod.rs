//! permessage-deflate (RFC 7692): what is agreed with a client at the handshake
//! ([`offer`]), and how one message is compressed or inflated ([`codec`]).
//!
//! The server agrees to no context takeover in either direction, so a connection
//! holds no compression state at all between messages; docs/PROTOCOL.md says what
//! is negotiated and why.

mod codec;
mod offer;

pub(crate) use codec::{deflate, inflate};
pub(crate) use offer::{Agreement, negotiate};
