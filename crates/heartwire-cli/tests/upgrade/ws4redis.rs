//! Live upgrade of django-websocket-redis sockets (`/ws/{facility}`): raw WebSocket
//! clients, with no envelope and no resume of their own, see the same socket go on
//! with every message once and in order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::Running;
use crate::traffic::{serve_with, socket_path, until};

/// What one raw socket saw: the texts, the longest wait between two, and anything
/// that ended it.
#[derive(Debug, Default)]
struct Seen {
    texts: Vec<String>,
    last_text: Option<Instant>,
    longest_silence: Duration,
    ended: Option<String>,
}

type Shared = Arc<Mutex<Seen>>;

/// Opens `/ws/chat?{flags}` on `addr` and records what arrives; returns the writing
/// half.
async fn open(
    addr: &str,
    flags: &str,
) -> (
    futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    Shared,
) {
    let url = format!("ws://{addr}/ws/chat?{flags}");
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (writer, mut reader) = socket.split();
    let seen = Shared::default();
    let recorder = seen.clone();
    tokio::spawn(async move {
        loop {
            let next = reader.next().await;
            let mut seen = recorder.lock().unwrap();
            match next {
                Some(Ok(Message::Text(text))) => {
                    let now = Instant::now();
                    if let Some(last) = seen.last_text {
                        seen.longest_silence = seen.longest_silence.max(now - last);
                    }
                    seen.last_text = Some(now);
                    seen.texts.push(text.to_string());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => {
                    seen.ended = Some(format!("{other:?}"));
                    return;
                }
            }
        }
    });
    (writer, seen)
}

/// Two subscribers of `broadcast:chat` and a publisher sending a numbered text every
/// 10 ms, across `upgrades` live upgrades in a row of a server run with `options`. The
/// publisher is subscribed too, without `echo`: it must receive none of its own
/// messages, before or after an upgrade.
async fn upgrade_under_traffic(name: &str, options: &[&str], upgrades: usize) {
    let (_dir, socket) = socket_path(name);
    let mut old = Running::start(serve_with(&socket, false, options));
    let addr = old.addr.clone();
    let subscribers = [
        open(&addr, "subscribe-broadcast").await.1,
        open(&addr, "subscribe-broadcast&echo").await.1,
    ];
    let (mut publisher, published) = open(&addr, "subscribe-broadcast&publish-broadcast").await;
    let metric_addr = addr.parse().unwrap();
    let adopted = "heartwire_connections_adopted_total{endpoint=\"ws4redis\"}";
    // Both subscriptions are made, none still joining, before anything is published.
    let deadline = Instant::now() + crate::common::PATIENCE;
    while heartwire_testkit::metric(metric_addr, "heartwire_subscriptions").await < 3.0
        || heartwire_testkit::metric(metric_addr, "heartwire_subscriptions_joining").await > 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the subscribers did not subscribe"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let ticks = tokio::spawn(async move {
        let mut sent = 0;
        while !stopped.load(std::sync::atomic::Ordering::Acquire) {
            publisher
                .send(Message::text(sent.to_string()))
                .await
                .unwrap();
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The last text: whatever came twice has arrived before it.
        publisher.send(Message::text("end")).await.unwrap();
        (publisher, sent)
    });
    let received = |at_least: usize| {
        subscribers
            .iter()
            .all(|seen| seen.lock().unwrap().texts.len() >= at_least)
    };
    until("the first messages", || received(20)).await;

    for round in 1..=upgrades {
        let new = Running::start(serve_with(&socket, true, options));
        assert_eq!(new.addr, addr, "the new process serves the same address");
        assert!(old.wait().success(), "the old process ends");
        old = new;
        let so_far = subscribers[0].lock().unwrap().texts.len();
        until("messages after the upgrade", || received(so_far + 20)).await;
        if round == 1 {
            assert_eq!(heartwire_testkit::metric(metric_addr, adopted).await, 3.0);
        }
    }

    stop.store(true, std::sync::atomic::Ordering::Release);
    let (_publisher, sent) = ticks.await.unwrap();
    until("every message", || {
        subscribers.iter().all(|seen| {
            let seen = seen.lock().unwrap();
            seen.ended.is_some() || seen.texts.last().is_some_and(|last| last == "end")
        })
    })
    .await;
    let expected: Vec<String> = (0..sent)
        .map(|n| n.to_string())
        .chain(["end".to_owned()])
        .collect();
    for (index, seen) in subscribers.iter().enumerate() {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.ended, None, "subscriber {index} was closed");
        assert!(
            seen.texts == expected,
            "subscriber {index}: lost, repeated or out of order: {:?}",
            seen.texts
        );
        // Half the server's ping interval and timeout (1 s + 2 s).
        assert!(
            seen.longest_silence < Duration::from_millis(1500),
            "subscriber {index} was silent for {:?}",
            seen.longest_silence
        );
        eprintln!(
            "subscriber {index}: {sent} messages, longest silence {:?}",
            seen.longest_silence
        );
    }
    let published = published.lock().unwrap();
    assert_eq!(published.ended, None, "the publisher was closed");
    assert!(published.texts.is_empty(), "{:?}", published.texts);
    drop(old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facility_sockets_move_across_two_upgrades_without_a_close_or_a_gap() {
    upgrade_under_traffic("upgrade-ws4redis", &[], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_facility_sockets_move_without_a_close_or_a_gap() {
    let redis = heartwire_testkit::redis::TestRedis::start();
    let url = redis.url();
    upgrade_under_traffic("upgrade-ws4redis-redis", &["--redis", url.as_str()], 1).await;
}
