//! Entry points for the fuzz targets in `fuzz/`, compiled only with the hidden
//! `fuzzing` feature.
//!
//! They make the frame decoder, the upgrade checks and permessage-deflate (the
//! negotiation of offers, the bounded inflater) reachable from outside the crate
//! without making them part of its API: each is a thin wrapper over the code the
//! server runs, and nothing here is stable.

use std::ops::ControlFlow;

use axum::Router;
use heartwire_core::DisconnectReason;

pub use tokio_tungstenite::tungstenite::Message;

use super::deflate;
use super::handshake::{Settings, Upgrade};
use super::reader::Reader;

/// The server's decoder of a client's frames (RFC 6455), as a connection drives it.
#[derive(Debug)]
pub struct FrameDecoder(Reader);

impl FrameDecoder {
    /// A decoder that refuses messages over `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self(Reader::new(max_message_size, false))
    }

    /// A decoder with permessage-deflate agreed: RSV1 marks a compressed message,
    /// inflated to at most `max_message_size` bytes.
    pub fn with_deflate(max_message_size: usize) -> Self {
        Self(Reader::new(max_message_size, true))
    }

    /// A decoder that starts from bytes that arrived with the upgrade request.
    pub fn with_input(max_message_size: usize, input: &[u8]) -> Self {
        Self(Reader::with_input(max_message_size, false, input))
    }

    /// Decodes what was kept and `input`, passing each message to `on_message`, which
    /// may stop decoding; the error is the reason the server would close with.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        on_message: &mut impl FnMut(Message) -> ControlFlow<()>,
    ) -> Result<(), DisconnectReason> {
        self.0.feed(input, on_message)
    }

    /// Whether kept bytes may hold complete frames (decoding was stopped).
    pub fn has_undecoded(&self) -> bool {
        self.0.has_undecoded()
    }

    /// The memory the decoder holds between reads, in bytes of capacity.
    pub fn held_bytes(&self) -> usize {
        self.0.held_bytes()
    }
}

/// The server's answer to the permessage-deflate offers in `headers` (the values of
/// every `Sec-WebSocket-Extensions` header): its response header and window size, or
/// `None` when it declines them all.
pub fn negotiate_deflate<'a>(headers: impl IntoIterator<Item = &'a [u8]>) -> Option<(String, u8)> {
    let (agreement, _declined) = deflate::negotiate(headers);
    agreement.map(|agreement| (agreement.response(), agreement.window_bits))
}

/// One message compressed as the server sends it, with a window of `window_bits`.
pub fn deflate_message(data: &[u8], window_bits: u8) -> Vec<u8> {
    deflate::deflate(data, window_bits)
}

/// One compressed message inflated as the server reads it: the error is the reason
/// it would close with (1009 past `limit`).
pub fn inflate_message(compressed: &[u8], limit: usize) -> Result<Vec<u8>, DisconnectReason> {
    deflate::inflate(compressed, limit)
}

/// A router that runs the server's upgrade extractor on every request, whatever its
/// path, and answers as a WebSocket endpoint does: 101 when the extractor accepts
/// (the upgraded connection is then dropped), else its refusal.
pub fn upgrade_router() -> Router {
    Router::new().fallback(|upgrade: Upgrade| async move {
        let settings = Settings {
            max_message_size: usize::MAX,
            compression_min_size: Some(0),
        };
        upgrade.on_upgrade(settings, |_socket| std::future::ready(()))
    })
}
