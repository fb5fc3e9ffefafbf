//! What each WebSocket endpoint does with frames; the connection driver does the rest.
//!
//! An [`Endpoint`] sees only data: text and binary frames in, mailbox items out. The
//! driver ([`super::connection`]) owns everything common to all endpoints — liveness,
//! heartbeat conventions, limits, the close handshake — so each endpoint file is about
//! its protocol alone.

pub(crate) mod echo;
pub(crate) mod kind;
pub(crate) mod native;
pub(crate) mod ws4redis;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::auth::Identity;
use super::handover::state::EndpointState;
use super::mailbox::{Mailbox, Outbound};
use super::permissions::{self, Action, Forbidden};
use super::publication::{Encoding, Publication};
use super::slot::Slot;
use super::state::ServerState;

pub(crate) use kind::EndpointKind;

/// One endpoint's protocol. See the [module docs](self).
pub(crate) trait Endpoint: Send + Unpin + 'static {
    /// Which endpoint this is, for metrics.
    const KIND: EndpointKind;

    /// The django-websocket-redis facility of this connection: the magic heartbeat
    /// string may be sent only on a facility.
    fn facility(&self) -> Option<&str> {
        None
    }

    /// The connection is open: send greetings, subscribe.
    fn on_open(&mut self, context: &mut Context);

    /// Whether `text` is this endpoint's own heartbeat, which the message rate does
    /// not count.
    fn is_heartbeat(&self, _text: &str) -> bool {
        false
    }

    /// A text frame arrived (heartbeat conventions are already handled).
    fn on_text(&mut self, text: Utf8Bytes, context: &mut Context);

    /// A data message (`text`, or binary) was dropped for the message rate; one more
    /// is taken after `retry_after`. Endpoints without error frames say nothing.
    fn on_rate_limited(
        &mut self,
        _text: Option<&str>,
        _retry_after: Duration,
        _context: &mut Context,
    ) {
    }

    /// A binary frame arrived.
    fn on_binary(&mut self, data: Bytes, context: &mut Context);

    /// Turns an item of the mailbox into a frame, or skips it.
    fn on_outbound(&mut self, item: Outbound, context: &mut Context) -> Option<Outgoing>;

    /// The frame to send before the close at shutdown, if this endpoint has one.
    fn on_shutdown(&mut self, _reconnect_after_ms: u64) -> Option<Message> {
        None
    }

    /// The connection is over: release what it holds in the broker.
    fn on_close(&mut self, context: &mut Context);

    /// Whether requests of this connection wait for an answer from elsewhere (the
    /// broker): a live upgrade waits for them, since an answer delivered after the
    /// connection left would be lost.
    fn awaits_answers(&self) -> bool {
        false
    }

    /// What another process needs to take the connection over in a live upgrade;
    /// `None` for an endpoint whose connections are not handed over (they are closed
    /// with 1012 instead).
    fn hand_over(&self) -> Option<EndpointState> {
        None
    }
}

/// A frame made from a mailbox item.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A frame for this connection alone.
    Message(Message),
    /// A publication as `Encoding` sends it: every recipient shares its text and
    /// its compressed forms.
    Published(Arc<Publication>, Encoding),
}

impl From<Message> for Outgoing {
    fn from(message: Message) -> Self {
        Self::Message(message)
    }
}

/// What an endpoint may use while handling a frame: the server, the connection's
/// mailbox, and the queue of replies the driver writes ahead of mailbox items.
pub(crate) struct Context {
    /// The connection's place in the server, which holds the server, the client's
    /// address and the connection's mailbox, and is given back when the context is
    /// dropped.
    slot: Slot,
    /// Who the connection is; `None` when anonymous.
    pub(crate) identity: Option<Box<Identity>>,
    pub(crate) replies: VecDeque<Message>,
}

impl Context {
    /// The context of a connection that opened in `slot`.
    pub(crate) fn new(slot: Slot, identity: Option<Box<Identity>>) -> Self {
        Self {
            slot,
            identity,
            replies: VecDeque::new(),
        }
    }

    /// Configuration, broker and metrics of the server.
    pub(crate) fn server(&self) -> &Arc<ServerState> {
        self.slot.server()
    }

    /// This connection's mailbox: broker results come back here.
    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        self.slot.mailbox()
    }

    /// The address the connection comes from (`--trusted-proxy`).
    pub(crate) fn address(&self) -> IpAddr {
        self.slot.address()
    }

    /// The server, and the queue of replies to add to while reading it.
    pub(crate) fn server_and_replies(&mut self) -> (&ServerState, &mut VecDeque<Message>) {
        (self.slot.server(), &mut self.replies)
    }

    /// Logs the end of the connection, for `reason`.
    pub(crate) fn log_end(&self, reason: &dyn std::fmt::Display) {
        self.slot.log_end(reason);
    }

    /// Queues a frame to send back, ahead of mailbox items.
    pub(crate) fn reply(&mut self, message: Message) {
        self.replies.push_back(message);
    }

    /// The connection's user, as presence counts it; `None` when anonymous.
    pub(crate) fn user(&self) -> Option<Arc<str>> {
        self.identity
            .as_ref()
            .map(|identity| Arc::from(identity.user.as_str()))
    }

    /// Who publishes, as publish ids are scoped: the user, or an anonymous client's
    /// address.
    pub(crate) fn publisher(&self) -> Arc<str> {
        match &self.identity {
            Some(identity) => Arc::from(format!("user:{}", identity.user)),
            None => Arc::from(format!("addr:{}", self.address())),
        }
    }

    /// Whether this connection may do `action` on `channel` (docs/SECURITY.md).
    pub(crate) fn permit(&self, action: Action, channel: &str) -> Result<(), Forbidden> {
        permissions::check(
            &self.server().config.channels,
            self.identity.as_deref(),
            action,
            channel,
        )
    }
}
