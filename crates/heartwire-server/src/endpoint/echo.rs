//! `/echo`: every data frame goes back as it came (conformance runs, benchmarks).

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Endpoint, Session};
use crate::mailbox::Outbound;
use crate::metrics::Endpoint as EndpointKind;

/// The echo endpoint.
pub(crate) struct Echo;

impl Endpoint for Echo {
    const KIND: EndpointKind = EndpointKind::Echo;

    fn on_open(&mut self, _session: &mut Session) {}

    fn on_text(&mut self, text: Utf8Bytes, session: &mut Session) {
        session.reply(Message::Text(text));
    }

    fn on_binary(&mut self, data: Bytes, session: &mut Session) {
        session.reply(Message::Binary(data));
    }

    fn on_outbound(&mut self, _item: Outbound, _session: &Session) -> Option<Message> {
        None
    }

    fn on_close(&mut self, _session: &mut Session) {}
}
