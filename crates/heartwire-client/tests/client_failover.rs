//! The client against real heartwire servers: a frozen primary is detected within the
//! bound its `hello` advertised, the client moves to the backup with its
//! subscriptions, and goes back to the primary once it answers again; between
//! independent servers, each message reaches the application once.

use std::net::SocketAddr;
use std::time::Duration;

use heartwire_client::{self as client, ClientConfig, Event, GapReason, Incoming};
use heartwire_core::{BackoffConfig, Delay};
use heartwire_server::{LivenessTiming, Server, ServerConfig};
use heartwire_testkit::client::{Direction, Fault, proxy_to, wait_for};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
const BASE: Duration = Duration::from_millis(50);
const CAP: Duration = Duration::from_millis(200);
const FAIL_BACK_AFTER: Duration = Duration::from_millis(600);
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(400);

async fn start_server(stop: &CancellationToken) -> SocketAddr {
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        liveness: LivenessTiming {
            ping_interval: PING_INTERVAL,
            ping_timeout: PING_TIMEOUT,
            close_timeout: Duration::from_millis(200),
        },
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let stop = stop.clone();
    tokio::spawn(server.run(async move { stop.cancelled().await }));
    addr
}

fn is_own_message(event: &Event, expected: &serde_json::Value) -> bool {
    matches!(event, Event::Message(Incoming::Channel { channel, data, .. })
        if channel == "room" && data == expected)
}

#[tokio::test]
async fn frozen_primary_fails_over_to_backup_and_back() {
    let stop = CancellationToken::new();
    let primary = start_server(&stop).await;
    let backup = start_server(&stop).await;
    let proxy = proxy_to(primary).await;
    let primary_url = format!("ws://{}/ws", proxy.local_addr());
    let backup_url = format!("ws://{backup}/ws");

    let mut config = ClientConfig::new([&primary_url, &backup_url]).unwrap();
    // Deliberately long: the server's hello must override them.
    config.ping_interval = Duration::from_secs(30);
    config.ping_timeout = Duration::from_secs(30);
    config.backoff = BackoffConfig {
        delay: Delay::Exponential {
            base: BASE,
            cap: CAP,
        },
        ..BackoffConfig::default()
    };
    config.fail_back_after = FAIL_BACK_AFTER;
    config.subscriptions = vec!["room".into()];
    config.jitter_seed = Some(1);
    let (client, mut events) = client::connect(config).unwrap();

    let within = Duration::from_secs(5);
    let (open, _) = wait_for(&mut events, within, "open on the primary", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    let Event::Open { url, session } = open else {
        unreachable!()
    };
    assert_eq!(url.as_str(), primary_url);
    assert!(session.is_some(), "a heartwire server sends hello");
    client.publish("room", json!("on primary")).unwrap();
    wait_for(&mut events, within, "own message on the primary", |event| {
        is_own_message(event, &json!("on primary"))
    })
    .await;
    // RTT is measured from the client's own Pings, one ping interval in.
    let rtt_deadline = tokio::time::Instant::now() + PING_INTERVAL * 3 + SLACK;
    while client.rtt().is_none() {
        assert!(
            tokio::time::Instant::now() < rtt_deadline,
            "no RTT measured"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let frozen_at = std::time::Instant::now();
    proxy.set(Fault::Blackhole {
        direction: Direction::Both,
    });
    let (reconnecting, noticed_at) = wait_for(
        &mut events,
        within,
        "reconnecting after the freeze",
        |event| matches!(event, Event::Reconnecting { .. }),
    )
    .await;
    let detected = noticed_at - frozen_at;
    let bound = PING_INTERVAL + PING_TIMEOUT + SLACK;
    assert!(
        detected <= bound,
        "frozen primary noticed after {detected:?}, bound {bound:?}"
    );
    let Event::Reconnecting { reason, delay, .. } = reconnecting else {
        unreachable!()
    };
    assert_eq!(reason, "ping timeout");
    assert!(delay <= CAP);

    let (open, opened_at) = wait_for(&mut events, within, "open on the backup", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    let Event::Open { url, .. } = open else {
        unreachable!()
    };
    assert_eq!(url.as_str(), backup_url, "fails over to the backup");
    assert!(opened_at - noticed_at <= CAP + SLACK);
    // The subscription was restored: the client's own publish comes back.
    client.publish("room", json!("on backup")).unwrap();
    wait_for(&mut events, within, "own message on the backup", |event| {
        is_own_message(event, &json!("on backup"))
    })
    .await;

    // The primary answers again: the client goes back to it.
    proxy.set(Fault::None);
    let (open, back_at) = wait_for(&mut events, within, "fail-back to the primary", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    let Event::Open { url, .. } = open else {
        unreachable!()
    };
    assert_eq!(url.as_str(), primary_url, "fails back to the primary");
    let fail_back_bound = FAIL_BACK_AFTER + SLACK;
    assert!(
        back_at - noticed_at <= fail_back_bound,
        "fail-back after {:?}, bound {fail_back_bound:?}",
        back_at - noticed_at
    );
    client.publish("room", json!("back on primary")).unwrap();
    wait_for(
        &mut events,
        within,
        "own message after fail-back",
        |event| is_own_message(event, &json!("back on primary")),
    )
    .await;

    client.close();
    wait_for(&mut events, within, "closed", |event| {
        matches!(event, Event::Closed { .. })
    })
    .await;
    stop.cancel();
}

/// Events until `what` arrives, bounded by `within`; the channel messages among them
/// are appended to `received`, and the gaps' reasons to `gaps`.
async fn collect_until(
    events: &mut heartwire_client::Events,
    within: Duration,
    what: &str,
    received: &mut Vec<serde_json::Value>,
    gaps: &mut Vec<GapReason>,
    until: impl Fn(&Event) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}; received {received:?}"))
            .unwrap_or_else(|| panic!("events ended before {what}"));
        match &event {
            Event::Message(Incoming::Channel { channel, data, .. }) if channel == "room" => {
                received.push(data.clone());
            }
            Event::Gap { reason, .. } => gaps.push(*reason),
            _ => {}
        }
        if until(&event) {
            return;
        }
    }
}

/// Two independent servers number the channel in two epochs; a client that fails over
/// and back is answered with the primary's whole epoch again, and delivers each message
/// once all the same, telling of each change of epoch.
#[tokio::test]
async fn failing_over_between_independent_servers_and_back_delivers_each_message_once() {
    let stop = CancellationToken::new();
    let primary = start_server(&stop).await;
    let backup = start_server(&stop).await;
    let proxy = proxy_to(primary).await;
    let primary_url = format!("ws://{}/ws", proxy.local_addr());
    let backup_url = format!("ws://{backup}/ws");
    let mut config = ClientConfig::new([&primary_url, &backup_url]).unwrap();
    config.backoff = BackoffConfig {
        delay: Delay::Exponential {
            base: BASE,
            cap: CAP,
        },
        ..BackoffConfig::default()
    };
    config.fail_back_after = FAIL_BACK_AFTER;
    config.subscriptions = vec!["room".into()];
    config.jitter_seed = Some(2);
    let (client, mut events) = client::connect(config).unwrap();

    let within = Duration::from_secs(5);
    let (mut received, mut gaps) = (Vec::new(), Vec::new());
    let opened_on = |url: &str| {
        let url = url.to_owned();
        move |event: &Event| matches!(event, Event::Open { url: at, .. } if at.as_str() == url)
    };
    collect_until(
        &mut events,
        within,
        "open on the primary",
        &mut received,
        &mut gaps,
        opened_on(&primary_url),
    )
    .await;
    for data in ["p1", "p2"] {
        client.publish("room", json!(data)).unwrap();
    }
    collect_until(
        &mut events,
        within,
        "p2",
        &mut received,
        &mut gaps,
        |event| is_own_message(event, &json!("p2")),
    )
    .await;

    proxy.set(Fault::Blackhole {
        direction: Direction::Both,
    });
    collect_until(
        &mut events,
        within,
        "open on the backup",
        &mut received,
        &mut gaps,
        opened_on(&backup_url),
    )
    .await;
    client.publish("room", json!("b1")).unwrap();
    collect_until(
        &mut events,
        within,
        "b1",
        &mut received,
        &mut gaps,
        |event| is_own_message(event, &json!("b1")),
    )
    .await;

    proxy.set(Fault::None);
    collect_until(
        &mut events,
        within,
        "back on the primary",
        &mut received,
        &mut gaps,
        opened_on(&primary_url),
    )
    .await;
    client.publish("room", json!("p3")).unwrap();
    collect_until(
        &mut events,
        within,
        "p3",
        &mut received,
        &mut gaps,
        |event| is_own_message(event, &json!("p3")),
    )
    .await;

    assert_eq!(
        received,
        [json!("p1"), json!("p2"), json!("b1"), json!("p3")]
    );
    assert_eq!(gaps, [GapReason::EpochChanged, GapReason::EpochChanged]);
    client.close();
    stop.cancel();
}
