//! The driver of one WebSocket connection: socket, liveness machine, mailbox, timer.
//!
//! A connection is one task that polls, in this order, until the liveness machine says
//! it is over:
//! 1. everything the socket holds (so a Pong waiting in the buffer counts before any
//!    deadline is judged), answering heartbeat conventions and passing data to the
//!    [`Endpoint`];
//! 2. the mailbox's signals (slow consumer, shutdown), which start a close;
//! 3. the liveness deadline and the actions it yields;
//! 4. writes: replies first, then mailbox items, only as fast as the socket takes
//!    them. A client that stops reading fills its mailbox and is closed as a slow
//!    consumer; its backlog is dropped, not kept.
//!
//! Reading pauses while too many replies wait to be written, so a client that floods
//! requests without reading the answers is slowed by TCP, not buffered for.
//!
//! The timer is re-armed lazily: traffic only moves the deadline later, so the timer
//! fires at the old deadline, finds nothing due, and is set to the new one. A busy
//! connection thus costs no timer work per frame.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{Sink, Stream};
use heartwire_core::liveness::Action;
use heartwire_core::{DisconnectReason, Liveness};
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};

use super::endpoint::{Endpoint, Session};
use super::mailbox::Signal;
use super::registry::Slot;

/// Replies that may wait to be written before reading pauses.
const REPLY_HIGH_WATER: usize = 32;
/// Frames read per wake-up before the task yields to others.
const READ_BUDGET: usize = 64;
/// Rounds of the poll loop per wake-up before the task yields to others.
const ROUND_BUDGET: usize = 8;

/// Runs a connection until it ends, then releases everything it held.
pub(crate) async fn run<E: Endpoint>(socket: WebSocket, endpoint: E, mut slot: Slot) {
    let server = slot.server().clone();
    let mailbox = slot.open(E::KIND);
    let now = Instant::now();
    let liveness = Liveness::new(server.config.liveness(E::SENDS_HEARTBEAT_TEXT), now);
    let mut connection = Connection {
        timer: Box::pin(tokio::time::sleep_until(now.into())),
        armed: None,
        socket,
        reading: true,
        unflushed: false,
        endpoint,
        liveness,
        session: Session {
            server,
            mailbox,
            replies: VecDeque::new(),
        },
        ended: None,
    };
    connection.endpoint.on_open(&mut connection.session);
    let reason = poll_fn(|cx| connection.poll_drive(cx)).await;
    connection.endpoint.on_close(&mut connection.session);
    connection.session.server.metrics.disconnected(&reason);
    tracing::debug!(connection = connection.session.mailbox.id(), %reason, "connection ended");
    drop(slot);
}

struct Connection<E> {
    socket: WebSocket,
    /// Whether the socket may still yield frames.
    reading: bool,
    /// Whether frames were handed to the socket and not yet flushed.
    unflushed: bool,
    endpoint: E,
    liveness: Liveness,
    timer: Pin<Box<Sleep>>,
    /// The deadline the timer is set to, while it has not fired.
    armed: Option<Instant>,
    session: Session,
    /// Set once the liveness machine has said `Drop`.
    ended: Option<DisconnectReason>,
}

impl<E: Endpoint> Connection<E> {
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        self.session.mailbox.register(cx);
        for _ in 0..ROUND_BUDGET {
            let now = Instant::now();
            let read_budget_left = self.poll_read(cx, now);
            self.check_signals(now);
            if self
                .liveness
                .poll_timeout()
                .is_some_and(|deadline| deadline <= now)
            {
                self.liveness.handle_timeout(now);
            }
            self.take_actions();
            self.poll_write(cx);
            if let Some(reason) = self.ended.take() {
                return Poll::Ready(reason);
            }
            if self.liveness.is_over() {
                continue;
            }
            if !self.arm_timer(cx) {
                continue;
            }
            if !read_budget_left {
                break;
            }
            return Poll::Pending;
        }
        // Out of budget with work left: let other connections run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads what the socket holds. Returns `false` when the read budget ran out.
    fn poll_read(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        for _ in 0..READ_BUDGET {
            let backlog = self.session.replies.len();
            if !self.reading || self.liveness.is_over() || backlog >= REPLY_HIGH_WATER {
                return true;
            }
            match Pin::new(&mut self.socket).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => self.on_message(message, now),
                Poll::Ready(Some(Err(err))) => {
                    self.reading = false;
                    self.on_read_error(err, now);
                }
                Poll::Ready(None) => {
                    self.reading = false;
                    self.liveness
                        .handle_transport_end(DisconnectReason::Transport(
                            "connection closed without a close frame".into(),
                        ));
                }
                Poll::Pending => return true,
            }
        }
        false
    }

    fn on_message(&mut self, message: Message, now: Instant) {
        let metrics = &self.session.server.metrics;
        match message {
            Message::Text(text) => {
                self.liveness.handle_frame(now);
                metrics.endpoint(E::KIND).messages_in.increment(1);
                let config = &self.session.server.config;
                if config.heartbeat_text.as_deref() == Some(text.as_str()) {
                    metrics.client_heartbeats.increment(1);
                } else if let Some(rule) = config
                    .heartbeat_replies
                    .iter()
                    .find(|rule| rule.inbound == text.as_str())
                {
                    metrics.client_heartbeats.increment(1);
                    let reply = Message::Text(Utf8Bytes::from(rule.outbound.as_str()));
                    self.session.reply(reply);
                } else {
                    self.endpoint.on_text(text, &mut self.session);
                }
            }
            Message::Binary(data) => {
                self.liveness.handle_frame(now);
                metrics.endpoint(E::KIND).messages_in.increment(1);
                self.endpoint.on_binary(data, &mut self.session);
            }
            // The WebSocket layer answers Pings itself.
            Message::Ping(_) => self.liveness.handle_frame(now),
            Message::Pong(payload) => {
                metrics.pongs_received.increment(1);
                if let Some(rtt) = self.liveness.handle_pong(now, &payload) {
                    metrics.rtt(rtt);
                }
            }
            Message::Close(frame) => {
                let (code, reason) = match &frame {
                    Some(frame) => (Some(frame.code), frame.reason.as_str()),
                    None => (None, ""),
                };
                self.liveness.handle_close_received(now, code, reason);
            }
        }
    }

    fn on_read_error(&mut self, err: axum::Error, now: Instant) {
        let reason = match err.into_inner().downcast::<WsError>() {
            Ok(err) => match *err {
                WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                    DisconnectReason::MessageTooBig
                }
                WsError::Utf8(_) => DisconnectReason::InvalidUtf8,
                WsError::Protocol(err) => DisconnectReason::ProtocolError(err.to_string()),
                other => {
                    self.liveness
                        .handle_transport_end(DisconnectReason::Transport(other.to_string()));
                    return;
                }
            },
            Err(other) => {
                self.liveness
                    .handle_transport_end(DisconnectReason::Transport(other.to_string()));
                return;
            }
        };
        self.start_close(reason, None, now);
    }

    fn check_signals(&mut self, now: Instant) {
        if self.liveness.is_closing() || self.liveness.is_over() {
            return;
        }
        match self.session.mailbox.signal() {
            None => {}
            Some(Signal::SlowConsumer) => {
                self.start_close(DisconnectReason::SlowConsumer, None, now)
            }
            Some(Signal::Shutdown { reconnect_after_ms }) => {
                if let Some(hint) = self.endpoint.on_shutdown(reconnect_after_ms) {
                    self.session.reply(hint);
                }
                let text = format!("server restarting; retry after {reconnect_after_ms} ms");
                self.start_close(DisconnectReason::ServerShutdown, Some(text), now);
            }
        }
    }

    /// Sends a close frame for `reason` (with `text`, or the reason's own words).
    fn start_close(&mut self, reason: DisconnectReason, text: Option<String>, now: Instant) {
        let Some(code) = reason.close_code() else {
            self.liveness.handle_transport_end(reason);
            return;
        };
        let text = text.unwrap_or_else(|| reason.to_string());
        // RFC 6455 allows 123 bytes of reason.
        let text = truncate_utf8(&text, 123);
        if reason == DisconnectReason::SlowConsumer {
            // What the client did not read is dropped, not kept for it.
            self.session.replies.clear();
        }
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(text),
        };
        self.session.reply(Message::Close(Some(frame)));
        self.liveness.handle_close_sent(now, reason);
    }

    fn take_actions(&mut self) {
        let metrics = &self.session.server.metrics;
        while let Some(action) = self.liveness.poll_action() {
            match action {
                Action::SendPing(payload) => {
                    metrics.pings_sent.increment(1);
                    self.session
                        .replies
                        .push_back(Message::Ping(Bytes::copy_from_slice(&payload)));
                }
                Action::SendHeartbeat => {
                    if let Some(text) = &self.session.server.config.heartbeat_text {
                        metrics.heartbeat_texts_sent.increment(1);
                        let beat = Message::Text(Utf8Bytes::from(text.as_str()));
                        self.session.replies.push_back(beat);
                    }
                }
                Action::SendClose { code, reason } => {
                    let frame = CloseFrame {
                        code,
                        reason: Utf8Bytes::from_static(reason),
                    };
                    self.session.replies.push_back(Message::Close(Some(frame)));
                }
                Action::Drop(reason) => self.ended = Some(reason),
            }
        }
    }

    /// Hands replies, then mailbox items, to the socket while it takes them, and
    /// flushes.
    fn poll_write(&mut self, cx: &mut Context<'_>) {
        loop {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return self.on_write_error(err),
                Poll::Pending => break,
            }
            let message = if let Some(reply) = self.session.replies.pop_front() {
                reply
            } else if self.liveness.is_closing() || self.liveness.is_over() {
                break;
            } else if let Some(item) = self.session.mailbox.take() {
                match self.endpoint.on_outbound(item, &self.session) {
                    Some(message) => message,
                    None => continue,
                }
            } else {
                break;
            };
            if matches!(message, Message::Text(_) | Message::Binary(_)) {
                self.session
                    .server
                    .metrics
                    .endpoint(E::KIND)
                    .messages_out
                    .increment(1);
            }
            if let Err(err) = Pin::new(&mut self.socket).start_send(message) {
                return self.on_write_error(err);
            }
            self.unflushed = true;
        }
        if self.unflushed {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(err)) => return self.on_write_error(err),
                Poll::Pending => {}
            }
        }
        // A close after a read error cannot be answered: once it is out, we are done.
        let written = self.session.replies.is_empty() && !self.unflushed;
        if !self.reading && self.liveness.is_closing() && written {
            self.liveness
                .handle_transport_end(DisconnectReason::Transport(
                    "closed after a read error".into(),
                ));
            self.take_actions();
        }
    }

    fn on_write_error(&mut self, err: axum::Error) {
        self.session.replies.clear();
        self.unflushed = false;
        self.liveness
            .handle_transport_end(DisconnectReason::Transport(err.to_string()));
    }

    /// Sets the timer to the liveness deadline and polls it. Returns `false` when it
    /// has already fired, so the caller goes round again.
    fn arm_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.liveness.poll_timeout() else {
            return true;
        };
        if self.armed.is_none_or(|armed| deadline < armed) {
            self.timer.as_mut().reset(deadline.into());
            self.armed = Some(deadline);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.armed = None;
            return false;
        }
        true
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate_utf8;

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        assert_eq!(truncate_utf8("short", 123), "short");
        let long = "é".repeat(100);
        let cut = truncate_utf8(&long, 123);
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
