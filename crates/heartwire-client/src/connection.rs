//! One open connection: reads frames, drives the liveness machine, writes the outbox,
//! and probes a preferred endpoint for fail-back.
//!
//! Writes go through a small writer task, so the loop keeps reading (and keeps its
//! liveness deadlines) while a write is stuck on a server that stopped reading.
//! Following the liveness machine's contract, every frame the socket already holds
//! is read before a timeout is handled.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use heartwire_core::liveness::{Action, Liveness, LivenessConfig};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_core::{Delay, DisconnectReason, ErrorCode, Failover};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::attempt::{self, AttemptError, Socket};
use super::config::ClientConfig;
use super::event::{Event, Incoming};
use super::outbox::{Outgoing, Shared};
use super::resume::{Delivery, Gap, Positions};
use super::unacked::Unacked;

/// How long a new connection waits for a heartwire `hello` before it treats the
/// server as a plain WebSocket server.
const HELLO_WAIT: Duration = Duration::from_millis(500);

/// Frames that may wait for the writer task.
const WRITE_QUEUE: usize = 64;

/// Publishes that may await their ack at once; the outbox waits while this many do.
/// It keeps one client from filling a node's publish queue on its own: a publish the
/// node refused as `unavailable` while it accepted a later one would lose its place.
const PUBLISHES_IN_FLIGHT: usize = 256;

/// How a connection ended.
pub(crate) enum Outcome {
    /// It ended for `reason`; `retry_after` is the server's hint, if it gave one.
    Ended {
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    },
    /// A preferred endpoint answered a fail-back probe: continue on that socket.
    FailBack { index: usize, socket: Box<Socket> },
    /// The caller dropped the event stream.
    CallerGone,
}

/// What kind of server is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the first frame, until the deadline.
    Unknown { until: Instant },
    /// A heartwire server: the outbox speaks JSON envelopes.
    Native,
    /// Any other WebSocket server: text and binary go out as they are.
    Raw,
}

type Probe = Pin<Box<dyn Future<Output = Result<Socket, AttemptError>> + Send>>;

/// Everything one connection works with.
pub(crate) struct Connection<'a> {
    pub(crate) config: &'a ClientConfig,
    pub(crate) shared: &'a Shared,
    pub(crate) events: &'a mpsc::Sender<Event>,
    pub(crate) endpoints: &'a mut Failover,
    pub(crate) unacked: &'a mut Unacked,
    pub(crate) positions: &'a mut Positions,
    pub(crate) index: usize,
    /// Nothing is written from the outbox before this: the server said `unavailable`
    /// to a publish, which waits at the outbox's front.
    pub(crate) hold_until: Option<Instant>,
}

impl Connection<'_> {
    /// Runs the connection on `socket` until it ends.
    pub(crate) async fn run(self, socket: Socket) -> Outcome {
        let (sink, mut stream) = socket.split();
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let write_task = tokio::spawn(write_all(sink, queue));
        let close_timeout = self.config.close_timeout;
        let outcome = self.read_loop(&mut stream, &writer).await;
        drop(writer);
        // The writer gets the close handshake's time to flush, then it is cut off: a
        // server that stopped reading must not keep this task alive.
        let _ = tokio::time::timeout(close_timeout, drain(write_task)).await;
        outcome
    }

    async fn read_loop(
        mut self,
        stream: &mut futures_util::stream::SplitStream<Socket>,
        writer: &mpsc::Sender<Message>,
    ) -> Outcome {
        let opened = Instant::now();
        let mut liveness = Liveness::new(self.liveness_config(None), opened);
        let mut mode = Mode::Unknown {
            until: opened + HELLO_WAIT,
        };
        let mut retry_after = None;
        let mut closing = false;
        let mut probe: Option<(usize, Probe)> = None;
        loop {
            let now = Instant::now();
            if let Mode::Unknown { until } = mode {
                if now >= until && !self.open(&mut mode, Mode::Raw, None, writer).await {
                    return Outcome::CallerGone;
                }
            }
            if probe.is_none() && !closing {
                if let Some(candidate) = self.endpoints.fail_back_candidate(self.index, now) {
                    let url = self.config.endpoints[candidate].clone();
                    let config = self.config.clone();
                    probe = Some((
                        candidate,
                        Box::pin(async move { attempt::open(&url, &config).await }),
                    ));
                }
            }
            let wake = [
                liveness.poll_timeout(),
                match mode {
                    Mode::Unknown { until } => Some(until),
                    _ => None,
                },
                if probe.is_none() && !closing {
                    self.endpoints.fail_back_due(self.index, now)
                } else {
                    None
                },
                self.hold_until,
            ]
            .into_iter()
            .flatten()
            .min();
            if self.hold_until.is_some_and(|until| now >= until) {
                self.hold_until = None;
            }
            let can_write = !matches!(mode, Mode::Unknown { .. })
                && self.hold_until.is_none()
                && self.unacked.len() < PUBLISHES_IN_FLIGHT
                && self.shared.has_queued();
            tokio::select! {
                biased;
                frame = stream.next() => {
                    match frame {
                        Some(Ok(message)) => {
                            if !self.handle_frame(message, &mut liveness, &mut mode, &mut retry_after, writer).await {
                                return Outcome::CallerGone;
                            }
                        }
                        Some(Err(err)) => liveness.handle_transport_end(transport_reason(err)),
                        None => liveness.handle_transport_end(DisconnectReason::Transport(
                            "the server closed the TCP connection".into(),
                        )),
                    }
                }
                result = async { probe.as_mut().expect("guarded").1.as_mut().await }, if probe.is_some() => {
                    let (candidate, _) = probe.take().expect("guarded");
                    match result {
                        Ok(socket) => {
                            let _ = writer.try_send(Message::Close(Some(CloseFrame {
                                code: CloseCode::Away,
                                reason: "moving to a preferred endpoint".into(),
                            })));
                            return Outcome::FailBack { index: candidate, socket: Box::new(socket) };
                        }
                        Err(_) => self.endpoints.handle_failure(candidate, Instant::now()),
                    }
                }
                () = self.shared.stop.cancelled(), if !closing => {
                    closing = true;
                    self.flush_outbox(mode, writer);
                    let _ = writer.try_send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "client closed".into(),
                    })));
                    liveness.handle_close_sent(Instant::now(), DisconnectReason::LocalClose);
                }
                permit = writer.reserve(), if can_write && !closing => {
                    if let (Ok(permit), Some(message)) = (permit, self.shared.pop()) {
                        if let Some(frame) = self.encode(mode, message) {
                            permit.send(frame);
                        }
                    }
                }
                () = self.shared.queued.notified(), if !can_write => {}
                () = sleep_until(wake) => {
                    // Read what the socket already holds before judging silence.
                    while let Some(Some(frame)) = stream.next().now_or_never() {
                        match frame {
                            Ok(message) => {
                                if !self.handle_frame(message, &mut liveness, &mut mode, &mut retry_after, writer).await {
                                    return Outcome::CallerGone;
                                }
                            }
                            Err(err) => {
                                liveness.handle_transport_end(transport_reason(err));
                                break;
                            }
                        }
                    }
                    let now = Instant::now();
                    if liveness.poll_timeout().is_some_and(|due| now >= due) {
                        liveness.handle_timeout(now);
                    }
                }
            }
            while let Some(action) = liveness.poll_action() {
                match action {
                    Action::SendPing(payload) => {
                        let _ = writer.try_send(Message::Ping(payload.to_vec().into()));
                    }
                    // This client configures no application heartbeat.
                    Action::SendHeartbeat => {}
                    Action::SendClose { code, reason } => {
                        let _ = writer.try_send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        })));
                    }
                    Action::Drop(reason) => {
                        return Outcome::Ended {
                            reason,
                            retry_after,
                        };
                    }
                }
            }
        }
    }

    /// Handles one inbound frame; `false` when the caller is gone.
    async fn handle_frame(
        &mut self,
        message: Message,
        liveness: &mut Liveness,
        mode: &mut Mode,
        retry_after: &mut Option<Duration>,
        writer: &mpsc::Sender<Message>,
    ) -> bool {
        let now = Instant::now();
        match message {
            Message::Text(text) => {
                liveness.handle_frame(now);
                let frame = ServerFrame::parse(text.as_str()).ok();
                if let Mode::Unknown { .. } = mode {
                    if let Some(ServerFrame::Hello {
                        session,
                        ping_interval_ms,
                        ping_timeout_ms,
                        ..
                    }) = &frame
                    {
                        let advertised = (
                            Duration::from_millis(*ping_interval_ms),
                            Duration::from_millis(*ping_timeout_ms),
                        );
                        *liveness = Liveness::new(self.liveness_config(Some(advertised)), now);
                        return self
                            .open(mode, Mode::Native, Some(session.clone()), writer)
                            .await;
                    }
                    if !self.open(mode, Mode::Raw, None, writer).await {
                        return false;
                    }
                }
                match (*mode, frame) {
                    (Mode::Native, Some(ServerFrame::Message { channel, seq, data })) => match self
                        .positions
                        .handle_message(&channel, seq)
                    {
                        Delivery::Duplicate => true,
                        Delivery::Deliver => {
                            self.emit(Event::Message(Incoming::Channel { channel, seq, data }))
                                .await
                        }
                        Delivery::AfterGap(gap) => {
                            self.emit_gap(&channel, gap).await
                                && self
                                    .emit(Event::Message(Incoming::Channel { channel, seq, data }))
                                    .await
                        }
                    },
                    (
                        Mode::Native,
                        Some(ServerFrame::Subscribed {
                            channel,
                            seq,
                            epoch,
                            recovered,
                        }),
                    ) => match self
                        .positions
                        .handle_subscribed(&channel, seq, &epoch, recovered)
                    {
                        Some(gap) => self.emit_gap(&channel, gap).await,
                        None => true,
                    },
                    // A duplicate was published once already: acknowledged all the same.
                    (Mode::Native, Some(ServerFrame::Ack { id, .. })) => {
                        self.unacked.ack(&id);
                        true
                    }
                    (
                        Mode::Native,
                        Some(ServerFrame::Error {
                            code: ErrorCode::Unavailable,
                            id: Some(id),
                            ..
                        }),
                    ) => {
                        self.retry_later(&id);
                        true
                    }
                    (Mode::Native, Some(ServerFrame::Reconnect { after_ms, .. })) => {
                        *retry_after = Some(Duration::from_millis(after_ms));
                        true
                    }
                    (
                        Mode::Native,
                        Some(
                            ServerFrame::Pong { .. }
                            | ServerFrame::Unsubscribed { .. }
                            | ServerFrame::Hello { .. },
                        ),
                    ) => true,
                    (Mode::Native, Some(ServerFrame::Error { id: Some(id), .. })) => {
                        // Refused for good (not for want of a broker): sending it again
                        // would be refused again. The caller hears of it below.
                        self.unacked.ack(&id);
                        self.emit(Event::Message(Incoming::Text(text.as_str().to_owned())))
                            .await
                    }
                    _ => {
                        self.emit(Event::Message(Incoming::Text(text.as_str().to_owned())))
                            .await
                    }
                }
            }
            Message::Binary(data) => {
                liveness.handle_frame(now);
                if !self.open(mode, Mode::Raw, None, writer).await {
                    return false;
                }
                self.emit(Event::Message(Incoming::Binary(data))).await
            }
            Message::Pong(payload) => {
                if let Some(rtt) = liveness.handle_pong(now, &payload) {
                    self.shared.set_rtt(rtt);
                    self.endpoints.handle_rtt(self.index, rtt);
                }
                true
            }
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((None, String::new()), |frame| {
                    (
                        Some(u16::from(frame.code)),
                        frame.reason.as_str().to_owned(),
                    )
                });
                liveness.handle_close_received(now, code, &reason);
                true
            }
            Message::Ping(_) | Message::Frame(_) => {
                liveness.handle_frame(now);
                true
            }
        }
    }

    /// Leaves `Mode::Unknown` for `to`: tells the caller the connection is open and,
    /// on a heartwire server, restores the subscriptions and re-sends what was never
    /// acknowledged. `false` when the caller is gone.
    async fn open(
        &mut self,
        mode: &mut Mode,
        to: Mode,
        session: Option<String>,
        writer: &mpsc::Sender<Message>,
    ) -> bool {
        if !matches!(mode, Mode::Unknown { .. }) {
            return true;
        }
        *mode = to;
        if to == Mode::Native {
            for channel in self.shared.subscriptions() {
                let since = self.positions.since(&channel);
                let frame = ClientFrame::Subscribe { channel, since }.encode();
                if writer.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
        }
        self.shared.requeue_front(self.unacked.take_all());
        let url = self.config.endpoints[self.index].clone();
        self.emit(Event::Open { url, session }).await
    }

    /// Hands every queued message to the writer, as far as it has room: the caller
    /// closed the client and what it sent before should still go out.
    fn flush_outbox(&mut self, mode: Mode, writer: &mpsc::Sender<Message>) {
        if matches!(mode, Mode::Unknown { .. }) {
            return;
        }
        while let Ok(permit) = writer.try_reserve() {
            let Some(message) = self.shared.pop() else {
                return;
            };
            if let Some(frame) = self.encode(mode, message) {
                permit.send(frame);
            }
        }
    }

    /// The frame for a queued message, or `None` when it means nothing to this server.
    fn encode(&mut self, mode: Mode, message: Outgoing) -> Option<Message> {
        match (mode, message) {
            (_, Outgoing::Text(text)) => Some(Message::text(text)),
            (_, Outgoing::Binary(data)) => Some(Message::Binary(data)),
            (Mode::Native, Outgoing::Publish(publish)) => {
                let frame = ClientFrame::Publish {
                    channel: publish.channel.clone(),
                    data: publish.data.clone(),
                    id: Some(publish.id.clone()),
                };
                self.unacked.add(publish);
                Some(Message::text(frame.encode()))
            }
            (Mode::Native, Outgoing::Subscribe(channel)) => {
                let since = self.positions.since(&channel);
                Some(Message::text(
                    ClientFrame::Subscribe { channel, since }.encode(),
                ))
            }
            (Mode::Native, Outgoing::Unsubscribe(channel)) => {
                self.positions.forget(&channel);
                Some(Message::text(ClientFrame::Unsubscribe { channel }.encode()))
            }
            // Envelopes mean nothing to a server that is not heartwire.
            (_, Outgoing::Publish(_) | Outgoing::Subscribe(_) | Outgoing::Unsubscribe(_)) => None,
        }
    }

    /// The server could not take publish `id` for want of a broker: it and every
    /// publish sent after it go back to the outbox's front, in order and with their
    /// ids, and the outbox waits one first-retry window before it writes again.
    fn retry_later(&mut self, id: &str) {
        let again = self.unacked.take_from(id);
        if again.is_empty() {
            return;
        }
        self.shared.requeue_front(again.into_iter());
        let wait = match self.config.backoff.delay {
            Delay::Fixed(delay) | Delay::Exponential { base: delay, .. } => delay,
        };
        self.hold_until = Some(Instant::now() + wait);
    }

    async fn emit_gap(&self, channel: &str, gap: Gap) -> bool {
        self.emit(Event::Gap {
            channel: channel.to_owned(),
            from_seq: gap.from_seq,
            to_seq: gap.to_seq,
            reason: gap.reason,
        })
        .await
    }

    fn liveness_config(&self, advertised: Option<(Duration, Duration)>) -> LivenessConfig {
        let (ping_interval, ping_timeout) =
            advertised.unwrap_or((self.config.ping_interval, self.config.ping_timeout));
        LivenessConfig {
            ping_interval,
            ping_timeout,
            close_timeout: self.config.close_timeout,
            heartbeat_interval: None,
        }
    }

    async fn emit(&self, event: Event) -> bool {
        self.events.send(event).await.is_ok()
    }
}

/// Writes frames until the queue closes or the socket fails.
async fn write_all(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut queue: mpsc::Receiver<Message>,
) {
    while let Some(message) = queue.recv().await {
        if sink.feed(message).await.is_err() {
            return;
        }
        while let Ok(message) = queue.try_recv() {
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Waits for the writer task, and aborts it if this wait is itself cut short.
async fn drain(task: JoinHandle<()>) {
    struct AbortOnDrop(Option<JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.abort();
            }
        }
    }
    let mut guard = AbortOnDrop(Some(task));
    if let Some(task) = guard.0.as_mut() {
        let _ = task.await;
    }
    guard.0 = None;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The disconnect reason for a read error.
fn transport_reason(err: tungstenite::Error) -> DisconnectReason {
    use tungstenite::Error;
    match err {
        Error::Utf8(_) => DisconnectReason::InvalidUtf8,
        Error::Capacity(_) => DisconnectReason::MessageTooBig,
        Error::Protocol(err @ tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            DisconnectReason::Transport(err.to_string())
        }
        Error::Protocol(err) => DisconnectReason::ProtocolError(err.to_string()),
        other => DisconnectReason::Transport(other.to_string()),
    }
}
