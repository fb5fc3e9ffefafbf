//! A client's connection machine stepped against this server's connection logic on
//! synthetic time, without sockets: the rules that take both sides of a connection.
//!
//! A [`Pair`] joins a [`ClientConnection`] of `heartwire-core` to a [`Handler`] of the
//! native endpoint, over an in-memory broker whose clock the harness moves. Frames
//! cross as values; the harness can drop them in either direction (a cut, a lost
//! ack, a frozen server), and starts a new pair from what the client carried, as a
//! reconnect does.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use heartwire_core::client::{
    Carried, ClientConnection, ConnectionConfig, End, Event, Frame, Incoming, Outgoing, Publish,
};
use heartwire_core::protocol::ServerFrame;
use heartwire_core::{DisconnectReason, Failover};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::handler::{FrameSink, Handler};
use crate::auth::{Auth, Identity};
use crate::broker::{Clock, MemoryBroker, PublishRequest};
use crate::config::ServerConfig;
use crate::endpoint::native::Native;
use crate::endpoint::{self, Context, Endpoint, EndpointKind};
use crate::metrics::ServerMetrics;
use crate::publication::Payload;
use crate::registry::Registry;
use crate::slot::Slot;
use crate::state::ServerState;
use heartwire_core::protocol::session_name;

const CHANNEL: &str = "room";
/// Rounds of frames before the harness gives up on two sides that never fall quiet.
const MAX_ROUNDS: usize = 1000;

/// The wall-clock time at which every test begins.
const WALL_START: u64 = 1_700_000_000;

/// A clock moved by hand.
#[derive(Debug, Clone)]
struct HandClock(Arc<Mutex<Instant>>);

impl Clock for HandClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

/// The server every pair of a test connects to: its state, broker and clock.
struct Server {
    state: Arc<ServerState>,
    clock: HandClock,
    /// The instant the test began, which the wall clock reads as [`WALL_START`].
    started: Instant,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Server {
    fn new(now: Instant) -> Self {
        let config = ServerConfig::default();
        Self::with_config(config, now)
    }

    fn with_config(config: ServerConfig, now: Instant) -> Self {
        let clock = HandClock(Arc::new(Mutex::new(now)));
        let broker = Arc::new(MemoryBroker::with_clock(config.retention, clock.clone()));
        let auth = Auth::new(&config.access).expect("the test's access settings are valid");
        let state = Arc::new(ServerState {
            timings: crate::state::Timings::new(&config),
            overload: crate::overload::Overload::new(config.overload),
            config,
            broker,
            metrics: ServerMetrics::new(),
            registry: Registry::default(),
            auth,
            api_key: None,
            admin_sessions: Default::default(),
            key_guesses: Default::default(),
            node_reports: Default::default(),
            admission: crate::admission::Admission::default(),
            unupgraded: std::sync::atomic::AtomicUsize::new(0),
            pending_handshakes: std::sync::atomic::AtomicUsize::new(0),
            started: now,
            handover: Default::default(),
            timers: Default::default(),
        });
        Self {
            state,
            clock,
            started: now,
        }
    }

    /// Another publisher's message `n` on the channel.
    fn publish(&self, n: u64) {
        self.state.broker.publish(PublishRequest {
            channel: Arc::from(CHANNEL),
            payload: Payload::Json(serde_json::value::to_raw_value(&n).unwrap()),
            retain: false,
            origin: None,
            ack_id: None,
            publisher: Arc::from("u:test"),
        });
    }
}

/// What a server connection writes, as its socket would take it: nothing after a
/// close frame.
#[derive(Debug, Default)]
struct Wire {
    frames: Vec<Message>,
    closed: bool,
}

impl FrameSink for Wire {
    fn wants_more(&self) -> bool {
        !self.closed
    }

    fn queue(&mut self, outgoing: endpoint::Outgoing) {
        let message = match outgoing {
            endpoint::Outgoing::Message(message) => message,
            endpoint::Outgoing::Published(publication, encoding) => {
                Message::Text(publication.frame(encoding))
            }
        };
        if !self.closed {
            self.closed = matches!(message, Message::Close(_));
            self.frames.push(message);
        }
    }
}

/// One connection: a client machine, a server handler, and what crossed between them.
struct Pair {
    now: Instant,
    clock: HandClock,
    started: Instant,
    client: ClientConnection,
    outbox: VecDeque<Outgoing>,
    handler: Handler<Native>,
    wire: Wire,
    /// Whether frames reach the server, and the client.
    to_server: bool,
    to_client: bool,
    /// Every frame each side sent, delivered or not, with when.
    client_sent: Vec<(Instant, Frame)>,
    server_sent: Vec<(Instant, Message)>,
    events: Vec<Event>,
    client_end: Option<(Instant, End)>,
    server_end: Option<(Instant, DisconnectReason)>,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("now", &self.now)
            .field("client", &self.client)
            .field("client_sent", &self.client_sent)
            .field("server_sent", &self.server_sent)
            .field("events", &self.events)
            .field("client_end", &self.client_end)
            .field("server_end", &self.server_end)
            .finish_non_exhaustive()
    }
}

/// The client's settings: far from the server's, so the `hello` visibly wins.
fn client_config() -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(60),
        close_timeout: Duration::from_secs(10),
        unavailable_hold: Duration::from_millis(500),
    }
}

/// The wall-clock time at `now` of a test that began at `started`.
fn wall_at(started: Instant, now: Instant) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(WALL_START) + (now - started)
}

fn first_carried() -> Carried {
    Carried::new(Failover::new(1, Duration::from_secs(30)))
}

impl Pair {
    /// A connection opened at the server's current time, the client carrying `carried`.
    fn open(server: &mut Server, carried: Carried) -> Self {
        Self::open_as(server, carried, None)
    }

    /// A connection of `identity`, as [`open`](Self::open).
    fn open_as(server: &mut Server, carried: Carried, identity: Option<Identity>) -> Self {
        let now = *server.clock.0.lock().unwrap();
        let address = std::net::IpAddr::from([127, 0, 0, 1]);
        let mut slot = Slot::reserve(&server.state, address).expect("the server has room");
        let user = identity
            .as_ref()
            .map(|identity| Arc::from(identity.user.as_str()));
        slot.open(EndpointKind::Native, user);
        let context = Context::new(slot, identity.map(Box::new));
        let handler = Handler::open(Native::default(), context, now);
        let subscriptions = vec![CHANNEL.to_owned()];
        let client = ClientConnection::new(client_config(), carried, 0, subscriptions, now);
        Self {
            now,
            clock: server.clock.clone(),
            started: server.started,
            client,
            outbox: VecDeque::new(),
            handler,
            wire: Wire::default(),
            to_server: true,
            to_client: true,
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            events: Vec::new(),
            client_end: None,
            server_end: None,
        }
    }

    /// The server side ends (releasing its subscriptions); the client's state goes on.
    fn finish(self) -> Carried {
        let Self {
            mut handler,
            client,
            ..
        } = self;
        handler.endpoint.on_close(&mut handler.context);
        client.into_carried()
    }

    /// Moves frames both ways at the current instant until both sides are quiet.
    fn exchange(&mut self) {
        let now = self.now;
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            while let Some(frame) = self.client.poll_transmit(now, &mut self.outbox) {
                moved = true;
                self.client_sent.push((now, frame.clone()));
                if self.to_server {
                    self.handler.on_message(to_message(frame), now);
                }
            }
            self.handler.advance(now, self.wall());
            if let Some(reason) = self.handler.take_ended() {
                self.server_end.get_or_insert((now, reason));
            }
            self.handler.gather(&mut self.wire);
            for message in std::mem::take(&mut self.wire.frames) {
                moved = true;
                self.server_sent.push((now, message.clone()));
                if self.to_client {
                    self.client.handle_frame(now, to_frame(message));
                }
            }
            self.events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
            if let Some(end) = self.client.poll_end() {
                self.client_end = Some((now, end));
            }
            if !moved {
                return;
            }
        }
        panic!("still talking after {MAX_ROUNDS} rounds: {self:?}");
    }

    /// Moves time forward to `until`, stopping at every deadline of either side.
    /// Frames take no time: each is handled at the instant it was sent.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..MAX_ROUNDS {
            self.exchange();
            let next = [
                self.client.poll_timeout(),
                self.handler.poll_timeout(self.now, self.wall()),
            ]
            .into_iter()
            .flatten()
            .min()
            .filter(|&next| next <= until);
            self.set_now(next.unwrap_or(until).max(self.now));
            // Both timers fire before what either sends at this instant arrives.
            self.handler.advance(self.now, self.wall());
            self.client.handle_timeout(self.now);
            if next.is_none() {
                self.exchange();
                return;
            }
        }
        panic!("more than {MAX_ROUNDS} deadlines before {until:?}: {self:?}");
    }

    /// The wall-clock time now.
    fn wall(&self) -> SystemTime {
        wall_at(self.started, self.now)
    }

    fn set_now(&mut self, now: Instant) {
        self.now = now;
        *self.clock.0.lock().unwrap() = now;
    }

    /// The caller publishes `n` with id `p-n`.
    fn publish(&mut self, n: u64) {
        self.outbox.push_back(Outgoing::Publish(Publish {
            id: format!("p-{n}"),
            channel: CHANNEL.into(),
            data: json!(n),
        }));
    }

    /// The JSON text frames the client sent.
    fn client_texts(&self) -> Vec<Value> {
        let texts = self
            .client_sent
            .iter()
            .filter_map(|(_, frame)| match frame {
                Frame::Text(text) => Some(serde_json::from_str(text).unwrap()),
                _ => None,
            });
        texts.collect()
    }

    /// The ids of the publishes the client sent, in order.
    fn client_publishes(&self) -> Vec<String> {
        let publishes = self.client_texts().into_iter();
        let ids = publishes.filter(|frame| frame["op"] == "publish");
        ids.map(|frame| frame["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The JSON text frames the server sent.
    fn server_texts(&self) -> Vec<Value> {
        let texts = self
            .server_sent
            .iter()
            .filter_map(|(_, message)| match message {
                Message::Text(text) => Some(serde_json::from_str(text.as_str()).unwrap()),
                _ => None,
            });
        texts.collect()
    }

    /// The liveness timing the server's `hello` advertised.
    fn advertised(&self) -> (Duration, Duration) {
        let Some((_, Message::Text(text))) = self.server_sent.first() else {
            panic!("the server said nothing: {self:?}");
        };
        match ServerFrame::parse(text.as_str()).unwrap() {
            ServerFrame::Hello {
                ping_interval_ms,
                ping_timeout_ms,
                ..
            } => (
                Duration::from_millis(ping_interval_ms),
                Duration::from_millis(ping_timeout_ms),
            ),
            other => panic!("the first frame is not a hello: {other:?}"),
        }
    }

    /// The channel messages the application received, by `seq`.
    fn delivered(&self) -> Vec<u64> {
        let seqs = self.events.iter().filter_map(|event| match event {
            Event::Message(Incoming::Channel { seq, data, .. }) => {
                assert_eq!(*data, json!(seq), "message {seq} carries another's data");
                Some(*seq)
            }
            _ => None,
        });
        seqs.collect()
    }
}

/// What the server's reader would yield for a frame the client sent.
fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::Text(Utf8Bytes::from(text)),
        Frame::Binary(data) => Message::Binary(data),
        Frame::Ping(payload) => Message::Ping(payload),
        Frame::Pong(payload) => Message::Pong(payload),
        Frame::Close { code, reason } => Message::Close(code.map(|code| CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from(reason),
        })),
    }
}

/// What the client's socket would yield for a frame the server sent.
fn to_frame(message: Message) -> Frame {
    match message {
        Message::Text(text) => Frame::Text(text.as_str().to_owned()),
        Message::Binary(data) => Frame::Binary(data),
        Message::Ping(payload) => Frame::Ping(payload),
        Message::Pong(payload) => Frame::Pong(payload),
        Message::Close(frame) => Frame::Close {
            code: frame.as_ref().map(|frame| u16::from(frame.code)),
            reason: frame.map_or_else(String::new, |frame| frame.reason.as_str().to_owned()),
        },
        Message::Frame(_) => unreachable!("the server builds no raw frames"),
    }
}

#[test]
fn a_hello_makes_the_client_native_then_it_subscribes_publishes_and_is_acked() {
    let mut server = Server::new(Instant::now());
    let mut pair = Pair::open(&mut server, first_carried());
    pair.exchange();
    let session = session_name(pair.handler.context.mailbox().id());
    assert_eq!(
        pair.events,
        [
            Event::Open {
                server: 0,
                session: Some(session)
            },
            Event::Subscribed {
                channel: CHANNEL.into(),
                seq: 0,
                recovered: None
            }
        ]
    );
    assert_eq!(
        pair.client_texts(),
        [json!({"op": "subscribe", "channel": CHANNEL})]
    );

    pair.publish(1);
    pair.exchange();
    assert_eq!(pair.delivered(), [1]);
    assert!(
        pair.server_texts()
            .contains(&json!({"op": "ack", "id": "p-1", "seq": 1})),
        "{pair:?}"
    );
    // Acknowledged: the next connection does not send it again.
    let mut next = Pair::open(&mut server, pair.finish());
    next.exchange();
    assert!(next.client_publishes().is_empty(), "{next:?}");
}

#[test]
fn after_a_cut_the_next_connection_resumes_with_since_and_gets_exactly_what_it_missed() {
    let mut server = Server::new(Instant::now());
    let mut pair = Pair::open(&mut server, first_carried());
    pair.exchange();
    server.publish(1);
    server.publish(2);
    pair.exchange();
    assert_eq!(pair.delivered(), [1, 2]);
    let epoch = pair.server_texts()[1]["epoch"].clone();

    // The cut: what the server sends now is lost.
    pair.to_client = false;
    pair.to_server = false;
    for n in 3..=5 {
        server.publish(n);
    }
    pair.exchange();
    assert_eq!(pair.delivered(), [1, 2]);

    let mut next = Pair::open(&mut server, pair.finish());
    next.exchange();
    assert_eq!(
        next.client_texts()[0],
        json!({"op": "subscribe", "channel": CHANNEL, "since": {"epoch": epoch, "seq": 2}})
    );
    server.publish(6);
    next.exchange();
    assert_eq!(next.delivered(), [3, 4, 5, 6]);
    let gaps = next
        .events
        .iter()
        .filter(|event| matches!(event, Event::Gap { .. }));
    assert_eq!(gaps.count(), 0, "{next:?}");
}

#[test]
fn a_publish_sent_again_after_its_ack_was_lost_is_published_once() {
    let mut server = Server::new(Instant::now());
    let mut pair = Pair::open(&mut server, first_carried());
    pair.exchange();
    // The publish reaches the server; its ack (and the message) do not come back.
    pair.to_client = false;
    pair.publish(1);
    pair.exchange();
    assert_eq!(pair.client_publishes(), ["p-1"]);
    assert!(pair.delivered().is_empty());

    let mut next = Pair::open(&mut server, pair.finish());
    next.exchange();
    assert_eq!(next.client_publishes(), ["p-1"], "sent again, same id");
    assert!(
        next.server_texts()
            .contains(&json!({"op": "ack", "id": "p-1", "seq": 1, "duplicate": true})),
        "{next:?}"
    );
    // Replayed from history once; not published a second time.
    assert_eq!(next.delivered(), [1]);

    // The duplicate's ack ended it: nothing is sent again after that.
    let mut third = Pair::open(&mut server, next.finish());
    third.exchange();
    assert!(third.client_publishes().is_empty(), "{third:?}");
}

#[test]
fn pings_are_answered_both_ways_on_synthetic_time() {
    let t0 = Instant::now();
    let mut server = Server::new(t0);
    let mut pair = Pair::open(&mut server, first_carried());
    pair.exchange();
    let (interval, timeout) = pair.advertised();
    pair.run_until(t0 + (interval + timeout) * 3);

    let pinged_at = t0 + interval;
    let server_pings: Vec<_> = pair
        .server_sent
        .iter()
        .filter_map(|(at, message)| match message {
            Message::Ping(payload) => Some((*at, payload.clone())),
            _ => None,
        })
        .collect();
    let client_pongs: Vec<_> = pair
        .client_sent
        .iter()
        .filter_map(|(at, frame)| match frame {
            Frame::Pong(payload) => Some((*at, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(server_pings.first().map(|(at, _)| *at), Some(pinged_at));
    assert_eq!(
        client_pongs, server_pings,
        "each server Ping answered at once"
    );
    assert_eq!(pair.handler.liveness.rtt(), Some(Duration::ZERO));

    let client_pings = pair
        .client_sent
        .iter()
        .filter_map(|(at, frame)| match frame {
            Frame::Ping(payload) => Some((*at, payload.clone())),
            _ => None,
        });
    let client_pings: Vec<_> = client_pings.collect();
    let server_pongs: Vec<_> = pair
        .server_sent
        .iter()
        .filter_map(|(at, message)| match message {
            Message::Pong(payload) => Some((*at, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(client_pings.first().map(|(at, _)| *at), Some(pinged_at));
    assert_eq!(
        server_pongs, client_pings,
        "each client Ping answered at once"
    );
    assert!(pair.events.contains(&Event::RoundTrip(Duration::ZERO)));
    assert_eq!((pair.client_end, pair.server_end), (None, None));
}

#[test]
fn a_silent_server_is_dead_to_the_client_exactly_at_its_bound() {
    let t0 = Instant::now();
    let mut server = Server::new(t0);
    let mut pair = Pair::open(&mut server, first_carried());
    pair.exchange();
    let (interval, timeout) = pair.advertised();
    // Frozen: nothing the server sends arrives any more.
    pair.to_client = false;
    pair.run_until(t0 + (interval + timeout) * 2);
    assert_eq!(
        pair.client_end,
        Some((
            t0 + interval + timeout,
            End::Closed {
                reason: DisconnectReason::PingTimeout,
                retry_after: None
            }
        )),
        "{pair:?}"
    );
}

#[test]
fn the_reconnect_hint_of_a_server_shutdown_reaches_the_clients_end() {
    let mut server = Server::new(Instant::now());
    let mut pair = Pair::open(&mut server, first_carried());
    pair.exchange();
    pair.handler.context.mailbox().shut_down(250);
    pair.exchange();
    let Some((_, end)) = pair.client_end.clone() else {
        panic!("the client did not see the end: {pair:?}");
    };
    assert_eq!(
        end,
        End::Closed {
            reason: DisconnectReason::PeerClosed {
                code: Some(1012),
                reason: "server restarting; retry after 250 ms".into()
            },
            retry_after: Some(Duration::from_millis(250)),
        }
    );
}

/// A live upgrade hands a connection over with the position of the last message it
/// queued: here the subscription's confirmation and a message still wait in the
/// mailbox when the connection is offered, and both go into the unsent bytes.
#[tokio::test]
async fn a_connection_offered_for_a_live_upgrade_carries_the_positions_of_what_it_queued() {
    use crate::handover::state::{EndpointState, ReaderState};
    use crate::websocket::{Socket, SocketState};

    let server = Server::new(Instant::now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, peer) = listener.accept().await.unwrap();
    let empty = SocketState {
        reader: ReaderState {
            partial: Vec::new(),
            undecoded: false,
            fragmented: None,
        },
        unsent: Vec::new(),
        deflate: None,
    };
    let socket = Socket::resume(stream, empty, 1 << 20);
    let mut slot = Slot::reserve(&server.state, peer.ip()).expect("the server has room");
    slot.open(EndpointKind::Native, None);
    let now = *server.clock.0.lock().unwrap();
    let handler = Handler::open(Native::default(), Context::new(slot, None), now);
    let mut connection = super::Connection {
        socket,
        armed: None,
        handler,
    };
    let subscribe = heartwire_core::protocol::ClientFrame::Subscribe {
        channel: CHANNEL.into(),
        since: None,
    };
    let text = Message::Text(Utf8Bytes::from(subscribe.encode()));
    connection.handler.on_message(text, now);
    server.publish(1);
    let (state, _socket) = connection.offer(peer.ip()).expect("handed over");
    let EndpointState::Native { subscriptions } = state.endpoint else {
        panic!("a native connection's state");
    };
    let positions: Vec<_> = subscriptions
        .iter()
        .map(|held| {
            (
                held.channel.as_str(),
                held.position.as_ref().map(|at| at.seq),
            )
        })
        .collect();
    assert_eq!(positions, [(CHANNEL, Some(1))]);
    assert!(
        !state.unsent.is_empty(),
        "what waited went into the unsent bytes"
    );
}

/// A subscription resumed after a live upgrade keeps the position it came with until
/// the new process confirms it: handed over again before that, on either endpoint
/// that subscribes, it goes on from there rather than at the live edge.
#[test]
fn a_resumed_subscription_is_handed_over_again_at_its_position_before_it_is_confirmed() {
    use crate::endpoint::ws4redis::Ws4Redis;
    use crate::handover::state::{EndpointState, SubscriptionState, Ws4RedisState};
    use heartwire_core::protocol::Position;

    let server = Server::new(Instant::now());
    let carried = || {
        vec![SubscriptionState {
            channel: CHANNEL.into(),
            position: Some(Position {
                epoch: "e1".into(),
                seq: 7,
            }),
        }]
    };
    let context = |kind| {
        let mut slot = Slot::reserve(&server.state, [127, 0, 0, 1].into()).expect("room");
        slot.open(kind, None);
        Context::new(slot, None)
    };

    let native = Native::resume(carried(), &context(EndpointKind::Native));
    assert_eq!(
        native.hand_over(),
        Some(EndpointState::Native {
            subscriptions: carried()
        })
    );

    let socket = Ws4RedisState {
        facility: "chat".into(),
        echo: false,
        subscriptions: carried(),
        publishing: Vec::new(),
    };
    let ws4redis = Ws4Redis::resume(socket.clone(), &context(EndpointKind::Ws4Redis));
    assert_eq!(ws4redis.hand_over(), Some(EndpointState::Ws4Redis(socket)));
}
