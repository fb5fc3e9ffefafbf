//! The client resumes without loss on one node (the in-memory broker): its connection
//! is cut by a proxy that stops forwarding bytes, and after the reconnect
//!
//! - a numbered stream published meanwhile reaches the application exactly once, in
//!   order;
//! - a gap the server's history cannot fill reaches the application as `Event::Gap`;
//! - publishes in flight at the cut or made while disconnected are each published
//!   exactly once, in order.

use std::time::Duration;

use futures_util::StreamExt;
use heartwire_client::{self as client, Client, ClientConfig, Event, Events, GapReason, Incoming};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_core::{BackoffConfig, Delay};
use heartwire_server::{LivenessTiming, Retention, ServerConfig};
use heartwire_testkit::client::{Direction, Fault, proxy_to, wait_for};
use heartwire_testkit::{PATIENCE, Socket, TestServer, connect_native, next_frame, send};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
const BASE: Duration = Duration::from_millis(50);
const CAP: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(1000);
/// From the cut to the client subscribed again: silence noticed, one backoff window,
/// and an attempt that may hang on the cut path until its timeout, then another.
const RESUME_BOUND: Duration = Duration::from_millis(
    (PING_INTERVAL.as_millis() + PING_TIMEOUT.as_millis()) as u64
        + 2 * (CAP.as_millis() + CONNECT_TIMEOUT.as_millis()) as u64,
);
const CHANNEL: &str = "stream";

async fn start_server(history_size: usize) -> TestServer {
    TestServer::start(ServerConfig {
        liveness: LivenessTiming {
            ping_interval: PING_INTERVAL,
            ping_timeout: PING_TIMEOUT,
            close_timeout: Duration::from_millis(200),
        },
        retention: Retention {
            history_size,
            ..Retention::default()
        },
        ..ServerConfig::default()
    })
    .await
}

/// A client of `url`, subscribed to the stream, with short backoff and timeouts.
fn client_of(url: &str) -> (Client, Events) {
    let mut config = ClientConfig::new([url]).unwrap();
    config.backoff = BackoffConfig {
        delay: Delay::Exponential {
            base: BASE,
            cap: CAP,
        },
        ..BackoffConfig::default()
    };
    config.connect_timeout = CONNECT_TIMEOUT;
    config.subscriptions = vec![CHANNEL.into()];
    config.jitter_seed = Some(7);
    client::connect(config).unwrap()
}

/// Waits until the server confirmed the stream's subscription, so that what is
/// published from other connections from now on reaches the client.
async fn wait_subscribed(events: &mut Events) {
    wait_for(events, PATIENCE, "subscribed", |event| {
        matches!(event, Event::Subscribed { .. })
    })
    .await;
}

/// Publishes `numbers` on the stream from a fresh socket straight to the server and
/// waits for every ack, so they are in the channel's history when this returns.
async fn publish_acked(server: &TestServer, numbers: std::ops::RangeInclusive<u64>) {
    let (mut socket, _) = connect_native(server).await;
    for n in numbers.clone() {
        let frame = ClientFrame::Publish {
            channel: CHANNEL.into(),
            data: json!(n),
            id: Some(format!("direct-{n}")),
        };
        send(&mut socket, &frame).await;
    }
    for n in numbers {
        match next_frame(&mut socket).await {
            ServerFrame::Ack { id, .. } => assert_eq!(id, format!("direct-{n}")),
            other => panic!("expected the ack of {n}, got {other:?}"),
        }
    }
}

/// Collects the numbers of the stream's messages as the application sees them, until
/// `count` arrived or `within` passed; gaps are collected too.
async fn collect_numbers(
    events: &mut Events,
    count: usize,
    within: Duration,
) -> (Vec<u64>, Vec<Event>) {
    let deadline = tokio::time::Instant::now() + within;
    let (mut numbers, mut gaps) = (Vec::new(), Vec::new());
    while numbers.len() < count {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(Event::Message(Incoming::Channel { data, .. }))) => {
                numbers.push(data.as_u64().expect("a number"));
            }
            Ok(Some(gap @ Event::Gap { .. })) => gaps.push(gap),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    (numbers, gaps)
}

/// Reads a raw subscriber's messages until `count` arrived or `within` passed.
async fn subscriber_numbers(socket: &mut Socket, count: usize, within: Duration) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + within;
    let mut numbers = Vec::new();
    while numbers.len() < count {
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await else {
            break;
        };
        if let Message::Text(text) = message {
            if let Ok(ServerFrame::Message { data, .. }) = ServerFrame::parse(text.as_str()) {
                numbers.push(data.as_u64().expect("a number"));
            }
        }
    }
    numbers
}

#[tokio::test]
async fn a_stream_published_across_a_cut_is_seen_once_and_in_order() {
    const TOTAL: u64 = 1000;
    const EVERY: Duration = Duration::from_millis(2);
    let server = start_server(ServerConfig::default().retention.history_size).await;
    let proxy = proxy_to(server.addr).await;
    let (client, mut events) = client_of(&format!("ws://{}/ws", proxy.local_addr()));
    wait_subscribed(&mut events).await;

    // A publisher straight to the server keeps publishing one number every EVERY.
    let (publisher, mut publisher_events) = client_of(&server.url("/ws"));
    wait_subscribed(&mut publisher_events).await;
    let stream = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        for n in 1..=TOTAL {
            tick.tick().await;
            publisher.publish(CHANNEL, json!(n)).unwrap();
        }
        publisher
    });

    let (before, _) = collect_numbers(&mut events, 100, PATIENCE).await;
    assert_eq!(before, (1..=100).collect::<Vec<_>>());
    // Cut: the open connection goes silent both ways; new connections get through.
    proxy.set(Fault::Blackhole {
        direction: Direction::Both,
    });
    proxy.set(Fault::None);
    let within = EVERY * TOTAL as u32 + RESUME_BOUND + SLACK;
    let (after, gaps) = collect_numbers(&mut events, (TOTAL - 100) as usize, within).await;
    let seen: Vec<u64> = before.into_iter().chain(after).collect();
    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert!(gaps.is_empty(), "no gap expected: {gaps:?}");
    assert_eq!(seen.len(), expected.len(), "every number once");
    assert_eq!(seen, expected, "in order");

    let publisher = stream.await.unwrap();
    publisher.close();
    client.close();
}

#[tokio::test]
async fn a_gap_the_history_cannot_fill_reaches_the_application() {
    const HISTORY: usize = 4;
    let server = start_server(HISTORY).await;
    let proxy = proxy_to(server.addr).await;
    let (client, mut events) = client_of(&format!("ws://{}/ws", proxy.local_addr()));
    wait_subscribed(&mut events).await;
    publish_acked(&server, 1..=1).await;
    assert_eq!(collect_numbers(&mut events, 1, PATIENCE).await.0, [1]);

    proxy.set(Fault::Blackhole {
        direction: Direction::Both,
    });
    wait_for(
        &mut events,
        RESUME_BOUND + SLACK,
        "the cut noticed",
        |event| matches!(event, Event::Reconnecting { .. }),
    )
    .await;
    // Ten messages while away: more than the history holds.
    publish_acked(&server, 2..=11).await;
    proxy.set(Fault::None);

    let (gap, _) = wait_for(&mut events, RESUME_BOUND + SLACK, "the gap", |event| {
        matches!(event, Event::Gap { .. } | Event::Message(_))
    })
    .await;
    assert_eq!(
        gap,
        Event::Gap {
            channel: CHANNEL.into(),
            from_seq: 2,
            to_seq: 11,
            reason: GapReason::HistoryTooShort,
        }
    );
    // The client continues from the server's position.
    publish_acked(&server, 12..=12).await;
    let (numbers, gaps) = collect_numbers(&mut events, 1, PATIENCE).await;
    assert_eq!(numbers, [12]);
    assert!(gaps.is_empty(), "{gaps:?}");
    client.close();
}

#[tokio::test]
async fn publishes_across_a_cut_are_published_once_and_in_order() {
    const TOTAL: u64 = 200;
    const BEFORE_CUT: u64 = 100;
    let server = start_server(ServerConfig::default().retention.history_size).await;
    let (mut subscriber, _) = connect_native(&server).await;
    heartwire_testkit::subscribe(&mut subscriber, CHANNEL).await;
    let proxy = proxy_to(server.addr).await;
    let (client, mut events) = client_of(&format!("ws://{}/ws", proxy.local_addr()));
    wait_subscribed(&mut events).await;

    // Half go out and the cut falls among them: some reach the server with their
    // ack lost, some are swallowed. The other half wait while disconnected.
    for n in 1..=BEFORE_CUT {
        client.publish(CHANNEL, json!(n)).unwrap();
    }
    let mut numbers = subscriber_numbers(&mut subscriber, 1, PATIENCE).await;
    proxy.set(Fault::Blackhole {
        direction: Direction::Both,
    });
    for n in BEFORE_CUT + 1..=TOTAL {
        client.publish(CHANNEL, json!(n)).unwrap();
    }
    proxy.set(Fault::None);

    let rest = TOTAL as usize - numbers.len();
    numbers.extend(subscriber_numbers(&mut subscriber, rest, RESUME_BOUND + SLACK).await);
    assert_eq!(numbers, (1..=TOTAL).collect::<Vec<_>>());
    // Nothing more follows: no publish went out twice.
    let extra = subscriber_numbers(&mut subscriber, 1, PING_INTERVAL + PING_TIMEOUT).await;
    assert!(extra.is_empty(), "published twice: {extra:?}");
    assert_eq!(client.queued(), 0);
    client.close();
}
