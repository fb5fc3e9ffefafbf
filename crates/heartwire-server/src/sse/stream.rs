//! The body of one `/sse` response: the connection's mailbox turned into events,
//! with heartbeats in the silences, until the client goes, the token expires, the
//! client stops reading, or the server shuts down.
//!
//! It is polled by the HTTP connection as it writes: each poll takes what the mailbox
//! holds (a bounded batch) and hands it on as one chunk. A client that does not read
//! is not polled, so its mailbox fills up to `--outbound-queue`, its backlog is
//! dropped as a WebSocket's would be, and the stream's watchdog cuts its connection
//! (`watchdog`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use heartwire_core::DisconnectReason;
use heartwire_core::protocol::Position;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::DropGuard;

use super::event::{self, HEARTBEAT};
use super::event_id::Positions;
use super::watchdog;
use crate::listener::Cut;
use crate::mailbox::{Mailbox, Outbound, Signal};
use crate::slot::Slot;
use crate::state::ServerState;

/// Mailbox items written per chunk, so that one busy stream cannot hold its HTTP
/// connection's task for long.
const BATCH: usize = 64;

/// The event stream of one `/sse` request. See the [module docs](self).
pub(crate) struct EventStream {
    server: Arc<ServerState>,
    mailbox: Arc<Mailbox>,
    channels: Vec<Arc<str>>,
    positions: Positions,
    /// What is written before anything else: the `retry:` field.
    greeting: Option<String>,
    heartbeat: Pin<Box<Sleep>>,
    /// When the identity's token runs out, if it does.
    expiry: Option<Pin<Box<Sleep>>>,
    /// Why the stream ended, once it did; its last chunk may still be on its way.
    ended: Option<DisconnectReason>,
    /// Held for its `Drop`: the watchdog stops when the stream ends.
    _watchdog: DropGuard,
    /// Logs the stream's end; held for its `Drop`, the stream counts against
    /// `--max-connections` while it lives.
    slot: Slot,
}

impl EventStream {
    /// A stream of `channels`, already subscribed through `mailbox`, from `positions`,
    /// on the connection that `cut` drops.
    pub(crate) fn new(
        slot: Slot,
        cut: Cut,
        mailbox: Arc<Mailbox>,
        channels: Vec<Arc<str>>,
        positions: Positions,
        retry_ms: u64,
        expires_in: Option<Duration>,
    ) -> Self {
        let server = slot.server().clone();
        let mut greeting = String::new();
        event::retry(&mut greeting, retry_ms);
        let heartbeat_every = server.config.liveness.ping_interval;
        let patience = server.config.liveness.close_timeout;
        Self {
            _watchdog: watchdog::watch(mailbox.clone(), cut, patience),
            heartbeat: Box::pin(tokio::time::sleep(heartbeat_every)),
            expiry: expires_in.map(|left| Box::pin(tokio::time::sleep(left))),
            server,
            mailbox,
            channels,
            positions,
            greeting: Some(greeting),
            ended: None,
            slot,
        }
    }

    /// Ends the stream for `reason` after the chunk being returned.
    fn end(&mut self, reason: DisconnectReason) {
        self.ended = Some(reason);
    }

    /// Appends the event for `item`, if it makes one.
    fn write(&mut self, item: Outbound, out: &mut String) {
        match item {
            Outbound::Message(message) => {
                let Some(index) = self.index(&message.channel) else {
                    return;
                };
                self.positions.advance(index, message.seq);
                let id = self.positions.encode();
                event::event(out, None, &id, &message.native_frame());
                let metrics = self
                    .server
                    .metrics
                    .endpoint(crate::endpoint::EndpointKind::Sse);
                metrics.messages_out.increment(1);
            }
            Outbound::Subscribed {
                channel,
                seq,
                epoch,
                recovered,
            } => {
                let Some(index) = self.index(&channel) else {
                    return;
                };
                // When the missed messages follow, the position stays where the client
                // was until they are written; otherwise it is the channel's latest.
                if recovered != Some(true) {
                    let epoch = epoch.to_string();
                    self.positions.set(index, Position { epoch, seq });
                }
                let data = serde_json::json!({
                    "channel": &*channel,
                    "epoch": &*epoch,
                    "seq": seq,
                    "recovered": recovered,
                });
                let kind = if recovered == Some(false) {
                    "gap"
                } else {
                    "subscribed"
                };
                let id = self.positions.encode();
                event::event(out, Some(kind), &id, &data.to_string());
            }
            Outbound::Error { code, reason, .. } => {
                let data = serde_json::json!({ "code": code, "reason": reason });
                let id = self.positions.encode();
                event::event(out, Some("failed"), &id, &data.to_string());
            }
            Outbound::Unsubscribe { channel } => {
                // The application ended it through the server API.
                if self.index(&channel).is_none() {
                    return;
                }
                self.server.broker.unsubscribe(&channel, self.mailbox.id());
                let data = serde_json::json!({ "channel": &*channel });
                let id = self.positions.encode();
                event::event(out, Some("unsubscribed"), &id, &data.to_string());
            }
            // A stream only reads: it publishes nothing, asks for no presence and
            // sends no refresh.
            Outbound::Ack { .. }
            | Outbound::Presence { .. }
            | Outbound::PresenceChange { .. }
            | Outbound::Refreshed(_) => {}
        }
    }

    fn index(&self, channel: &str) -> Option<usize> {
        self.channels.iter().position(|held| **held == *channel)
    }

    /// The chunk to write now, if any; sets `ended` when the stream is over.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.mailbox.register(cx);
        let mut out = self.greeting.take().unwrap_or_default();
        match self.mailbox.signal() {
            Some(Signal::SlowConsumer) => {
                // Nothing more can be written to a client that does not read.
                self.end(DisconnectReason::SlowConsumer);
                return Poll::Ready(None);
            }
            Some(Signal::Shutdown { reconnect_after_ms }) => {
                let base = super::millis(self.server.config.sse.sse_retry);
                event::retry(&mut out, base + reconnect_after_ms);
                let data = serde_json::json!({
                    "after_ms": reconnect_after_ms,
                    "reason": "server restarting",
                });
                let id = self.positions.encode();
                event::event(&mut out, Some("reconnect"), &id, &data.to_string());
                self.end(DisconnectReason::ServerShutdown);
                return Poll::Ready(Some(out));
            }
            Some(Signal::Disconnect { code, reason }) => {
                // The application disconnected it through the server API; the code
                // says whether the client should come back, as a close code does.
                let data = serde_json::json!({ "code": code, "reason": &*reason });
                let id = self.positions.encode();
                event::event(&mut out, Some("disconnected"), &id, &data.to_string());
                self.end(DisconnectReason::ServerDisconnect { code });
                return Poll::Ready(Some(out));
            }
            None => {}
        }
        if let Some(expiry) = &mut self.expiry
            && expiry.as_mut().poll(cx).is_ready()
        {
            let data = serde_json::json!({
                "reason": "the token expired; open the stream again with a fresh token",
            });
            let id = self.positions.encode();
            event::event(&mut out, Some("expired"), &id, &data.to_string());
            self.end(DisconnectReason::TokenExpired);
            return Poll::Ready(Some(out));
        }
        for _ in 0..BATCH {
            let Some(item) = self.mailbox.take() else {
                break;
            };
            self.write(item, &mut out);
        }
        if out.is_empty() && self.heartbeat.as_mut().poll(cx).is_ready() {
            out.push_str(HEARTBEAT);
        }
        if out.is_empty() {
            return Poll::Pending;
        }
        let next = Instant::now() + self.server.config.liveness.ping_interval;
        self.heartbeat.as_mut().reset(next);
        Poll::Ready(Some(out))
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended.is_some() {
            return Poll::Ready(None);
        }
        self.poll_chunk(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Bytes::from(chunk))))
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        for channel in &self.channels {
            self.server.broker.unsubscribe(channel, self.mailbox.id());
        }
        // A stream that ended without its last poll was cut by its watchdog.
        let reason = match (self.ended.take(), self.mailbox.signal()) {
            (Some(reason), _) => reason,
            (None, Some(Signal::SlowConsumer)) => DisconnectReason::SlowConsumer,
            (None, Some(Signal::Shutdown { .. })) => DisconnectReason::ServerShutdown,
            (None, Some(Signal::Disconnect { code, .. })) => {
                DisconnectReason::ServerDisconnect { code }
            }
            (None, None) => DisconnectReason::PeerClosed {
                code: None,
                reason: "the client closed the stream".into(),
            },
        };
        self.server.metrics.disconnected(&reason);
        self.slot.log_end(&reason);
    }
}
