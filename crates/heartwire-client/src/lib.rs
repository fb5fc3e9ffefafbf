//! The heartwire client: one logical connection to a list of servers that survives
//! dead servers, restarts and fail-overs.
//!
//! [`connect`] starts a task and returns a [`Client`] (the send handle, valid across
//! reconnects and cheap to clone) and [`Events`] (open, message, reconnecting, closed).
//!
//! Every decision of an open connection is made by the sans-IO machine
//! [`heartwire_core::client`], which unit tests drive on synthetic time and the
//! server's tests drive against the server's own connection logic:
//!
//! - Liveness: the [`Liveness`](heartwire_core::Liveness) machine, as on the server.
//!   The client pings after silence and treats `ping_interval + ping_timeout` of
//!   silence as a dead server; a heartwire server's `hello` sets both values,
//!   otherwise the configured ones apply, so any RFC 6455 server works.
//! - Reconnects follow [`heartwire_core::reconnect`] (which closes mean "do not come
//!   back", which carry a retry hint) and [`heartwire_core::backoff`] (full jitter).
//! - Fail-over and fail-back follow [`heartwire_core::failover`].
//! - What the caller sends while disconnected waits in a bounded outbox and goes out
//!   in order on the next connection; publishes to a heartwire server carry an `id`
//!   unique to this client and are sent again, with it, after a reconnect until
//!   acknowledged, so the server publishes each once. [`Client::publish`] returns the
//!   id; [`Event::PublishRefused`] answers it when the server refuses it, and with
//!   [`ClientConfig::report_acks`] [`Event::Published`] when the server took it.
//! - A host name that does not resolve before any connection opened is a mistake, not
//!   an outage: that server is not tried again.
//! - Subscriptions are restored on every connection to a heartwire server, each from
//!   the last position delivered (`resume`): missed messages are replayed once and in
//!   order, and what cannot be is an [`Event::Gap`].
//! - Identity: when the server's `hello` says the connection's token expires, the
//!   token provider is asked for a fresh one before it does and the token goes out
//!   as `refresh` ([`heartwire_core::client::refresh_after`] says when); a close 4498
//!   (token expired) fetches a fresh token and reconnects at once, once per streak. A
//!   channel the identity may not use is an [`Event::Error`] and is no longer
//!   subscribed; presence answers, joins and leaves are events.
//!
//! The files: [`config`] (settings), `state` (what the handles and the task share),
//! `outbox` (the caller's bounded queue), `attempt` (one handshake), `driver` (the
//! reconnect loop), `connection` (one open socket: the select loop around the
//! machine, the writer task, the fail-back probe), [`event`] (what the caller hears),
//! [`tls`] (`wss://`: trusted roots, and a failed certificate check as one final
//! sentence).

mod attempt;
pub mod config;
mod connection;
mod driver;
mod error;
pub mod event;
mod outbox;
mod state;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

pub use config::{ClientConfig, TokenFuture, TokenPlacement, TokenProvider};
pub use error::Error;
pub use event::{ClosedReason, ErrorCode, Event, GapReason, Incoming, PresenceUser};
pub use tls::TlsRoots;

use heartwire_core::client::{Outgoing, Publish};
use state::ClientState;

/// Starts a client. It connects in the background; watch [`Events`] for its state.
///
/// Must be called inside a Tokio runtime.
pub fn connect(config: ClientConfig) -> Result<(Client, Events), Error> {
    config.validate()?;
    let state = Arc::new(ClientState::new(
        config.outbox_capacity,
        config.subscriptions.clone(),
    ));
    let (sender, receiver) = mpsc::channel(config.event_capacity);
    tokio::spawn(driver::run(config, Arc::clone(&state), sender));
    Ok((Client { state }, Events { receiver }))
}

/// The send handle of a client; stays valid across reconnects.
#[derive(Debug, Clone)]
pub struct Client {
    state: Arc<ClientState>,
}

impl Client {
    /// Publishes `data` on `channel` of a heartwire server and returns the publish's
    /// id, which [`Event::PublishRefused`] (and, with
    /// [`ClientConfig::report_acks`], [`Event::Published`]) carries. Not sent to other
    /// servers.
    pub fn publish(&self, channel: &str, data: Value) -> Result<String, Error> {
        heartwire_core::protocol::validate_channel(channel)?;
        let id = self.state.next_publish_id();
        self.state.send(Outgoing::Publish(Publish {
            id: id.clone(),
            channel: channel.to_owned(),
            data,
        }))?;
        Ok(id)
    }

    /// Sends a text frame as it is.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.state.send(Outgoing::Text(text.into()))
    }

    /// Sends a binary frame as it is.
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.state.send(Outgoing::Binary(data.into()))
    }

    /// Subscribes to `channel` now and on every later connection.
    pub fn subscribe(&self, channel: &str) -> Result<(), Error> {
        heartwire_core::protocol::validate_channel(channel)?;
        self.state.send(Outgoing::Subscribe(channel.to_owned()))?;
        self.state.add_subscription(channel);
        Ok(())
    }

    /// Unsubscribes from `channel`, now and on later connections.
    pub fn unsubscribe(&self, channel: &str) -> Result<(), Error> {
        self.state.send(Outgoing::Unsubscribe(channel.to_owned()))?;
        self.state.remove_subscription(channel);
        Ok(())
    }

    /// Asks a heartwire server who is subscribed to `channel`; the answer is an
    /// [`Event::Presence`].
    pub fn presence(&self, channel: &str) -> Result<(), Error> {
        heartwire_core::protocol::validate_channel(channel)?;
        self.state.send(Outgoing::Presence(channel.to_owned()))
    }

    /// The channels subscribed on every connection.
    pub fn subscriptions(&self) -> Vec<String> {
        self.state.subscriptions()
    }

    /// The latest round-trip time measured from a Ping and its Pong.
    pub fn rtt(&self) -> Option<Duration> {
        self.state.rtt()
    }

    /// How many messages wait in the outbox (publishes sent and awaiting their ack
    /// are not counted).
    pub fn queued(&self) -> usize {
        self.state.outbox.len()
    }

    /// Closes the client: what is queued goes out if a connection is open, then the
    /// connection closes with 1000 and [`Event::Closed`] follows.
    pub fn close(&self) {
        self.state.stop.cancel();
    }
}

/// The events of a client, in order. Ends after [`Event::Closed`].
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` after [`Event::Closed`].
    pub async fn next(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }
}
