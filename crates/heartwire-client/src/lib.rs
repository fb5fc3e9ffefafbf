//! The heartwire client: one logical connection to a list of endpoints that survives
//! dead servers, restarts and fail-overs.
//!
//! [`connect`] starts a task and returns a [`Client`] (the send handle, valid across
//! reconnects and cheap to clone) and [`Events`] (open, message, reconnecting, closed).
//!
//! - Liveness: the sans-IO [`Liveness`](heartwire_core::Liveness) machine, as on the
//!   server. The client pings after silence and treats `ping_interval + ping_timeout`
//!   of silence as a dead server; a heartwire server's `hello` sets both values,
//!   otherwise the configured ones apply, so any RFC 6455 server works.
//! - Reconnects follow [`heartwire_core::reconnect`] (which closes mean "do not come
//!   back", which carry a retry hint) and [`heartwire_core::backoff`] (full jitter).
//! - Fail-over and fail-back follow [`heartwire_core::failover`].
//! - What the caller sends while disconnected waits in a bounded outbox and goes out
//!   in order on the next connection; publishes to a heartwire server carry an `id`
//!   unique to this client and are sent again, with it, after a reconnect until
//!   acknowledged, so the server publishes each once.
//! - Subscriptions are restored on every connection to a heartwire server, each from
//!   the last position delivered (`resume`): missed messages are replayed once and in
//!   order, and what cannot be is an [`Event::Gap`].
//!
//! The files: [`config`] (settings), `attempt` (one handshake), `connection` (one
//! open socket), `driver` (the reconnect loop), `outbox` (state shared with the
//! handle), `unacked` (publishes awaiting their ack), `resume` (positions per
//! channel), [`event`] (what the caller hears).

mod attempt;
pub mod config;
mod connection;
mod driver;
mod error;
pub mod event;
mod outbox;
mod resume;
mod unacked;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

pub use config::{ClientConfig, TokenFuture, TokenPlacement, TokenProvider};
pub use error::Error;
pub use event::{ClosedReason, Event, GapReason, Incoming};

use outbox::{Outgoing, Publish, Shared};

/// Starts a client. It connects in the background; watch [`Events`] for its state.
///
/// Must be called inside a Tokio runtime.
pub fn connect(config: ClientConfig) -> Result<(Client, Events), Error> {
    config.validate()?;
    let shared = Arc::new(Shared::new(
        config.outbox_capacity,
        config.subscriptions.clone(),
    ));
    let (sender, receiver) = mpsc::channel(config.event_capacity);
    tokio::spawn(driver::run(config, Arc::clone(&shared), sender));
    Ok((Client { shared }, Events { receiver }))
}

/// The send handle of a client; stays valid across reconnects.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// Publishes `data` on `channel` of a heartwire server. Not sent to other servers.
    pub fn publish(&self, channel: &str, data: Value) -> Result<(), Error> {
        heartwire_core::protocol::validate_channel(channel)?;
        self.shared.push(Outgoing::Publish(Publish {
            id: self.shared.next_publish_id(),
            channel: channel.to_owned(),
            data,
        }))
    }

    /// Sends a text frame as it is.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.shared.push(Outgoing::Text(text.into()))
    }

    /// Sends a binary frame as it is.
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.shared.push(Outgoing::Binary(data.into()))
    }

    /// Subscribes to `channel` now and on every later connection.
    pub fn subscribe(&self, channel: &str) -> Result<(), Error> {
        heartwire_core::protocol::validate_channel(channel)?;
        self.shared.push(Outgoing::Subscribe(channel.to_owned()))?;
        self.shared.add_subscription(channel);
        Ok(())
    }

    /// Unsubscribes from `channel`, now and on later connections.
    pub fn unsubscribe(&self, channel: &str) -> Result<(), Error> {
        self.shared
            .push(Outgoing::Unsubscribe(channel.to_owned()))?;
        self.shared.remove_subscription(channel);
        Ok(())
    }

    /// The channels subscribed on every connection.
    pub fn subscriptions(&self) -> Vec<String> {
        self.shared.subscriptions()
    }

    /// The latest round-trip time measured from a Ping and its Pong.
    pub fn rtt(&self) -> Option<Duration> {
        self.shared.rtt()
    }

    /// How many messages wait in the outbox.
    pub fn queued(&self) -> usize {
        self.shared.queued_len()
    }

    /// Closes the client: what is queued goes out if a connection is open, then the
    /// connection closes with 1000 and [`Event::Closed`] follows.
    pub fn close(&self) {
        self.shared.stop.cancel();
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
