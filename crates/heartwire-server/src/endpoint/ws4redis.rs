//! `/ws/{facility}`: the conventions of django-websocket-redis (ws4redis).
//!
//! Raw text, no envelope. The query flags choose what the socket does:
//! `subscribe-broadcast` (receive the facility's messages, starting with its last
//! one), `publish-broadcast` (every text sent is published), `echo` (receive one's own
//! messages too). The facility `F` is the channel `broadcast:F`.

use std::sync::Arc;

use bytes::Bytes;
use heartwire_core::protocol::validate_channel;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Context, Endpoint, EndpointKind};
use crate::broker::{PublishRequest, SubscribeRequest};
use crate::mailbox::Outbound;
use crate::publication::Payload;

/// A ws4redis socket: its facility's channel and the flags of its URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ws4Redis {
    channel: Arc<str>,
    subscribe: bool,
    publish: bool,
    echo: bool,
}

impl Ws4Redis {
    /// Reads the facility and the query string, or says what is wrong with them.
    pub(crate) fn from_request(facility: &str, query: Option<&str>) -> Result<Self, String> {
        let channel = format!("broadcast:{facility}");
        validate_channel(&channel).map_err(|_| {
            format!("invalid facility {facility:?}: use ASCII letters, digits or -_.:@/")
        })?;
        let mut socket = Self {
            channel: Arc::from(channel),
            subscribe: false,
            publish: false,
            echo: false,
        };
        for flag in query
            .unwrap_or("")
            .split('&')
            .filter(|flag| !flag.is_empty())
        {
            let name = flag.split_once('=').map_or(flag, |(name, _)| name);
            match name {
                "subscribe-broadcast" => socket.subscribe = true,
                "publish-broadcast" => socket.publish = true,
                "echo" => socket.echo = true,
                "subscribe-user" | "publish-user" | "subscribe-group" | "publish-group"
                | "subscribe-session" | "publish-session" => {
                    return Err(format!(
                        "{name} needs the caller's Django identity, which heartwire does not have; use the broadcast flags"
                    ));
                }
                // Unknown flags are ignored, as django-websocket-redis does.
                _ => {}
            }
        }
        Ok(socket)
    }
}

impl Endpoint for Ws4Redis {
    const KIND: EndpointKind = EndpointKind::Ws4Redis;
    const SENDS_HEARTBEAT_TEXT: bool = true;

    fn on_open(&mut self, context: &mut Context) {
        if self.subscribe {
            context.server.broker.subscribe(SubscribeRequest {
                channel: self.channel.clone(),
                subscriber: context.mailbox.clone(),
                with_retained: true,
                since: None,
                presence: context.server.config.has_presence(&self.channel),
            });
        }
    }

    fn on_text(&mut self, text: Utf8Bytes, context: &mut Context) {
        // Without publish-broadcast the text goes nowhere, as in django-websocket-redis.
        if self.publish {
            context.server.broker.publish(PublishRequest {
                channel: self.channel.clone(),
                payload: Payload::Text(text.as_str().into()),
                retain: true,
                origin: Some(context.mailbox.clone()),
                ack_id: None,
            });
        }
    }

    fn on_binary(&mut self, _data: Bytes, _context: &mut Context) {}

    fn on_outbound(&mut self, item: Outbound, context: &mut Context) -> Option<Message> {
        match item {
            Outbound::Message(message)
                if self.echo || message.origin != Some(context.mailbox.id()) =>
            {
                Some(Message::Text(message.text_frame()))
            }
            _ => None,
        }
    }

    fn on_close(&mut self, context: &mut Context) {
        if self.subscribe {
            context
                .server
                .broker
                .unsubscribe(&self.channel, context.mailbox.id());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_query_flags() {
        let socket =
            Ws4Redis::from_request("chat", Some("subscribe-broadcast&publish-broadcast&echo"))
                .unwrap();
        assert_eq!(&*socket.channel, "broadcast:chat");
        assert!(socket.subscribe && socket.publish && socket.echo);
        let quiet = Ws4Redis::from_request("chat", Some("subscribe-broadcast")).unwrap();
        assert!(quiet.subscribe && !quiet.publish && !quiet.echo);
        let none = Ws4Redis::from_request("chat", None).unwrap();
        assert!(!none.subscribe && !none.publish);
    }

    #[test]
    fn refuses_identity_facilities_and_bad_names() {
        let err = Ws4Redis::from_request("chat", Some("subscribe-user")).unwrap_err();
        assert!(err.contains("Django identity"), "{err}");
        assert!(Ws4Redis::from_request("a b", None).is_err());
    }
}
