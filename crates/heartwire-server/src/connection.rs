//! The driver of one WebSocket connection: socket, liveness machine, mailbox, timer.
//!
//! A connection is one task that polls, in this order, until the liveness machine says
//! it is over:
//! 1. everything the socket holds (so a Pong waiting in the buffer counts before any
//!    deadline is judged), answering heartbeat conventions and passing data to the
//!    [`Endpoint`];
//! 2. the mailbox's signals (slow consumer, shutdown), which start a close;
//! 3. the liveness deadline and the actions it yields;
//! 4. writes: replies first, then mailbox items, gathered into batches and only as
//!    fast as the kernel takes them. A client that stops reading fills its mailbox
//!    and is closed as a slow consumer; its backlog is dropped, not kept.
//!
//! Reading pauses while too many replies wait to be written, so a client that floods
//! requests without reading the answers is slowed by TCP, not buffered for.
//!
//! The timer is re-armed lazily: traffic only moves the deadline later, so the timer
//! fires at the old deadline, finds nothing due, and is set to the new one. A busy
//! connection thus costs no timer work per frame.
//!
//! The decisions are the `Handler`'s, which reads no clock and writes into any
//! `FrameSink`: the socket here, a list in the tests of `pair`, which step a client's
//! connection machine against it on synthetic time.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{self, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use heartwire_core::liveness::Action;
use heartwire_core::{DisconnectReason, Liveness};
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::endpoint::{Context, Endpoint};
use super::mailbox::{Mailbox, Signal};
use super::slot::Slot;
use super::state::ServerState;
use super::websocket::Socket;

/// Replies that may wait to be written before reading pauses.
const REPLY_HIGH_WATER: usize = 32;
/// Socket reads per wake-up before the task yields to others.
const READ_BUDGET: usize = 4;
/// Batches written per wake-up before the task yields to others.
const WRITE_BUDGET: usize = 16;
/// Rounds of the poll loop per wake-up before the task yields to others.
const ROUND_BUDGET: usize = 8;

/// Opens a connection on `socket`: the endpoint greets and subscribes, and the
/// returned task drives the connection until it ends.
pub(crate) fn start<E: Endpoint>(socket: Socket, endpoint: E, mut slot: Slot) -> ConnectionTask<E> {
    let server = slot.server().clone();
    let mailbox = slot.open(E::KIND);
    let now = Instant::now();
    let connection = Connection {
        socket,
        timer: Box::pin(tokio::time::sleep_until(now.into())),
        armed: None,
        handler: Handler::open(endpoint, server, mailbox, now),
    };
    ConnectionTask {
        connection,
        _slot: slot,
    }
}

/// A connection's task: the connection and its slot, nothing else, since an idle
/// connection's memory is mostly this.
pub(crate) struct ConnectionTask<E> {
    connection: Connection<E>,
    /// Held for its `Drop`: the slot is given back, and the connection unregistered,
    /// when the task ends.
    _slot: Slot,
}

impl<E: Endpoint> Future for ConnectionTask<E> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<()> {
        let reason = ready!(self.connection.poll_drive(cx));
        let handler = &mut self.connection.handler;
        handler.endpoint.on_close(&mut handler.context);
        handler.context.server.metrics.disconnected(&reason);
        let id = handler.context.mailbox.id();
        tracing::debug!(connection = id, %reason, "connection ended");
        // The task drops its future now, and with it the slot.
        Poll::Ready(())
    }
}

/// Where reading stopped in one round.
enum Reading {
    /// The socket has nothing more for now, or reading is over.
    Idle,
    /// Too many replies wait to be written; the rest of what was read stays undecoded.
    Paused,
    /// The read budget ran out with more to read.
    OutOfBudget,
}

struct Connection<E> {
    socket: Socket,
    timer: Pin<Box<Sleep>>,
    /// The deadline the timer is set to, while it has not fired.
    armed: Option<Instant>,
    handler: Handler<E>,
}

/// What a connection does with messages, signals and deadlines; everything but the
/// socket and the timer. It reads no clock: time comes in as `now`, and frames go
/// out into a [`FrameSink`].
struct Handler<E> {
    /// Whether the socket may still yield frames.
    reading: bool,
    endpoint: E,
    liveness: Liveness,
    context: Context,
    /// Set once the liveness machine has said `Drop`.
    ended: Option<DisconnectReason>,
}

impl<E: Endpoint> Connection<E> {
    fn poll_drive(&mut self, cx: &mut task::Context<'_>) -> Poll<DisconnectReason> {
        self.handler.context.mailbox.register(cx);
        for _ in 0..ROUND_BUDGET {
            let now = Instant::now();
            let reading = self.poll_read(cx, now);
            self.handler.advance(now);
            let write_budget_left = self.poll_write(cx);
            if let Some(reason) = self.handler.ended.take() {
                return Poll::Ready(reason);
            }
            if self.handler.liveness.is_over() {
                continue;
            }
            if !self.arm_timer(cx) {
                continue;
            }
            match reading {
                Reading::OutOfBudget => break,
                // The replies that paused reading are written: read on.
                Reading::Paused if self.handler.context.replies.len() < REPLY_HIGH_WATER => {
                    continue;
                }
                Reading::Paused | Reading::Idle => {}
            }
            if !write_budget_left {
                break;
            }
            if self.handler.context.replies.is_empty() {
                // An idle connection keeps no reply queue.
                self.handler.context.replies = VecDeque::new();
            }
            return Poll::Pending;
        }
        // Out of budget with work left: let other connections, timers and I/O
        // readiness go first, as `tokio::task::yield_now` does. (A plain self-wake
        // would be polled again before the runtime looks at I/O.)
        let _ = pin!(tokio::task::yield_now()).poll(cx);
        Poll::Pending
    }

    /// Reads what the socket holds, until it has nothing more, too many replies wait,
    /// or the read budget runs out.
    fn poll_read(&mut self, cx: &mut task::Context<'_>, now: Instant) -> Reading {
        let handler = &mut self.handler;
        for _ in 0..READ_BUDGET {
            if !handler.reading || handler.liveness.is_over() {
                return Reading::Idle;
            }
            if handler.context.replies.len() >= REPLY_HIGH_WATER {
                return Reading::Paused;
            }
            let on_message = &mut |message| {
                handler.on_message(message, now);
                if handler.context.replies.len() >= REPLY_HIGH_WATER {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            match self.socket.poll_read(cx, on_message) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => {
                    handler.reading = false;
                    handler
                        .liveness
                        .handle_transport_end(DisconnectReason::Transport(
                            "connection closed without a close frame".into(),
                        ));
                }
                Poll::Ready(Err(reason)) => {
                    handler.reading = false;
                    handler.start_close(reason, None, now);
                }
                Poll::Pending => return Reading::Idle,
            }
        }
        Reading::OutOfBudget
    }

    /// Hands replies, then mailbox items, to the socket in batches while the kernel
    /// takes them. Returns `false` when the write budget ran out.
    fn poll_write(&mut self, cx: &mut task::Context<'_>) -> bool {
        let handler = &mut self.handler;
        let mut budget_left = false;
        for _ in 0..WRITE_BUDGET {
            let gathered = handler.gather(&mut self.socket);
            match self.socket.poll_write(cx) {
                Poll::Ready(Ok(())) if gathered == 0 => {
                    budget_left = true;
                    break;
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(reason)) => {
                    handler.context.replies.clear();
                    handler.liveness.handle_transport_end(reason);
                    budget_left = true;
                    break;
                }
                Poll::Pending => {
                    budget_left = true;
                    break;
                }
            }
        }
        // A close after a read error cannot be answered: once it is out, we are done.
        let written = handler.context.replies.is_empty() && !self.socket.has_unsent();
        if !handler.reading && handler.liveness.is_closing() && written {
            handler
                .liveness
                .handle_transport_end(DisconnectReason::Transport(
                    "closed after a read error".into(),
                ));
            handler.take_actions();
        }
        budget_left
    }

    /// Sets the timer to the liveness deadline and polls it. Returns `false` when it
    /// has already fired, so the caller goes round again.
    fn arm_timer(&mut self, cx: &mut task::Context<'_>) -> bool {
        let Some(deadline) = self.handler.liveness.poll_timeout() else {
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

impl<E: Endpoint> Handler<E> {
    /// A connection opened at `now`: the endpoint greets and subscribes.
    fn open(
        mut endpoint: E,
        server: Arc<ServerState>,
        mailbox: Arc<Mailbox>,
        now: Instant,
    ) -> Self {
        let liveness = Liveness::new(server.config.liveness(E::SENDS_HEARTBEAT_TEXT), now);
        let mut context = Context {
            server,
            mailbox,
            replies: VecDeque::new(),
        };
        endpoint.on_open(&mut context);
        Self {
            reading: true,
            endpoint,
            liveness,
            context,
            ended: None,
        }
    }

    /// Applies the mailbox's signals and the deadlines passed at `now`, and queues
    /// what the liveness machine asks for.
    fn advance(&mut self, now: Instant) {
        self.check_signals(now);
        if self
            .liveness
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.liveness.handle_timeout(now);
        }
        self.take_actions();
    }

    fn on_message(&mut self, message: Message, now: Instant) {
        let metrics = &self.context.server.metrics;
        match message {
            Message::Text(text) => {
                self.liveness.handle_frame(now);
                metrics.endpoint(E::KIND).messages_in.increment(1);
                let config = &self.context.server.config;
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
                } else {
                    self.endpoint.on_text(text, &mut self.context);
                }
            }
            Message::Binary(data) => {
                self.liveness.handle_frame(now);
                metrics.endpoint(E::KIND).messages_in.increment(1);
                self.endpoint.on_binary(data, &mut self.context);
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

    fn check_signals(&mut self, now: Instant) {
        if self.liveness.is_closing() || self.liveness.is_over() {
            return;
        }
        match self.context.mailbox.signal() {
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
        }
    }

    /// Sends a close frame for `reason` (with `text`, or the reason's own words), or
    /// ends the connection at once when the reason is the transport's.
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
            self.context.replies.clear();
        }
        let frame = CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from(text),
        };
        self.context.reply(Message::Close(Some(frame)));
        self.liveness.handle_close_sent(now, reason);
    }

    fn take_actions(&mut self) {
        let metrics = &self.context.server.metrics;
        while let Some(action) = self.liveness.poll_action() {
            match action {
                Action::SendPing(payload) => {
                    metrics.pings_sent.increment(1);
                    self.context
                        .replies
                        .push_back(Message::Ping(Bytes::copy_from_slice(&payload)));
                }
                Action::SendHeartbeat => {
                    if let Some(text) = &self.context.server.config.heartbeats.heartbeat_text {
                        metrics.heartbeat_texts_sent.increment(1);
                        let beat = Message::Text(Utf8Bytes::from(text.as_str()));
                        self.context.replies.push_back(beat);
                    }
                }
                Action::SendClose { code, reason } => {
                    let frame = CloseFrame {
                        code: code.into(),
                        reason: Utf8Bytes::from_static(reason),
                    };
                    self.context.replies.push_back(Message::Close(Some(frame)));
                }
                Action::Drop(reason) => self.ended = Some(reason),
            }
        }
    }

    /// Queues replies, then mailbox items, into `sink` until it has a batch.
    /// Returns how many frames were queued.
    fn gather(&mut self, sink: &mut impl FrameSink) -> usize {
        let mut gathered = 0;
        while sink.wants_more() {
            let message = if let Some(reply) = self.context.replies.pop_front() {
                reply
            } else if self.liveness.is_closing() || self.liveness.is_over() {
                break;
            } else if let Some(item) = self.context.mailbox.take() {
                match self.endpoint.on_outbound(item, &self.context) {
                    Some(message) => message,
                    None => continue,
                }
            } else {
                break;
            };
            if matches!(message, Message::Text(_) | Message::Binary(_)) {
                self.context
                    .server
                    .metrics
                    .endpoint(E::KIND)
                    .messages_out
                    .increment(1);
            }
            sink.queue(&message);
            gathered += 1;
        }
        gathered
    }
}

/// Where a connection's frames are encoded: the socket, or a test's list.
trait FrameSink {
    /// Whether more frames may be queued now.
    fn wants_more(&self) -> bool;

    /// Queues `message` to be sent.
    fn queue(&mut self, message: &Message);
}

impl FrameSink for Socket {
    fn wants_more(&self) -> bool {
        Socket::wants_more(self)
    }

    fn queue(&mut self, message: &Message) {
        Socket::queue(self, message);
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
mod pair;

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
