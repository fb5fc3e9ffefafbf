//! The client fails over between nodes that share channels through Redis, and loses
//! nothing: its node dies in the middle of a stream of 10,000 numbered messages and
//!
//! - every message published on a third node reaches the client's application exactly
//!   once, in order, the ones missed during the fail-over replayed by the other node;
//! - every message the client publishes across the fail-over reaches a subscriber on a
//!   third node exactly once, in order (Redis remembers the publish ids for every node).
//!
//! The dying node is behind a proxy that stops forwarding bytes, as a dead machine or a
//! cut cable does, and its server is stopped; the client notices only by its liveness
//! checks. Each test runs its own `redis-server` (`scripts/test` installs it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use heartwire_client::{self as client, Client, ClientConfig, Event, Events, Incoming};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_core::{BackoffConfig, Delay};
use heartwire_server::{
    LivenessTiming, RateLimits, RedisBroker, RedisConfig, Retention, ServerConfig,
};
use heartwire_testkit::client::{Direction, Fault, Proxy, proxy_to};
use heartwire_testkit::redis::TestRedis;
use heartwire_testkit::{
    Socket, TestServer, connect_native, next_frame, send, subscribe, wait_for_health,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const TOTAL: u64 = 10_000;
/// When this many have arrived, the client's node dies.
const CUT_AT: u64 = 3_000;
const CHANNEL: &str = "stream";
const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The whole stream, fail-over included, on a shared 2-core machine in a debug build.
const STREAM_BOUND: Duration = Duration::from_secs(90);
/// Publishes the third node's publisher keeps unacknowledged at once.
const WINDOW: u64 = 100;

/// A node on `redis` whose history holds the whole stream, so what the client misses
/// while it fails over can always be replayed.
async fn node(redis: &TestRedis) -> TestServer {
    let config = ServerConfig {
        liveness: LivenessTiming {
            ping_interval: PING_INTERVAL,
            ping_timeout: PING_TIMEOUT,
            close_timeout: Duration::from_millis(200),
        },
        retention: Retention {
            history_size: TOTAL as usize,
            ..Retention::default()
        },
        // The publisher streams as fast as it can: the subject is the fail-over.
        rates: RateLimits {
            message_rate: "0/s".parse().unwrap(),
            ..RateLimits::default()
        },
        ..ServerConfig::default()
    };
    let redis_config = RedisConfig::single(redis.url());
    let broker = RedisBroker::start(&redis_config, config.retention, config.holdings)
        .expect("broker starts");
    let server = TestServer::start_with_broker(config, Arc::new(broker)).await;
    wait_for_health(&server, "ok").await;
    server
}

/// Three nodes; the first behind a proxy that can cut it off.
struct Cluster {
    _redis: TestRedis,
    doomed: Option<TestServer>,
    proxy: Proxy,
    backup: TestServer,
    third: TestServer,
}

impl Cluster {
    async fn start() -> Self {
        let redis = TestRedis::start();
        let doomed = node(&redis).await;
        let proxy = proxy_to(doomed.addr).await;
        let backup = node(&redis).await;
        let third = node(&redis).await;
        Self {
            _redis: redis,
            doomed: Some(doomed),
            proxy,
            backup,
            third,
        }
    }

    /// A client of the doomed node, with the backup as its second endpoint.
    fn client(&self, configure: impl FnOnce(&mut ClientConfig)) -> (Client, Events) {
        let primary = format!("ws://{}/ws", self.proxy.local_addr());
        let mut config = ClientConfig::new([primary, self.backup.url("/ws")]).unwrap();
        config.backoff = BackoffConfig {
            delay: Delay::Exponential {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(200),
            },
            ..BackoffConfig::default()
        };
        config.connect_timeout = CONNECT_TIMEOUT;
        // The dead node never comes back: no fail-back probes during the test.
        config.fail_back_after = Duration::from_secs(3600);
        config.jitter_seed = Some(11);
        configure(&mut config);
        client::connect(config).unwrap()
    }

    /// The client's node dies: not a byte more either way, and its server stops.
    fn kill_doomed(&mut self) -> Instant {
        self.proxy.set(Fault::Blackhole {
            direction: Direction::Both,
        });
        drop(self.doomed.take());
        Instant::now()
    }

    fn backup_url(&self) -> String {
        self.backup.url("/ws")
    }
}

/// Publishes 1..=TOTAL on the stream from one socket, keeping at most [`WINDOW`]
/// unacknowledged; panics on a refusal.
async fn publish_stream(mut socket: Socket) {
    let mut acked = 0;
    let mut sent = 0;
    while acked < TOTAL {
        while sent < TOTAL && sent - acked < WINDOW {
            sent += 1;
            let frame = ClientFrame::Publish {
                channel: CHANNEL.into(),
                data: json!(sent),
                id: Some(format!("stream-{sent}")),
            };
            send(&mut socket, &frame).await;
        }
        match next_frame(&mut socket).await {
            ServerFrame::Ack { .. } => acked += 1,
            other => panic!("the publisher got {other:?}"),
        }
    }
}

/// Reads a raw subscriber's numbers until `count` arrived in all or `deadline` passed.
async fn read_numbers(socket: &mut Socket, numbers: &mut Vec<u64>, count: u64, deadline: Instant) {
    while (numbers.len() as u64) < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(other) => panic!("the subscriber's socket ended: {other:?}"),
            Err(_) => return,
        };
        match message {
            Message::Text(text) => {
                if let Ok(ServerFrame::Message { data, .. }) = ServerFrame::parse(text.as_str()) {
                    numbers.push(data.as_u64().expect("a number"));
                }
            }
            Message::Close(frame) => panic!("the subscriber was closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Where `numbers` departs from 1, 2, 3…: lost, repeated or reordered ones.
fn check_sequence(numbers: &[u64]) {
    let repeated = numbers.windows(2).filter(|pair| pair[1] <= pair[0]).count();
    let lost = numbers
        .windows(2)
        .filter(|pair| pair[1] > pair[0] + 1)
        .count();
    assert_eq!(
        (repeated, lost, numbers.len() as u64),
        (0, 0, TOTAL),
        "repeated or out of order, lost, and count; first {:?}, last {:?}",
        numbers.first(),
        numbers.last()
    );
    assert_eq!(numbers.first(), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_to_a_client_whose_node_dies_arrives_whole_on_the_backup() {
    let mut cluster = Cluster::start().await;
    let (client, mut events) = cluster.client(|config| config.subscriptions = vec![CHANNEL.into()]);
    // Its own message back: the subscription is in place before the stream starts.
    client.publish(CHANNEL, json!(0)).unwrap();
    let deadline = Instant::now() + STREAM_BOUND;
    let mut numbers = Vec::new();
    let mut opened = Vec::new();
    let mut gaps = Vec::new();
    let mut stream = None;
    let mut cut = None;
    while (numbers.len() as u64) < TOTAL {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(event)) = tokio::time::timeout(left, events.next()).await else {
            break;
        };
        match event {
            Event::Message(Incoming::Channel { data, .. }) if data == json!(0) => {
                let (publisher, _) = connect_native(&cluster.third).await;
                stream = Some(tokio::spawn(publish_stream(publisher)));
            }
            Event::Message(Incoming::Channel { data, .. }) => {
                numbers.push(data.as_u64().expect("a number"));
                if numbers.len() as u64 == CUT_AT {
                    cut = Some(cluster.kill_doomed());
                }
            }
            Event::Open { url, .. } => opened.push((url.to_string(), Instant::now())),
            gap @ Event::Gap { .. } => gaps.push(gap),
            _ => {}
        }
    }
    assert!(gaps.is_empty(), "no gap: {gaps:?}");
    check_sequence(&numbers);
    let cut = cut.expect("the node was cut");
    let (url, open_at) = opened.last().expect("opened").clone();
    assert_eq!(url, cluster.backup_url(), "failed over to the backup");
    eprintln!(
        "{TOTAL} messages, node killed after {CUT_AT}: open on the backup {:?} later",
        open_at - cut
    );
    stream.expect("the stream started").await.unwrap();
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_a_client_whose_node_dies_is_published_once_in_order() {
    let mut cluster = Cluster::start().await;
    let (mut subscriber, _) = connect_native(&cluster.third).await;
    subscribe(&mut subscriber, CHANNEL).await;
    let (client, mut events) = cluster.client(|config| config.outbox_capacity = TOTAL as usize);
    // The client's events, collected meanwhile so it never waits on them.
    let watcher = tokio::spawn(async move {
        let mut opened = Vec::new();
        while let Some(event) = events.next().await {
            eprintln!("EVENT {event:?}");
            if let Event::Open { url, .. } = event {
                opened.push(url.to_string());
            }
        }
        opened
    });
    for n in 1..=TOTAL {
        client.publish(CHANNEL, json!(n)).unwrap();
    }

    let deadline = Instant::now() + STREAM_BOUND;
    let mut numbers = Vec::new();
    read_numbers(&mut subscriber, &mut numbers, CUT_AT, deadline).await;
    let cut = cluster.kill_doomed();
    read_numbers(&mut subscriber, &mut numbers, TOTAL, deadline).await;
    let done = cut.elapsed();
    // Anything more would be a publish made twice.
    let quiet = Instant::now() + PING_INTERVAL + PING_TIMEOUT;
    read_numbers(&mut subscriber, &mut numbers, TOTAL + 1, quiet).await;
    check_sequence(&numbers);
    eprintln!(
        "{TOTAL} publishes, node killed after {CUT_AT} reached the subscriber: all in {done:?} after the kill"
    );
    client.close();
    let opened = watcher.await.unwrap();
    assert_eq!(
        opened.last(),
        Some(&cluster.backup_url()),
        "failed over to the backup: {opened:?}"
    );
}
