//! The server's WebSocket layer: the opening handshake, frame decoding and the
//! transport of one connection.
//!
//! tungstenite parses and formats frame headers and derives the handshake key; this
//! layer owns the buffers, so that an idle connection holds none. tungstenite's own
//! `WebSocket` keeps a read buffer (4 KiB at least, zero-filled before each read) for
//! a connection's whole life, which was more than half of an idle connection's memory.
//! Here each worker thread reads into one shared buffer, frames are decoded where they
//! lie, and a connection keeps bytes only for a frame that has not fully arrived or
//! for what the kernel has not taken yet.
//!
//! permessage-deflate (RFC 7692) is negotiated in the handshake and applied by the
//! reader and the socket; `deflate` holds the negotiation and the compressor.

pub(crate) mod deflate;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handshake;
mod reader;
mod socket;
mod upgrading;

pub(crate) use handshake::{Settings, Upgrade};
pub(crate) use socket::{Socket, SocketState};
