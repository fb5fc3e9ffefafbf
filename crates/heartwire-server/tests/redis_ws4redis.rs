//! django-websocket-redis data compatibility through a real Redis, checked with
//! `redis-cli`: channel names, the prefix, raw PUBLISH, SETEX of the last message,
//! and GET on connect.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::SinkExt;
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{Retention, ServerConfig};
use heartwire_testkit::redis::{TestRedis, node, node_with_prefix};
use heartwire_testkit::{PATIENCE, connect, connect_native, next_frame, next_text, send};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Lines printed by a `redis-cli SUBSCRIBE channel`, read on a thread.
struct CliSubscriber {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl CliSubscriber {
    fn start(redis: &TestRedis, channel: &str) -> Self {
        let mut child = redis.spawn_cli(&["SUBSCRIBE", channel]);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        redis.wait_for_subscribers(channel, 1);
        Self { child, lines }
    }

    /// The payload of the next `message` the subscriber printed.
    fn next_message(&self) -> String {
        let deadline = std::time::Instant::now() + PATIENCE;
        let next = || {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.lines
                .recv_timeout(left)
                .expect("redis-cli printed in time")
        };
        while next() != "message" {}
        let _channel = next();
        next()
    }
}

impl Drop for CliSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_redis_publish_reaches_a_facility_subscriber_once() {
    let redis = TestRedis::start();
    let a = node(&redis, ServerConfig::default()).await;
    let b = node(&redis, ServerConfig::default()).await;
    let mut reader = connect(&b.url("/ws/chat?subscribe-broadcast")).await;
    redis.wait_for_subscribers("broadcast:chat", 1);
    assert_eq!(redis.cli(&["PUBLISH", "broadcast:chat", "hi"]).trim(), "1");
    assert_eq!(next_text(&mut reader).await, "hi");

    // heartwire's own publish reaches the other node once, not once per Redis channel.
    let mut writer = connect(&a.url("/ws/chat?publish-broadcast")).await;
    writer.send(Message::text("one")).await.unwrap();
    writer.send(Message::text("two")).await.unwrap();
    assert_eq!(next_text(&mut reader).await, "one");
    assert_eq!(next_text(&mut reader).await, "two");
    redis.cli(&["PUBLISH", "broadcast:chat", "three"]);
    assert_eq!(
        next_text(&mut reader).await,
        "three",
        "no second copy of two"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartwire_publish_is_raw_text_on_the_exact_channel_and_kept_with_setex() {
    let redis = TestRedis::start();
    let persist_for = Duration::from_secs(600);
    let config = ServerConfig {
        retention: Retention {
            persist_for,
            ..Retention::default()
        },
        ..ServerConfig::default()
    };
    let server = node(&redis, config).await;
    let django = CliSubscriber::start(&redis, "broadcast:chat");
    let mut writer = connect(&server.url("/ws/chat?publish-broadcast")).await;
    writer.send(Message::text("hello django")).await.unwrap();
    assert_eq!(
        tokio::task::block_in_place(|| django.next_message()),
        "hello django"
    );
    assert_eq!(redis.cli(&["GET", "broadcast:chat"]).trim(), "hello django");
    let ttl: u64 = redis
        .cli(&["TTL", "broadcast:chat"])
        .trim()
        .parse()
        .unwrap();
    assert!(
        ttl <= persist_for.as_secs() && ttl + 5 >= persist_for.as_secs(),
        "TTL {ttl} s, persist-for {persist_for:?}"
    );

    // A native publish on the facility's channel reaches Django as raw text too.
    let (mut native, _) = connect_native(&server).await;
    let publish = ClientFrame::Publish {
        channel: "broadcast:chat".into(),
        data: json!("from /ws"),
        id: None,
    };
    send(&mut native, &publish).await;
    assert_eq!(
        tokio::task::block_in_place(|| django.next_message()),
        "from /ws"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_prefix_every_name_carries_it() {
    let redis = TestRedis::start();
    let server = node_with_prefix(&redis, ServerConfig::default(), "ws4redis").await;
    let django = CliSubscriber::start(&redis, "ws4redis:broadcast:chat");
    let mut reader = connect(&server.url("/ws/chat?subscribe-broadcast")).await;
    redis.wait_for_subscribers("ws4redis:broadcast:chat", 2);
    let mut writer = connect(&server.url("/ws/chat?publish-broadcast")).await;
    writer.send(Message::text("prefixed")).await.unwrap();
    assert_eq!(
        tokio::task::block_in_place(|| django.next_message()),
        "prefixed"
    );
    assert_eq!(next_text(&mut reader).await, "prefixed");
    assert_eq!(
        redis.cli(&["GET", "ws4redis:broadcast:chat"]).trim(),
        "prefixed"
    );
    assert_eq!(redis.cli(&["EXISTS", "broadcast:chat"]).trim(), "0");
    redis.cli(&["PUBLISH", "ws4redis:broadcast:chat", "from django"]);
    assert_eq!(next_text(&mut reader).await, "from django");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_set_in_redis_before_connect_is_served_first() {
    let redis = TestRedis::start();
    let server = node(&redis, ServerConfig::default()).await;
    redis.cli(&["SETEX", "broadcast:news", "60", "kept by django"]);
    let mut late = connect(&server.url("/ws/news?subscribe-broadcast")).await;
    assert_eq!(next_text(&mut late).await, "kept by django");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_publish_reaches_native_subscribers_outside_the_sequence() {
    let redis = TestRedis::start();
    let server = node(&redis, ServerConfig::default()).await;
    let (mut native, _) = connect_native(&server).await;
    send(
        &mut native,
        &ClientFrame::Subscribe {
            channel: "broadcast:chat".into(),
            since: None,
        },
    )
    .await;
    assert!(matches!(
        next_frame(&mut native).await,
        ServerFrame::Subscribed { .. }
    ));
    redis.cli(&["PUBLISH", "broadcast:chat", "raw"]);
    assert_eq!(
        next_frame(&mut native).await,
        ServerFrame::Message {
            channel: "broadcast:chat".into(),
            seq: 0,
            data: json!("raw")
        }
    );
}
