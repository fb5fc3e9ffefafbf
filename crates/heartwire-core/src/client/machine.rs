//! The machine of one client connection, [`ClientConnection`]: its state, what it is
//! fed and what it hands out. The contract is in the [module docs](super); what it
//! does with a heartwire server's envelopes is in `envelopes`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::carried::{Carried, Previous};
use super::event::{Event, Incoming};
use super::frame::Frame;
use super::outgoing::{Outbox, Outgoing};
use super::refresh::Refresh;
use crate::liveness::{Action, Liveness, LivenessConfig};
use crate::protocol::{ClientFrame, ServerFrame};
use crate::reason::DisconnectReason;
use crate::report::OfflineReason;

mod envelopes;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod report_tests;

/// How long a new connection waits for a heartwire `hello` before it treats the
/// server as a plain WebSocket server.
pub const HELLO_WAIT: Duration = Duration::from_millis(500);

/// Publishes that may await their ack at once; the outbox waits while this many do.
/// It keeps one client from filling a node's publish queue on its own: a publish the
/// node refused as `unavailable` while it accepted a later one would lose its place.
pub const PUBLISHES_IN_FLIGHT: usize = 256;

/// The close code and reason of a client that moves to a preferred server.
const MOVING: (u16, &str) = (1001, "moving to a preferred server");
/// The close code and reason of a client closed by its caller.
const CLOSED_BY_CALLER: (u16, &str) = (1000, "client closed");

/// The settings of every connection of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Inbound silence after which a Ping goes out, until a `hello` says otherwise.
    pub ping_interval: Duration,
    /// How long after a Ping the server has to send anything, until a `hello` says
    /// otherwise.
    pub ping_timeout: Duration,
    /// How long a close handshake this client started may take.
    pub close_timeout: Duration,
    /// How long nothing is sent from the outbox after the server refused a publish
    /// as `unavailable` (the reconnect policy's first delay).
    pub unavailable_hold: Duration,
}

impl ConnectionConfig {
    fn liveness(&self, ping_interval: Duration, ping_timeout: Duration) -> LivenessConfig {
        LivenessConfig {
            ping_interval,
            ping_timeout,
            close_timeout: self.close_timeout,
            heartbeat_interval: None,
        }
    }
}

/// How a connection ended, from [`ClientConnection::poll_end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It ended for `reason`; `retry_after` is the server's `reconnect` hint, if it
    /// gave one.
    Closed {
        /// Why it ended.
        reason: DisconnectReason,
        /// When the server asked to be reconnected to.
        retry_after: Option<Duration>,
    },
    /// Server `server` answered the fail-back probe: the client continues on the
    /// probe's connection. A close 1001 for this one is the last frame to send.
    Switch {
        /// The preferred server's index.
        server: usize,
    },
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

/// The fail-back probe of a preferred server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Idle,
    /// Asked for; the driver has not taken the request yet.
    Requested(usize),
    /// The driver is probing.
    Running(usize),
}

/// The decisions of one client connection. See the [module docs](super).
#[derive(Debug)]
pub struct ClientConnection {
    config: ConnectionConfig,
    carried: Carried,
    server: usize,
    liveness: Liveness,
    mode: Mode,
    /// The session the server named in its `hello`.
    session: Option<String>,
    /// Channels to subscribe to once the server turns out to be heartwire.
    subscriptions: Vec<String>,
    /// Channels subscribed to whose `subscribed` has not come yet.
    subscribing: Vec<String>,
    /// Channels left whose `unsubscribed` has not come yet.
    leaving: Vec<String>,
    /// Frames to send before anything from the outbox.
    transmits: VecDeque<Frame>,
    events: VecDeque<Event>,
    /// Nothing is sent from the outbox before this: the server said `unavailable`.
    hold_until: Option<Instant>,
    /// The server's `reconnect` hint.
    retry_after: Option<Duration>,
    probe: Probe,
    /// When the connection's token is refreshed.
    refresh: Refresh,
    /// A refresh is due and the driver has not taken the request for a token yet.
    token_wanted: bool,
    /// The caller closed the client.
    closing: bool,
    /// Set when the connection is over, until the driver takes it.
    end: Option<End>,
    over: bool,
}

impl ClientConnection {
    /// A connection to `server` opened at `now`. `subscriptions` are the caller's
    /// channels, restored if the server is heartwire; what `carried` holds of
    /// publishes not yet acknowledged goes out first, in order.
    pub fn new(
        config: ConnectionConfig,
        mut carried: Carried,
        server: usize,
        subscriptions: Vec<String>,
        now: Instant,
    ) -> Self {
        let mut resend = carried.unacked.take_all();
        resend.append(&mut carried.resend);
        carried.resend = resend;
        Self {
            config,
            carried,
            server,
            liveness: Liveness::new(
                config.liveness(config.ping_interval, config.ping_timeout),
                now,
            ),
            mode: Mode::Unknown {
                until: now + HELLO_WAIT,
            },
            session: None,
            subscriptions,
            subscribing: Vec::new(),
            leaving: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            hold_until: None,
            retry_after: None,
            probe: Probe::Idle,
            refresh: Refresh::default(),
            token_wanted: false,
            closing: false,
            end: None,
            over: false,
        }
    }

    /// What this connection hands on to the next one.
    pub fn into_carried(self) -> Carried {
        self.carried
    }

    /// A frame arrived at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) {
        if self.over {
            return;
        }
        match frame {
            Frame::Text(text) => {
                self.liveness.handle_frame(now);
                self.handle_text(now, text);
            }
            Frame::Binary(data) => {
                self.liveness.handle_frame(now);
                self.open(Mode::Raw, None);
                self.events
                    .push_back(Event::Message(Incoming::Binary(data)));
            }
            Frame::Ping(payload) => {
                self.liveness.handle_frame(now);
                self.transmits.push_back(Frame::Pong(payload));
            }
            Frame::Pong(payload) => {
                if let Some(rtt) = self.liveness.handle_pong(now, &payload) {
                    self.carried.failover.handle_rtt(self.server, rtt);
                    self.events.push_back(Event::RoundTrip(rtt));
                }
            }
            Frame::Close { code, reason } => {
                self.liveness.handle_close_received(now, code, &reason);
            }
        }
        self.take_liveness_actions(now);
    }

    /// The transport failed or ended without a close handshake, at `now`.
    pub fn handle_transport_end(&mut self, now: Instant, reason: DisconnectReason) {
        self.liveness.handle_transport_end(reason);
        self.take_liveness_actions(now);
    }

    /// The caller closed the client at `now`: everything in `outbox` goes out (when
    /// the server's kind is known), then a close 1000.
    pub fn handle_close(&mut self, now: Instant, outbox: &mut impl Outbox) {
        if self.over || self.closing {
            return;
        }
        self.closing = true;
        if !matches!(self.mode, Mode::Unknown { .. }) {
            while let Some(message) = self.next_outgoing(outbox) {
                if let Some(frame) = self.encode(message) {
                    self.transmits.push_back(frame);
                }
            }
        }
        let (code, reason) = CLOSED_BY_CALLER;
        self.transmits.push_back(Frame::Close {
            code: Some(code),
            reason: reason.to_owned(),
        });
        self.liveness
            .handle_close_sent(now, DisconnectReason::LocalClose);
        self.take_liveness_actions(now);
    }

    /// The fail-back probe of `server` asked for by [`poll_probe`](Self::poll_probe)
    /// finished at `now`: its handshake `succeeded`, or not.
    pub fn handle_probe_result(&mut self, now: Instant, server: usize, succeeded: bool) {
        if self.probe != Probe::Running(server) {
            return;
        }
        self.probe = Probe::Idle;
        if !succeeded {
            self.carried.failover.handle_failure(server, now);
        } else if !self.over && !self.closing {
            let (code, reason) = MOVING;
            self.transmits.push_back(Frame::Close {
                code: Some(code),
                reason: reason.to_owned(),
            });
            self.finish(End::Switch { server });
        }
    }

    /// Applies every deadline that has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.over {
            return;
        }
        if self.hold_until.is_some_and(|until| now >= until) {
            self.hold_until = None;
        }
        if let Mode::Unknown { until } = self.mode {
            if now >= until {
                self.open(Mode::Raw, None);
            }
        }
        self.liveness.handle_timeout(now);
        if self.mode == Mode::Native && !self.closing && self.refresh.handle_timeout(now) {
            self.token_wanted = true;
        }
        if self.probe == Probe::Idle && !self.closing {
            if let Some(candidate) = self.carried.failover.fail_back_candidate(self.server, now) {
                self.probe = Probe::Requested(candidate);
            }
        }
        self.take_liveness_actions(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called; `None`
    /// once the connection is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.over {
            return None;
        }
        let hello = match self.mode {
            Mode::Unknown { until } => Some(until),
            Mode::Native | Mode::Raw => None,
        };
        let fail_back = match self.probe {
            Probe::Idle if !self.closing => {
                // `now` is not known here; any instant in the past means "at once".
                let floor = self.liveness.last_heard();
                self.carried.failover.fail_back_due(self.server, floor)
            }
            Probe::Idle | Probe::Requested(_) | Probe::Running(_) => None,
        };
        [
            self.liveness.poll_timeout(),
            hello,
            fail_back,
            self.hold_until,
            self.refresh.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next event for the driver, in order. Call until it returns `None`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A preferred server to probe for fail-back, once. The driver opens a
    /// connection to it and reports with
    /// [`handle_probe_result`](Self::handle_probe_result).
    pub fn poll_probe(&mut self) -> Option<usize> {
        match self.probe {
            Probe::Requested(server) => {
                self.probe = Probe::Running(server);
                Some(server)
            }
            Probe::Idle | Probe::Running(_) => None,
        }
    }

    /// Whether the driver should fetch a fresh token from its provider, once per
    /// refresh; it hands the token over with [`handle_token`](Self::handle_token).
    pub fn poll_token_request(&mut self) -> bool {
        std::mem::take(&mut self.token_wanted)
    }

    /// The token the driver fetched for the refresh asked for by
    /// [`poll_token_request`](Self::poll_token_request), at `now`; `None` when the
    /// provider had none (the refresh is tried again later).
    pub fn handle_token(&mut self, now: Instant, token: Option<String>) {
        if self.over || self.closing || !self.refresh.is_pending() {
            return;
        }
        match token {
            Some(token) => {
                let frame = ClientFrame::Refresh { token };
                self.transmits.push_back(Frame::Text(frame.encode()));
            }
            None => self.refresh.handle_refused(now),
        }
    }

    /// The next frame to send at `now`: the machine's own first (subscriptions,
    /// Pings, Pongs, close), then publishes to send again, then the oldest message
    /// of `outbox`, as far as the connection may send. Call while the transport has
    /// room for a frame.
    pub fn poll_transmit(&mut self, now: Instant, outbox: &mut impl Outbox) -> Option<Frame> {
        if let Some(frame) = self.transmits.pop_front() {
            return Some(frame);
        }
        while self.can_send(now) {
            let message = self.next_outgoing(outbox)?;
            if let Some(frame) = self.encode(message) {
                return Some(frame);
            }
        }
        None
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has a frame at `now`.
    pub fn wants_transmit(&self, now: Instant, outbox: &impl Outbox) -> bool {
        !self.transmits.is_empty()
            || (self.can_send(now) && !(self.carried.resend.is_empty() && outbox.is_empty()))
    }

    /// How the connection ended, once; after it only
    /// [`poll_transmit`](Self::poll_transmit) still has something: the last frames,
    /// to send as far as the transport takes them without waiting.
    pub fn poll_end(&mut self) -> Option<End> {
        self.end.take()
    }

    /// Whether the outbox may be read from at `now`.
    fn can_send(&self, now: Instant) -> bool {
        !self.over
            && !self.closing
            && !matches!(self.mode, Mode::Unknown { .. })
            && self.hold_until.is_none_or(|until| now >= until)
            && self.carried.unacked.len() < PUBLISHES_IN_FLIGHT
            && !self.liveness.is_closing()
    }

    fn next_outgoing(&mut self, outbox: &mut impl Outbox) -> Option<Outgoing> {
        match self.carried.resend.pop_front() {
            Some(publish) => Some(Outgoing::Publish(publish)),
            None => outbox.pop(),
        }
    }

    fn handle_text(&mut self, now: Instant, text: String) {
        let parsed = ServerFrame::parse(&text).ok();
        if let Mode::Unknown { .. } = self.mode {
            if let Some(ServerFrame::Hello {
                session,
                ping_interval_ms,
                ping_timeout_ms,
                expires_in_ms,
                reports,
                ..
            }) = parsed
            {
                self.refresh
                    .handle_lifetime(now, expires_in_ms.map(Duration::from_millis));
                // A close under way keeps its liveness machine, and so its bound.
                if !self.closing {
                    let advertised = self.config.liveness(
                        Duration::from_millis(ping_interval_ms),
                        Duration::from_millis(ping_timeout_ms),
                    );
                    self.liveness = Liveness::new(advertised, now);
                }
                // The report of the previous session goes first, to a server that
                // takes it; to any other it never goes.
                if let Some(previous) = self.carried.previous.take() {
                    if reports && !self.closing {
                        let report = previous.report(now).to_frame();
                        self.transmits.push_back(Frame::Text(report.encode()));
                    }
                }
                self.session = Some(session.clone());
                self.open(Mode::Native, Some(session));
                return;
            }
            self.open(Mode::Raw, None);
        }
        if self.mode != Mode::Native {
            self.events.push_back(Event::Message(Incoming::Text(text)));
            return;
        }
        self.handle_envelope(now, text, parsed);
    }

    /// Leaves `Mode::Unknown` for `to`: the connection is open and, on a heartwire
    /// server, the subscriptions are restored before anything else goes out.
    fn open(&mut self, to: Mode, session: Option<String>) {
        if !matches!(self.mode, Mode::Unknown { .. }) {
            return;
        }
        self.mode = to;
        // After the caller's close frame nothing more may go out (RFC 6455 §5.5.1).
        if to == Mode::Native && !self.closing {
            for channel in std::mem::take(&mut self.subscriptions) {
                self.subscribing.push(channel.clone());
                let since = self.carried.positions.since(&channel);
                let frame = ClientFrame::Subscribe { channel, since };
                self.transmits.push_back(Frame::Text(frame.encode()));
            }
        }
        self.events.push_back(Event::Open {
            server: self.server,
            session,
        });
    }

    fn take_liveness_actions(&mut self, now: Instant) {
        while let Some(action) = self.liveness.poll_action() {
            match action {
                Action::SendPing(payload) => {
                    let payload = Bytes::copy_from_slice(&payload);
                    self.transmits.push_back(Frame::Ping(payload));
                }
                // A client configures no application heartbeat.
                Action::SendHeartbeat => {}
                Action::SendClose { code, reason } => self.transmits.push_back(Frame::Close {
                    code: Some(code),
                    reason: reason.to_owned(),
                }),
                Action::Drop(reason) => {
                    self.keep_for_report(now, &reason);
                    let retry_after = self.retry_after;
                    self.finish(End::Closed {
                        reason,
                        retry_after,
                    });
                }
            }
        }
    }

    /// Keeps what the next connection reports of this one, which ended at `now` for
    /// `reason`: only a heartwire session that the client did not close itself.
    fn keep_for_report(&mut self, now: Instant, reason: &DisconnectReason) {
        if self.over {
            return;
        }
        let (Some(session), Some(reason)) = (self.session.take(), OfflineReason::of(reason)) else {
            return;
        };
        self.carried.previous = Some(Previous {
            session,
            lost_at: now,
            reason,
            last_heard: now.saturating_duration_since(self.liveness.last_heard()),
        });
    }

    fn finish(&mut self, end: End) {
        if !self.over {
            self.over = true;
            self.end = Some(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::ErrorCode;
    use crate::client::{GapReason, Publish};
    use crate::failover::Failover;
    use crate::protocol::Position;

    const INTERVAL: Duration = Duration::from_secs(20);
    const TIMEOUT: Duration = Duration::from_secs(10);
    const CLOSE: Duration = Duration::from_secs(5);
    const HOLD: Duration = Duration::from_millis(500);
    const RETRY: Duration = Duration::from_secs(30);
    /// What a heartwire server advertises in these tests' `hello`.
    const HELLO_INTERVAL: Duration = Duration::from_secs(4);
    const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

    fn config() -> ConnectionConfig {
        ConnectionConfig {
            ping_interval: INTERVAL,
            ping_timeout: TIMEOUT,
            close_timeout: CLOSE,
            unavailable_hold: HOLD,
        }
    }

    fn carried(servers: usize) -> Carried {
        Carried::new(Failover::new(servers, RETRY))
    }

    fn connect(carried: Carried, subscriptions: &[&str], now: Instant) -> ClientConnection {
        let subscriptions = subscriptions.iter().map(|&s| s.to_owned()).collect();
        ClientConnection::new(config(), carried, 0, subscriptions, now)
    }

    fn text(json: Value) -> Frame {
        Frame::Text(json.to_string())
    }

    fn hello() -> Frame {
        text(json!({
            "op": "hello",
            "session": "s-1",
            "ping_interval_ms": HELLO_INTERVAL.as_millis() as u64,
            "ping_timeout_ms": HELLO_TIMEOUT.as_millis() as u64,
            "server": "heartwire/test",
        }))
    }

    fn publish(n: u64) -> Outgoing {
        Outgoing::Publish(Publish {
            id: format!("p-{n}"),
            channel: "c".into(),
            data: n.into(),
        })
    }

    fn events(machine: &mut ClientConnection) -> Vec<Event> {
        std::iter::from_fn(|| machine.poll_event()).collect()
    }

    /// Every frame the machine sends at `now`, taking from `outbox` as it may.
    fn sent(
        machine: &mut ClientConnection,
        now: Instant,
        outbox: &mut VecDeque<Outgoing>,
    ) -> Vec<Value> {
        std::iter::from_fn(|| machine.poll_transmit(now, outbox))
            .map(|frame| match frame {
                Frame::Text(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                Frame::Close { code, reason } => json!({ "close": code, "reason": reason }),
                other => json!(format!("{other:?}")),
            })
            .collect()
    }

    fn published_ids(frames: &[Value]) -> Vec<&str> {
        frames
            .iter()
            .filter(|frame| frame["op"] == "publish")
            .map(|frame| frame["id"].as_str().unwrap())
            .collect()
    }

    /// A machine on a heartwire server, opened at `t0`, its subscriptions sent.
    fn native(carried: Carried, subscriptions: &[&str], t0: Instant) -> ClientConnection {
        let mut machine = connect(carried, subscriptions, t0);
        machine.handle_frame(t0, hello());
        machine
    }

    fn subscribed(channel: &str, seq: u64, epoch: &str, recovered: Option<bool>) -> Frame {
        let mut frame = json!({"op": "subscribed", "channel": channel, "seq": seq, "epoch": epoch});
        if let Some(recovered) = recovered {
            frame["recovered"] = recovered.into();
        }
        text(frame)
    }

    fn message(channel: &str, seq: u64) -> Frame {
        text(json!({"op": "message", "channel": channel, "seq": seq, "data": seq}))
    }

    fn delivered(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::Message(Incoming::Channel { seq, .. }) => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_hello_opens_a_heartwire_connection_with_its_timing() {
        let t0 = Instant::now();
        let mut machine = connect(carried(1), &[], t0);
        let at = t0 + Duration::from_millis(3);
        machine.handle_frame(at, hello());
        assert_eq!(
            events(&mut machine),
            [Event::Open {
                server: 0,
                session: Some("s-1".into())
            }]
        );
        // The hello's interval, not the configured one.
        assert_eq!(machine.poll_timeout(), Some(at + HELLO_INTERVAL));
    }

    #[test]
    fn without_a_hello_the_server_is_plain_after_the_wait() {
        let t0 = Instant::now();
        let mut machine = connect(carried(1), &["c"], t0);
        let mut outbox = VecDeque::from([Outgoing::Text("a".into()), publish(1)]);
        assert_eq!(machine.poll_timeout(), Some(t0 + HELLO_WAIT));
        machine.handle_timeout(t0 + HELLO_WAIT - Duration::from_millis(1));
        assert!(events(&mut machine).is_empty());
        assert!(
            !machine.wants_transmit(t0, &outbox),
            "nothing before the mode is known"
        );
        assert!(sent(&mut machine, t0, &mut outbox).is_empty());
        machine.handle_timeout(t0 + HELLO_WAIT);
        assert_eq!(
            events(&mut machine),
            [Event::Open {
                server: 0,
                session: None
            }]
        );
        // Text goes out as it is; no subscribe, and the publish means nothing here.
        assert_eq!(sent(&mut machine, t0 + HELLO_WAIT, &mut outbox), ["a"]);
        assert!(outbox.is_empty());
        // The configured liveness timing applies.
        assert_eq!(machine.poll_timeout(), Some(t0 + INTERVAL));
    }

    #[test]
    fn a_first_frame_that_is_not_a_hello_means_a_plain_server() {
        let t0 = Instant::now();
        let mut machine = connect(carried(1), &["c"], t0);
        machine.handle_frame(t0, Frame::Text("welcome".into()));
        machine.handle_frame(t0, hello());
        assert_eq!(
            events(&mut machine),
            [
                Event::Open {
                    server: 0,
                    session: None
                },
                Event::Message(Incoming::Text("welcome".into())),
                Event::Message(Incoming::Text(hello_text())),
            ]
        );
        assert!(sent(&mut machine, t0, &mut VecDeque::new()).is_empty());

        let mut binary = connect(carried(1), &[], t0);
        binary.handle_frame(t0, Frame::Binary(Bytes::from_static(b"\x01")));
        assert_eq!(
            events(&mut binary),
            [
                Event::Open {
                    server: 0,
                    session: None
                },
                Event::Message(Incoming::Binary(Bytes::from_static(b"\x01"))),
            ]
        );
    }

    fn hello_text() -> String {
        let Frame::Text(text) = hello() else {
            unreachable!()
        };
        text
    }

    #[test]
    fn subscriptions_are_restored_first_each_from_its_position() {
        let t0 = Instant::now();
        let mut first = native(carried(1), &["a"], t0);
        first.handle_frame(t0, subscribed("a", 4, "e1", None));
        first.handle_frame(t0, message("a", 5));
        first.handle_transport_end(t0, DisconnectReason::Transport("cut".into()));
        let mut outbox = VecDeque::from([Outgoing::Text("after".into())]);
        let mut second = native(first.into_carried(), &["a", "b"], t0);
        assert_eq!(
            sent(&mut second, t0, &mut outbox),
            [
                json!({"op": "subscribe", "channel": "a", "since": {"epoch": "e1", "seq": 5}}),
                json!({"op": "subscribe", "channel": "b"}),
                json!("after"),
            ]
        );
        assert_eq!(
            second.carried.positions.since("a"),
            Some(Position {
                epoch: "e1".into(),
                seq: 5
            })
        );
    }

    #[test]
    fn publishes_never_acknowledged_go_again_first_and_in_order() {
        let t0 = Instant::now();
        let mut first = native(carried(1), &[], t0);
        let mut outbox: VecDeque<_> = (1..=4).map(publish).collect();
        assert_eq!(
            published_ids(&sent(&mut first, t0, &mut outbox)),
            ["p-1", "p-2", "p-3", "p-4"]
        );
        first.handle_frame(t0, text(json!({"op": "ack", "id": "p-2", "seq": 1})));
        first.handle_frame(
            t0,
            text(json!({"op": "ack", "id": "p-4", "seq": 1, "duplicate": true})),
        );
        first.handle_transport_end(t0, DisconnectReason::Transport("cut".into()));

        let mut outbox = VecDeque::from([publish(5)]);
        let mut second = connect(first.into_carried(), &["c"], t0);
        assert!(
            sent(&mut second, t0, &mut outbox).is_empty(),
            "mode unknown"
        );
        second.handle_frame(t0, hello());
        let frames = sent(&mut second, t0, &mut outbox);
        assert_eq!(frames[0]["op"], "subscribe");
        assert_eq!(published_ids(&frames), ["p-1", "p-3", "p-5"]);
    }

    #[test]
    fn an_error_naming_a_publish_ends_it_and_reaches_the_caller() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        sent(&mut machine, t0, &mut VecDeque::from([publish(1)]));
        events(&mut machine);
        let refusal = json!({"op": "error", "code": "bad_request", "reason": "no", "id": "p-1"});
        machine.handle_frame(t0, text(refusal.clone()));
        assert_eq!(
            events(&mut machine),
            [Event::PublishRefused {
                id: "p-1".into(),
                channel: "c".into(),
                code: ErrorCode::BadRequest,
                reason: "no".into(),
            }]
        );
        assert_eq!(machine.carried.unacked.len(), 0);
        assert_eq!(machine.poll_timeout(), Some(t0 + HELLO_INTERVAL), "no hold");
        // An error naming an id this client does not wait for is an error like others.
        let stray = json!({"op": "error", "code": "bad_request", "reason": "no", "id": "p-9"});
        machine.handle_frame(t0, text(stray));
        assert_eq!(
            events(&mut machine),
            [Event::Error {
                code: ErrorCode::BadRequest,
                reason: "no".into(),
                channel: None,
            }]
        );
    }

    #[test]
    fn an_ack_of_a_publish_awaiting_it_is_an_event_once() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        sent(&mut machine, t0, &mut (1..=2).map(publish).collect());
        events(&mut machine);
        machine.handle_frame(t0, text(json!({"op": "ack", "id": "p-2", "seq": 7})));
        machine.handle_frame(
            t0,
            text(json!({"op": "ack", "id": "p-1", "seq": 6, "duplicate": true})),
        );
        // Acknowledged already, or never sent: nothing to tell.
        machine.handle_frame(t0, text(json!({"op": "ack", "id": "p-2", "seq": 7})));
        machine.handle_frame(t0, text(json!({"op": "ack", "id": "p-9", "seq": 8})));
        assert_eq!(
            events(&mut machine),
            [
                Event::Published {
                    id: "p-2".into(),
                    channel: "c".into(),
                    seq: 7,
                    duplicate: false,
                },
                Event::Published {
                    id: "p-1".into(),
                    channel: "c".into(),
                    seq: 6,
                    duplicate: true,
                },
            ]
        );
        assert_eq!(machine.carried.unacked.len(), 0);
    }

    #[test]
    fn unavailable_sends_that_publish_and_later_ones_again_after_a_hold() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        let mut outbox: VecDeque<_> = (1..=3).map(publish).collect();
        sent(&mut machine, t0, &mut outbox);
        events(&mut machine);
        outbox.push_back(publish(4));
        let refused_at = t0 + Duration::from_millis(10);
        let unavailable =
            json!({"op": "error", "code": "unavailable", "reason": "broker down", "id": "p-2"});
        machine.handle_frame(refused_at, text(unavailable));
        assert!(
            events(&mut machine).is_empty(),
            "a retry is not the caller's business"
        );
        let released = refused_at + HOLD;
        assert_eq!(machine.poll_timeout(), Some(released));
        let early = released - Duration::from_millis(1);
        assert!(!machine.wants_transmit(early, &outbox));
        assert!(sent(&mut machine, early, &mut outbox).is_empty());
        machine.handle_timeout(released);
        assert!(machine.wants_transmit(released, &outbox));
        assert_eq!(
            published_ids(&sent(&mut machine, released, &mut outbox)),
            ["p-2", "p-3", "p-4"]
        );
        // p-1 was never refused: it still awaits its ack, first in line.
        assert_eq!(
            machine
                .carried
                .unacked
                .take_all()
                .front()
                .map(|p| p.id.as_str()),
            Some("p-1")
        );
    }

    #[test]
    fn rate_limited_sends_that_publish_again_after_the_hint_and_tells_the_caller() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        let mut outbox: VecDeque<_> = (1..=2).map(publish).collect();
        sent(&mut machine, t0, &mut outbox);
        events(&mut machine);
        let limited = json!({"op": "error", "code": "rate_limited", "reason": "slow down",
            "id": "p-2", "retry_after_ms": 40});
        machine.handle_frame(t0, text(limited));
        assert_eq!(
            events(&mut machine),
            [Event::Error {
                code: ErrorCode::RateLimited,
                reason: "slow down".into(),
                channel: None,
            }]
        );
        let released = t0 + Duration::from_millis(40);
        assert_eq!(machine.poll_timeout(), Some(released));
        machine.handle_timeout(released);
        assert_eq!(
            published_ids(&sent(&mut machine, released, &mut outbox)),
            ["p-2"]
        );
    }

    #[test]
    fn at_most_so_many_publishes_await_their_ack() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        let total = PUBLISHES_IN_FLIGHT as u64 + 10;
        let mut outbox: VecDeque<_> = (1..=total).map(publish).collect();
        let first = sent(&mut machine, t0, &mut outbox);
        assert_eq!(first.len(), PUBLISHES_IN_FLIGHT);
        assert!(!machine.wants_transmit(t0, &outbox));
        // Text waits behind the publishes too: the outbox keeps its order.
        outbox.push_front(Outgoing::Text("t".into()));
        assert!(sent(&mut machine, t0, &mut outbox).is_empty());
        machine.handle_frame(t0, text(json!({"op": "ack", "id": "p-1", "seq": 1})));
        assert_eq!(
            sent(&mut machine, t0, &mut outbox),
            [
                json!("t"),
                json!({"op": "publish", "channel": "c", "data": PUBLISHES_IN_FLIGHT + 1, "id": format!("p-{}", PUBLISHES_IN_FLIGHT + 1)})
            ]
        );
    }

    #[test]
    fn channel_messages_are_delivered_once_in_order_and_gaps_are_events() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &["c"], t0);
        events(&mut machine);
        machine.handle_frame(t0, subscribed("c", 2, "e1", None));
        for seq in [3, 3, 2, 6, 0, 7] {
            machine.handle_frame(t0, message("c", seq));
        }
        let heard = events(&mut machine);
        assert_eq!(delivered(&heard), [3, 6, 0, 7]);
        assert_eq!(
            heard[0],
            Event::Subscribed {
                channel: "c".into(),
                seq: 2,
                recovered: None
            }
        );
        assert_eq!(
            heard[2],
            Event::Gap {
                channel: "c".into(),
                from_seq: 4,
                to_seq: 5,
                reason: GapReason::Skipped
            }
        );

        // The history did not reach back; then the epoch changed.
        machine.handle_frame(t0, subscribed("c", 20, "e1", Some(false)));
        machine.handle_frame(t0, subscribed("c", 0, "e2", Some(false)));
        assert_eq!(
            events(&mut machine),
            [
                Event::Gap {
                    channel: "c".into(),
                    from_seq: 8,
                    to_seq: 20,
                    reason: GapReason::HistoryTooShort
                },
                Event::Subscribed {
                    channel: "c".into(),
                    seq: 20,
                    recovered: Some(false)
                },
                Event::Gap {
                    channel: "c".into(),
                    from_seq: 1,
                    to_seq: 0,
                    reason: GapReason::EpochChanged
                },
                Event::Subscribed {
                    channel: "c".into(),
                    seq: 0,
                    recovered: Some(false)
                },
            ]
        );
        machine.handle_frame(t0, message("c", 1));
        assert_eq!(delivered(&events(&mut machine)), [1]);
    }

    #[test]
    fn a_reconnect_hint_comes_with_the_end() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        machine.handle_frame(
            t0,
            text(json!({"op": "reconnect", "after_ms": 250, "reason": "restart"})),
        );
        assert_eq!(machine.poll_end(), None, "the hint alone ends nothing");
        machine.handle_frame(
            t0,
            Frame::Close {
                code: Some(1012),
                reason: "server restarting".into(),
            },
        );
        assert_eq!(
            machine.poll_end(),
            Some(End::Closed {
                reason: DisconnectReason::PeerClosed {
                    code: Some(1012),
                    reason: "server restarting".into()
                },
                retry_after: Some(Duration::from_millis(250)),
            })
        );
        assert_eq!(machine.poll_timeout(), None);
    }

    #[test]
    fn a_silent_server_is_dead_exactly_at_interval_plus_timeout() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        let mut outbox = VecDeque::new();
        sent(&mut machine, t0, &mut outbox);
        let heard = t0 + Duration::from_secs(1);
        machine.handle_frame(heard, Frame::Text("{}".into()));
        let mut pinged = Vec::new();
        while let Some(due) = machine.poll_timeout() {
            machine.handle_timeout(due);
            let frames = sent(&mut machine, due, &mut outbox);
            if let Some(end) = machine.poll_end() {
                assert_eq!(
                    end,
                    End::Closed {
                        reason: DisconnectReason::PingTimeout,
                        retry_after: None
                    }
                );
                assert_eq!(due, heard + HELLO_INTERVAL + HELLO_TIMEOUT);
                assert_eq!(frames, [json!({"close": 1011, "reason": "ping timeout"})]);
                assert_eq!(pinged, [heard + HELLO_INTERVAL]);
                return;
            }
            if !frames.is_empty() {
                pinged.push(due);
            }
        }
        panic!("never declared dead");
    }

    #[test]
    fn a_frame_at_the_deadline_comes_before_the_timeout() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        machine.handle_timeout(t0 + HELLO_INTERVAL);
        let deadline = machine.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + HELLO_INTERVAL + HELLO_TIMEOUT);
        machine.handle_frame(deadline, Frame::Pong(Bytes::new()));
        machine.handle_timeout(deadline);
        assert_eq!(machine.poll_end(), None);
        assert_eq!(machine.poll_timeout(), Some(deadline + HELLO_INTERVAL));
    }

    #[test]
    fn pings_are_answered_and_pongs_measure_the_round_trip() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        events(&mut machine);
        machine.handle_frame(t0, Frame::Ping(Bytes::from_static(b"abc")));
        assert_eq!(
            machine.poll_transmit(t0, &mut VecDeque::new()),
            Some(Frame::Pong(Bytes::from_static(b"abc")))
        );
        let pinged = t0 + HELLO_INTERVAL;
        machine.handle_timeout(pinged);
        let Some(Frame::Ping(payload)) = machine.poll_transmit(pinged, &mut VecDeque::new()) else {
            panic!("no Ping after the interval");
        };
        let rtt = Duration::from_millis(7);
        machine.handle_frame(pinged + rtt, Frame::Pong(payload));
        assert_eq!(events(&mut machine), [Event::RoundTrip(rtt)]);
        assert_eq!(machine.carried.failover.health(0).last_rtt, Some(rtt));
    }

    #[test]
    fn a_preferred_server_is_probed_when_due_and_a_success_switches() {
        let t0 = Instant::now();
        let mut carried = carried(2);
        carried.failover_mut().handle_failure(0, t0);
        let mut machine = ClientConnection::new(config(), carried, 1, Vec::new(), t0);
        machine.handle_frame(t0, hello());
        let due = t0 + RETRY;
        assert_eq!(machine.poll_timeout(), Some(t0 + HELLO_INTERVAL));
        // Keep the connection busy so only the probe is due.
        let mut now = t0;
        while now + HELLO_INTERVAL / 2 < due {
            now += HELLO_INTERVAL / 2;
            machine.handle_frame(now, Frame::Text("{}".into()));
        }
        assert_eq!(machine.poll_timeout(), Some(due));
        machine.handle_timeout(due - Duration::from_millis(1));
        assert_eq!(machine.poll_probe(), None, "too early");
        machine.handle_timeout(due);
        assert_eq!(machine.poll_probe(), Some(0));
        assert_eq!(machine.poll_probe(), None, "once");
        machine.handle_timeout(due);
        assert_eq!(machine.poll_probe(), None, "not again while it runs");

        // It failed: the next probe is one period later.
        machine.handle_probe_result(due, 0, false);
        machine.handle_frame(due, Frame::Text("{}".into()));
        assert_eq!(machine.poll_timeout(), Some(due + HELLO_INTERVAL));
        assert_eq!(
            machine.carried.failover.fail_back_due(1, due),
            Some(due + RETRY)
        );
        machine.handle_timeout(due + RETRY);
        assert_eq!(machine.poll_probe(), Some(0));

        // It worked: this connection closes with 1001 and the client moves.
        sent(&mut machine, due + RETRY, &mut VecDeque::new());
        machine.handle_probe_result(due + RETRY, 0, true);
        assert_eq!(machine.poll_end(), Some(End::Switch { server: 0 }));
        assert_eq!(
            sent(&mut machine, due + RETRY, &mut VecDeque::from([publish(1)])),
            [json!({"close": 1001, "reason": "moving to a preferred server"})]
        );
    }

    #[test]
    fn the_primary_is_never_probed() {
        let t0 = Instant::now();
        let mut machine = native(carried(2), &[], t0);
        machine.handle_timeout(t0 + RETRY * 10);
        assert_eq!(machine.poll_probe(), None);
    }

    /// Found by fuzzing (target `client_machine`): a caller that closed before the
    /// server said what it is, then a `hello`; the subscriptions went out after the
    /// close frame, and RFC 6455 allows no data after a close.
    #[test]
    fn nothing_goes_out_after_the_close_when_the_hello_comes_after_it() {
        let t0 = Instant::now();
        let mut machine = connect(carried(1), &["a"], t0);
        machine.handle_close(t0, &mut VecDeque::new());
        machine.handle_frame(t0, hello());
        let frames = sent(&mut machine, t0, &mut VecDeque::new());
        assert_eq!(frames, [json!({"close": 1000, "reason": "client closed"})]);
    }

    /// Found by fuzzing (target `client_machine`): a `hello` after the caller's close
    /// put a new liveness machine in place of the one that was closing, so the close
    /// handshake had no bound any more and Pings went out after the close frame.
    #[test]
    fn a_hello_after_the_close_leaves_the_close_bounded() {
        let t0 = Instant::now();
        let mut machine = connect(carried(1), &[], t0);
        machine.handle_close(t0, &mut VecDeque::new());
        machine.handle_frame(t0, hello());
        assert_eq!(machine.poll_timeout(), Some(t0 + CLOSE));
        machine.handle_timeout(t0 + CLOSE);
        let frames = sent(&mut machine, t0 + CLOSE, &mut VecDeque::new());
        assert_eq!(frames, [json!({"close": 1000, "reason": "client closed"})]);
        assert!(matches!(
            machine.poll_end(),
            Some(End::Closed {
                reason: DisconnectReason::LocalClose,
                ..
            })
        ));
    }

    #[test]
    fn closing_sends_what_waits_then_a_normal_close() {
        let t0 = Instant::now();
        let mut machine = native(carried(1), &[], t0);
        let mut outbox = VecDeque::from([Outgoing::Text("last words".into()), publish(1)]);
        machine.handle_close(t0, &mut outbox);
        assert!(outbox.is_empty());
        let frames = sent(&mut machine, t0, &mut VecDeque::from([publish(2)]));
        assert_eq!(frames[0], json!("last words"));
        assert_eq!(published_ids(&frames), ["p-1"]);
        assert_eq!(frames[2], json!({"close": 1000, "reason": "client closed"}));
        assert_eq!(frames.len(), 3);
        // The server's answer completes the handshake; the caller's reason stands.
        machine.handle_frame(
            t0,
            Frame::Close {
                code: Some(1000),
                reason: String::new(),
            },
        );
        assert_eq!(
            machine.poll_end(),
            Some(End::Closed {
                reason: DisconnectReason::LocalClose,
                retry_after: None
            })
        );

        // No answer: dropped after the close timeout.
        let mut unanswered = native(carried(1), &[], t0);
        unanswered.handle_close(t0, &mut VecDeque::new());
        assert_eq!(unanswered.poll_timeout(), Some(t0 + CLOSE));
        unanswered.handle_timeout(t0 + CLOSE);
        assert!(matches!(
            unanswered.poll_end(),
            Some(End::Closed {
                reason: DisconnectReason::LocalClose,
                ..
            })
        ));
    }
}
