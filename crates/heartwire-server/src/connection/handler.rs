//! What one connection does with frames, signals and deadlines: everything but the
//! socket and the timer, which the driver in [`super`] owns.
//!
//! The `Handler` reads no clock (time comes in as `now`) and writes into any
//! [`FrameSink`]: the socket in the driver, a list in the tests of `pair`, which step
//! a client's connection machine against it on synthetic time.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use heartwire_core::liveness::{Action, LivenessSnapshot};
use heartwire_core::{DisconnectReason, Liveness};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::admission::{MessageRate, Verdict};
use crate::auth::expiry;
use crate::endpoint::{Context, Endpoint, Outgoing};
use crate::handover::state::RateState;
use crate::mailbox::Signal;
use crate::websocket::Socket;

use super::rare::RareBox;

/// What a connection handed over by another process brings besides its endpoint
/// and its context.
pub(super) struct Resumed {
    pub(super) liveness: LivenessSnapshot,
    pub(super) incomplete_for: Option<Duration>,
    pub(super) rate: Option<RateState>,
}

/// What a connection does with messages, signals and deadlines; everything but the
/// socket and the timer. It reads no clock: time comes in as `now`, and frames go
/// out into a [`FrameSink`].
pub(super) struct Handler<E> {
    /// Whether the socket may still yield frames.
    pub(super) reading: bool,
    pub(super) endpoint: E,
    pub(super) liveness: Liveness,
    pub(super) context: Context,
    /// How fast the client may send (`--message-rate`).
    rate: MessageRate,
    /// What few connections use: the end, an incomplete message, a live upgrade.
    pub(super) rare: RareBox,
}

impl<E: Endpoint> Handler<E> {
    /// A connection opened at `now` in `context`: the endpoint greets and subscribes.
    pub(super) fn open(mut endpoint: E, mut context: Context, now: Instant) -> Self {
        let server = context.server();
        let liveness = Liveness::new(server.liveness(endpoint.facility()), now);
        let rate = MessageRate::new(&server.config.rates, now);
        endpoint.on_open(&mut context);
        Self {
            reading: true,
            endpoint,
            liveness,
            context,
            rate,
            rare: RareBox::default(),
        }
    }

    /// A connection handed over by another process, taken over at `now`: the
    /// endpoint is made by `endpoint` once the context is, without greeting again.
    pub(super) fn resume(
        endpoint: impl FnOnce(&Context) -> E,
        context: Context,
        resumed: Resumed,
        now: Instant,
    ) -> Self {
        let Resumed {
            liveness,
            incomplete_for,
            rate,
        } = resumed;
        let rate = MessageRate::resume(&context.server().config.rates, rate, now);
        let endpoint = endpoint(&context);
        let config = context.server().liveness(endpoint.facility());
        let mut rare = RareBox::default();
        if let Some(held) = incomplete_for {
            rare.get_mut().incomplete_since = Some(now.checked_sub(held).unwrap_or(now));
        }
        Self {
            reading: true,
            endpoint,
            liveness: Liveness::resume(config, &liveness, now),
            context,
            rate,
            rare,
        }
    }

    /// What a live upgrade carries of the message rate, at `now`.
    pub(super) fn rate_state(&mut self, now: Instant) -> Option<RateState> {
        self.rate.snapshot(now)
    }

    /// How long the socket has held an incomplete message, at `now`.
    pub(super) fn incomplete_for(&self, now: Instant) -> Option<Duration> {
        self.incomplete_since()
            .map(|since| now.saturating_duration_since(since))
    }

    /// Since when the socket has held an incomplete message, if it does.
    fn incomplete_since(&self) -> Option<Instant> {
        self.rare.get().and_then(|rare| rare.incomplete_since)
    }

    /// Why the connection ended, once the liveness machine has said `Drop`; taken once.
    pub(super) fn take_ended(&mut self) -> Option<DisconnectReason> {
        self.rare.existing_mut().and_then(|rare| rare.ended.take())
    }

    /// Applies the mailbox's signals and the deadlines passed at `now` (`wall` on the
    /// wall clock, which token expiry is judged by), and queues what the liveness
    /// machine asks for.
    pub(super) fn advance(&mut self, now: Instant, wall: SystemTime) {
        self.check_signals(now);
        self.check_expiry(now, wall);
        self.check_incomplete(now);
        if self
            .liveness
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.liveness.handle_timeout(now);
        }
        self.take_actions();
    }

    pub(super) fn on_message(&mut self, message: Message, now: Instant) {
        let metrics = &self.context.server().metrics;
        match message {
            Message::Text(text) => {
                self.liveness.handle_frame(now);
                metrics.endpoint(E::KIND).messages_in.increment(1);
                let config = &self.context.server().config;
                if config.heartbeats.heartbeat_text.as_deref() == Some(text.as_str()) {
                    metrics.client_heartbeats.increment(1);
                } else if let Some(rule) = config
                    .heartbeats
                    .heartbeat_replies
                    .iter()
                    .find(|rule| rule.inbound == text.as_str())
                {
                    metrics.client_heartbeats.increment(1);
                    let reply = Message::Text(Utf8Bytes::from(rule.outbound.as_str()));
                    self.context.reply(reply);
                } else if self.endpoint.is_heartbeat(&text) || self.admit(Some(&text), now) {
                    self.endpoint.on_text(text, &mut self.context);
                }
            }
            Message::Binary(data) => {
                self.liveness.handle_frame(now);
                metrics.endpoint(E::KIND).messages_in.increment(1);
                if self.admit(None, now) {
                    self.endpoint.on_binary(data, &mut self.context);
                }
            }
            Message::Ping(payload) => {
                self.liveness.handle_frame(now);
                self.context.reply(Message::Pong(payload));
            }
            Message::Pong(payload) => {
                metrics.pongs_received.increment(1);
                if let Some(rtt) = self.liveness.handle_pong(now, &payload) {
                    metrics.rtt(rtt);
                }
            }
            Message::Close(frame) => {
                let answer = !self.liveness.is_closing() && !self.liveness.is_over();
                let (code, reason) = match &frame {
                    Some(frame) => (Some(u16::from(frame.code)), frame.reason.as_str()),
                    None => (None, ""),
                };
                self.liveness.handle_close_received(now, code, reason);
                if answer {
                    // The peer closed first: answer with its code, as RFC 6455 §5.5.1 asks.
                    let echo = frame.map(|frame| CloseFrame {
                        code: frame.code,
                        reason: Utf8Bytes::default(),
                    });
                    self.context.reply(Message::Close(echo));
                }
            }
            // The reader never yields raw frames.
            Message::Frame(_) => {}
        }
    }

    /// Whether a data message (`text`, or binary) that arrived at `now` is within
    /// the message rate. One that is not is answered by the endpoint with a retry
    /// hint; a client that goes on regardless is closed with 1008.
    fn admit(&mut self, text: Option<&str>, now: Instant) -> bool {
        if self.liveness.is_closing() || self.liveness.is_over() {
            return false;
        }
        match self.rate.judge(now) {
            Verdict::Take => true,
            Verdict::Refuse { retry_after } => {
                let metrics = &self.context.server().metrics;
                metrics.refused("message_rate");
                self.endpoint
                    .on_rate_limited(text, retry_after, &mut self.context);
                false
            }
            Verdict::Close => {
                let text = "rate limited".to_owned();
                self.start_close(DisconnectReason::RateLimited, Some(text), now);
                false
            }
        }
    }

    /// Notes whether the socket holds an incomplete message after a read at `now`.
    pub(super) fn note_incomplete(&mut self, incomplete: bool, now: Instant) {
        match (incomplete, self.rare.existing_mut()) {
            (false, None) => {}
            (false, Some(rare)) => rare.incomplete_since = None,
            (true, rare) => {
                let since = rare.and_then(|rare| rare.incomplete_since);
                self.rare.get_mut().incomplete_since = Some(since.unwrap_or(now));
            }
        }
    }

    /// When the message the socket holds incomplete must be complete.
    fn incomplete_deadline(&self) -> Option<Instant> {
        let timeout: Duration = self.context.server().config.holdings.message_timeout;
        self.incomplete_since().map(|since| since + timeout)
    }

    /// Closes with 1008 a connection whose message stayed incomplete too long.
    fn check_incomplete(&mut self, now: Instant) {
        if self.liveness.is_closing() || self.liveness.is_over() {
            return;
        }
        if self
            .incomplete_deadline()
            .is_some_and(|deadline| deadline <= now)
        {
            self.rare.get_mut().incomplete_since = None;
            let text = "message left incomplete too long".to_owned();
            self.start_close(DisconnectReason::IncompleteMessage, Some(text), now);
        }
    }

    /// When [`advance`](Self::advance) must next be called: the liveness deadline,
    /// or the end of the identity's grace after expiry, or the deadline of an
    /// incomplete message, whichever comes first.
    pub(super) fn poll_timeout(&self, now: Instant, wall: SystemTime) -> Option<Instant> {
        let liveness = self.liveness.poll_timeout();
        if self.liveness.is_closing() || self.liveness.is_over() {
            return liveness;
        }
        let grace = self.context.server().config.access.token_grace;
        let expiry =
            expiry::time_left(self.context.identity.as_deref(), grace, wall).map(|left| now + left);
        liveness
            .into_iter()
            .chain(expiry)
            .chain(self.incomplete_deadline())
            .min()
    }

    /// Closes with 4498 a connection whose identity expired more than the grace ago.
    fn check_expiry(&mut self, now: Instant, wall: SystemTime) {
        if self.liveness.is_closing() || self.liveness.is_over() {
            return;
        }
        let grace = self.context.server().config.access.token_grace;
        if expiry::time_left(self.context.identity.as_deref(), grace, wall)
            .is_some_and(|left| left.is_zero())
        {
            let text = "token expired; reconnect with a fresh token".to_owned();
            self.start_close(DisconnectReason::TokenExpired, Some(text), now);
        }
    }

    fn check_signals(&mut self, now: Instant) {
        if self.liveness.is_closing() || self.liveness.is_over() {
            return;
        }
        match self.context.mailbox().signal() {
            None => {}
            Some(Signal::SlowConsumer) => {
                self.start_close(DisconnectReason::SlowConsumer, None, now)
            }
            Some(Signal::Shutdown { reconnect_after_ms }) => {
                if let Some(hint) = self.endpoint.on_shutdown(reconnect_after_ms) {
                    self.context.reply(hint);
                }
                let text = format!("server restarting; retry after {reconnect_after_ms} ms");
                self.start_close(DisconnectReason::ServerShutdown, Some(text), now);
            }
            Some(Signal::Disconnect { code, reason }) => {
                let reason_text = reason.to_string();
                self.start_close(
                    DisconnectReason::ServerDisconnect { code },
                    Some(reason_text),
                    now,
                );
            }
        }
    }

    /// Sends a close frame for `reason` (with `text`, or the reason's own words), or
    /// ends the connection at once when the reason is the transport's.
    pub(super) fn start_close(
        &mut self,
        reason: DisconnectReason,
        text: Option<String>,
        now: Instant,
    ) {
        let Some(code) = reason.close_code() else {
            self.liveness.handle_transport_end(reason);
            return;
        };
        let text = text.unwrap_or_else(|| reason.to_string());
        // RFC 6455 allows 123 bytes of reason.
        let text = truncate_utf8(&text, 123);
        if reason == DisconnectReason::SlowConsumer {
            // What the client did not read is dropped, not kept for it.
            self.context.replies.clear();
        }
        let frame = CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from(text),
        };
        self.context.reply(Message::Close(Some(frame)));
        self.liveness.handle_close_sent(now, reason);
    }

    pub(super) fn take_actions(&mut self) {
        let (server, replies) = self.context.server_and_replies();
        let metrics = &server.metrics;
        while let Some(action) = self.liveness.poll_action() {
            match action {
                Action::SendPing(payload) => {
                    metrics.pings_sent.increment(1);
                    replies.push_back(Message::Ping(Bytes::copy_from_slice(&payload)));
                }
                Action::SendHeartbeat => {
                    if let Some(text) = &server.config.heartbeats.heartbeat_text {
                        metrics.heartbeat_texts_sent.increment(1);
                        let beat = Message::Text(Utf8Bytes::from(text.as_str()));
                        replies.push_back(beat);
                    }
                }
                Action::SendClose { code, reason } => {
                    let frame = CloseFrame {
                        code: code.into(),
                        reason: Utf8Bytes::from_static(reason),
                    };
                    replies.push_back(Message::Close(Some(frame)));
                }
                Action::Drop(reason) => self.rare.get_mut().ended = Some(reason),
            }
        }
    }

    /// Queues replies, then mailbox items, into `sink` until it has a batch.
    /// Returns how many frames were queued.
    pub(super) fn gather(&mut self, sink: &mut impl FrameSink) -> usize {
        let mut gathered = 0;
        while sink.wants_more() {
            let outgoing = if let Some(reply) = self.context.replies.pop_front() {
                Outgoing::Message(reply)
            } else if self.liveness.is_closing() || self.liveness.is_over() {
                break;
            } else if let Some(item) = self.context.mailbox().take() {
                match self.endpoint.on_outbound(item, &mut self.context) {
                    Some(outgoing) => outgoing,
                    None => continue,
                }
            } else {
                break;
            };
            let data = match &outgoing {
                Outgoing::Message(message) => {
                    matches!(message, Message::Text(_) | Message::Binary(_))
                }
                Outgoing::Published(..) => true,
            };
            if data {
                self.context
                    .server()
                    .metrics
                    .endpoint(E::KIND)
                    .messages_out
                    .increment(1);
            }
            sink.queue(outgoing);
            gathered += 1;
        }
        gathered
    }
}

/// Where a connection's frames are encoded: the socket, or a test's list.
pub(super) trait FrameSink {
    /// Whether more frames may be queued now.
    fn wants_more(&self) -> bool;

    /// Queues a frame to be sent.
    fn queue(&mut self, outgoing: Outgoing);
}

impl FrameSink for Socket {
    fn wants_more(&self) -> bool {
        Socket::wants_more(self)
    }

    fn queue(&mut self, outgoing: Outgoing) {
        match outgoing {
            Outgoing::Message(message) => Socket::queue(self, &message),
            Outgoing::Published(publication, encoding) => {
                self.queue_shared(&publication.frame(encoding), |window_bits| {
                    publication.deflated(encoding, window_bits)
                });
            }
        }
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
