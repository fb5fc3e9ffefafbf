//! `/echo`: every data frame goes back as it came (conformance runs, benchmarks).

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Context, Endpoint, EndpointKind, Outgoing};
use crate::handover::state::EndpointState;
use crate::mailbox::Outbound;

/// The echo endpoint.
pub(crate) struct Echo;

impl Endpoint for Echo {
    const KIND: EndpointKind = EndpointKind::Echo;

    fn on_open(&mut self, _context: &mut Context) {}

    fn on_text(&mut self, text: Utf8Bytes, context: &mut Context) {
        context.reply(Message::Text(text));
    }

    fn on_binary(&mut self, data: Bytes, context: &mut Context) {
        context.reply(Message::Binary(data));
    }

    fn on_outbound(&mut self, _item: Outbound, _context: &mut Context) -> Option<Outgoing> {
        None
    }

    fn on_close(&mut self, _context: &mut Context) {}

    fn hand_over(&self) -> Option<EndpointState> {
        Some(EndpointState::Echo)
    }
}
