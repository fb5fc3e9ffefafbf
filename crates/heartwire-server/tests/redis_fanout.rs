//! The Redis broker across nodes: fan-out, one `seq` order, resume on another node,
//! publish deduplication. Each test runs its own `redis-server` and in-process nodes.

use std::time::Duration;

use heartwire_core::protocol::{ClientFrame, Position, ServerFrame};
use heartwire_server::{Retention, ServerConfig};
use heartwire_testkit::redis::{TestRedis, node};
use heartwire_testkit::{Socket, connect_native, next_frame, send, subscribe};
use serde_json::json;

async fn publish(socket: &mut Socket, channel: &str, data: serde_json::Value, id: &str) {
    send(
        socket,
        &ClientFrame::Publish {
            channel: channel.into(),
            data,
            id: Some(id.into()),
        },
    )
    .await;
}

/// Reads frames until an ack, returning its `seq` and `duplicate`.
async fn ack(socket: &mut Socket) -> (u64, bool) {
    loop {
        match next_frame(socket).await {
            ServerFrame::Ack { seq, duplicate, .. } => return (seq, duplicate),
            ServerFrame::Message { .. } => continue,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

/// The next `message` frame's `seq` and data.
async fn message(socket: &mut Socket) -> (u64, serde_json::Value) {
    match next_frame(socket).await {
        ServerFrame::Message { seq, data, .. } => (seq, data),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn subscribe_since(socket: &mut Socket, channel: &str, since: Position) -> ServerFrame {
    send(
        socket,
        &ClientFrame::Subscribe {
            channel: channel.into(),
            since: Some(since),
        },
    )
    .await;
    next_frame(socket).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_on_one_node_reaches_subscribers_on_all_three_in_one_order() {
    let redis = TestRedis::start();
    let nodes = [
        node(&redis, ServerConfig::default()).await,
        node(&redis, ServerConfig::default()).await,
        node(&redis, ServerConfig::default()).await,
    ];
    let mut readers = Vec::new();
    for server in &nodes {
        let (mut socket, _) = connect_native(server).await;
        subscribe(&mut socket, "room").await;
        readers.push(socket);
    }
    // Three publishers, one per node, interleaved: Redis alone orders them.
    let mut writers = Vec::new();
    for server in &nodes {
        writers.push(connect_native(server).await.0);
    }
    const EACH: u64 = 30;
    for round in 0..EACH {
        for (n, writer) in writers.iter_mut().enumerate() {
            publish(
                writer,
                "room",
                json!({"from": n, "round": round}),
                &format!("{n}-{round}"),
            )
            .await;
        }
    }
    for writer in &mut writers {
        let mut last = 0;
        for _ in 0..EACH {
            let (seq, duplicate) = ack(writer).await;
            assert!(
                !duplicate && seq > last,
                "acks of one connection come in order"
            );
            last = seq;
        }
    }
    let mut orders = Vec::new();
    for reader in &mut readers {
        let mut order = Vec::new();
        for expected_seq in 1..=EACH * 3 {
            let (seq, data) = message(reader).await;
            assert_eq!(seq, expected_seq, "no gap, no repeat");
            order.push(data);
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    // Each publisher's messages keep the order they were sent in.
    for n in 0..3 {
        let rounds: Vec<_> = orders[0]
            .iter()
            .filter(|data| data["from"] == n)
            .map(|data| data["round"].as_u64().unwrap())
            .collect();
        assert_eq!(rounds, (0..EACH).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_comes_back_on_another_node_gets_exactly_what_it_missed_then_live() {
    let redis = TestRedis::start();
    let a = node(&redis, ServerConfig::default()).await;
    let b = node(&redis, ServerConfig::default()).await;
    let (mut writer, _) = connect_native(&a).await;
    let (mut away, _) = connect_native(&a).await;
    send(
        &mut away,
        &ClientFrame::Subscribe {
            channel: "feed".into(),
            since: None,
        },
    )
    .await;
    let ServerFrame::Subscribed { epoch, .. } = next_frame(&mut away).await else {
        panic!("expected subscribed")
    };
    publish(&mut writer, "feed", json!(1), "w1").await;
    assert_eq!(message(&mut away).await, (1, json!(1)));
    drop(away);

    for n in 2..=6 {
        publish(&mut writer, "feed", json!(n), &format!("w{n}")).await;
    }
    for _ in 0..6 {
        ack(&mut writer).await;
    }
    let (mut back, _) = connect_native(&b).await;
    let confirmation = subscribe_since(
        &mut back,
        "feed",
        Position {
            epoch: epoch.clone(),
            seq: 1,
        },
    )
    .await;
    assert_eq!(
        confirmation,
        ServerFrame::Subscribed {
            channel: "feed".into(),
            seq: 6,
            epoch: epoch.clone(),
            recovered: Some(true)
        }
    );
    for n in 2..=6 {
        assert_eq!(message(&mut back).await, (n, json!(n)));
    }
    publish(&mut writer, "feed", json!(7), "w7").await;
    assert_eq!(
        message(&mut back).await,
        (7, json!(7)),
        "live follows the replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_longer_than_the_stream_is_not_recovered() {
    let redis = TestRedis::start();
    let config = ServerConfig {
        retention: Retention {
            history_size: 3,
            ..Retention::default()
        },
        ..ServerConfig::default()
    };
    let a = node(&redis, config.clone()).await;
    let b = node(&redis, config).await;
    let (mut writer, _) = connect_native(&a).await;
    for n in 1..=10 {
        publish(&mut writer, "short", json!(n), &format!("w{n}")).await;
    }
    for _ in 0..10 {
        ack(&mut writer).await;
    }
    let (mut probe, _) = connect_native(&b).await;
    send(
        &mut probe,
        &ClientFrame::Subscribe {
            channel: "short".into(),
            since: None,
        },
    )
    .await;
    let ServerFrame::Subscribed { epoch, seq, .. } = next_frame(&mut probe).await else {
        panic!("expected subscribed")
    };
    assert_eq!(seq, 10);
    assert_eq!(redis.cli(&["XLEN", "hw:short#stream"]).trim(), "3");

    let (mut late, _) = connect_native(&b).await;
    let answer = subscribe_since(
        &mut late,
        "short",
        Position {
            epoch: epoch.clone(),
            seq: 2,
        },
    )
    .await;
    assert_eq!(recovery(&answer), (Some(false), 10));
    // From 7 on, the stream (8, 9, 10) covers it.
    let (mut in_time, _) = connect_native(&b).await;
    let answer = subscribe_since(&mut in_time, "short", Position { epoch, seq: 7 }).await;
    assert_eq!(recovery(&answer).0, Some(true));
    for n in 8..=10 {
        assert_eq!(message(&mut in_time).await, (n, json!(n)));
    }
}

/// The bytes `--history-max-bytes` counts for a JSON string of `len` letters: its
/// body with the quotes, and 160 per message.
fn counted(len: usize) -> usize {
    len + 2 + 160
}

/// The `subscribed` answer to a resume on `channel` after `seq`.
async fn resume(
    node: &heartwire_testkit::TestServer,
    channel: &str,
    epoch: &str,
    seq: u64,
) -> (Socket, ServerFrame) {
    let (mut socket, _) = connect_native(node).await;
    let since = Position {
        epoch: epoch.into(),
        seq,
    };
    let answer = subscribe_since(&mut socket, channel, since).await;
    (socket, answer)
}

/// Whether a `subscribed` answer says the gap was recovered, and the channel's `seq`.
fn recovery(answer: &ServerFrame) -> (Option<bool>, u64) {
    match answer {
        ServerFrame::Subscribed { recovered, seq, .. } => (*recovered, *seq),
        other => panic!("expected subscribed, got {other:?}"),
    }
}

/// The epoch of `channel`, as Redis holds it (`{epoch} {replication id}`).
fn epoch_in_redis(redis: &TestRedis, channel: &str) -> String {
    let stored = redis.cli(&["GET", &format!("hw:{channel}#epoch")]);
    stored
        .split_whitespace()
        .next()
        .expect("an epoch")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_history_in_redis_is_bounded_in_bytes_and_keeps_its_newest_message() {
    let redis = TestRedis::start();
    let mut config = ServerConfig::default();
    config.holdings.history_max_bytes = 3 * counted(1000);
    let a = node(&redis, config.clone()).await;
    let b = node(&redis, config).await;
    let (mut writer, _) = connect_native(&a).await;
    for n in 1..=10u8 {
        let letters = char::from(b'a' + n).to_string().repeat(1000);
        publish(&mut writer, "big", json!(letters), &format!("w{n}")).await;
        assert_eq!(ack(&mut writer).await, (u64::from(n), false));
    }
    // Ten messages fit the count (1000) but only three the bytes.
    assert_eq!(redis.cli(&["XLEN", "hw:big#stream"]).trim(), "3");
    let epoch = epoch_in_redis(&redis, "big");
    let (_, answer) = resume(&b, "big", &epoch, 6).await;
    assert_eq!(recovery(&answer), (Some(false), 10));
    let (mut in_time, answer) = resume(&b, "big", &epoch, 7).await;
    assert_eq!(recovery(&answer).0, Some(true));
    for n in 8..=10u8 {
        let letters = char::from(b'a' + n).to_string().repeat(1000);
        assert_eq!(message(&mut in_time).await, (u64::from(n), json!(letters)));
    }

    // One message larger than the bound is kept alone, so a resume from just
    // before it still recovers it.
    let huge = "z".repeat(4 * 1000);
    publish(&mut writer, "big", json!(huge), "w11").await;
    assert_eq!(ack(&mut writer).await, (11, false));
    assert_eq!(redis.cli(&["XLEN", "hw:big#stream"]).trim(), "1");
    let (mut last, answer) = resume(&b, "big", &epoch, 10).await;
    assert_eq!(recovery(&answer).0, Some(true));
    assert_eq!(message(&mut last).await, (11, json!(huge)));

    // A lost count is taken again from the stream: the large message still goes
    // first.
    redis.cli(&["DEL", "hw:big#bytes"]);
    for n in 12..=13u8 {
        let letters = "y".repeat(1000);
        publish(&mut writer, "big", json!(letters), &format!("w{n}")).await;
        assert_eq!(ack(&mut writer).await, (u64::from(n), false));
    }
    let kept = redis.cli(&["XRANGE", "hw:big#stream", "-", "+"]);
    assert_eq!(redis.cli(&["XLEN", "hw:big#stream"]).trim(), "2", "{kept}");
    assert!(kept.starts_with("0-12\n"), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_written_without_byte_counts_is_trimmed_by_count_until_it_goes() {
    let redis = TestRedis::start();
    let mut config = ServerConfig::default();
    config.holdings.history_max_bytes = counted(10);
    config.retention.history_size = 4;
    let a = node(&redis, config).await;
    let (mut writer, _) = connect_native(&a).await;
    publish(&mut writer, "old", json!("first"), "w1").await;
    assert_eq!(ack(&mut writer).await, (1, false));
    // The stream as a version without the bound wrote it: entries without `e`.
    redis.cli(&["DEL", "hw:old#stream"]);
    redis.cli(&[
        "XADD",
        "hw:old#stream",
        "0-1",
        "k",
        "j",
        "o",
        "-",
        "d",
        "\"first\"",
    ]);
    for n in 2..=4u64 {
        publish(
            &mut writer,
            "old",
            json!(n.to_string().repeat(100)),
            &format!("w{n}"),
        )
        .await;
        assert_eq!(
            ack(&mut writer).await,
            (n, false),
            "the publish works on it"
        );
    }
    // The entry without a count stops the trimming by bytes.
    assert_eq!(redis.cli(&["XLEN", "hw:old#stream"]).trim(), "4");
    publish(&mut writer, "old", json!("5".repeat(100)), "w5").await;
    assert_eq!(ack(&mut writer).await, (5, false));
    // Gone by count, it leaves entries with counts: the bytes bound holds again.
    assert_eq!(redis.cli(&["XLEN", "hw:old#stream"]).trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_publish_id_on_two_nodes_is_published_once() {
    let redis = TestRedis::start();
    let a = node(&redis, ServerConfig::default()).await;
    let b = node(&redis, ServerConfig::default()).await;
    let c = node(&redis, ServerConfig::default()).await;
    let (mut reader, _) = connect_native(&c).await;
    subscribe(&mut reader, "orders").await;
    let (mut first, _) = connect_native(&a).await;
    publish(&mut first, "orders", json!("pay"), "order-1").await;
    assert_eq!(ack(&mut first).await, (1, false));
    // The client lost node A and sends the same publish again through node B.
    let (mut again, _) = connect_native(&b).await;
    publish(&mut again, "orders", json!("pay"), "order-1").await;
    assert_eq!(ack(&mut again).await, (1, true));
    publish(&mut again, "orders", json!("next"), "order-2").await;
    assert_eq!(ack(&mut again).await, (2, false));
    assert_eq!(message(&mut reader).await, (1, json!("pay")));
    assert_eq!(
        message(&mut reader).await,
        (2, json!("next")),
        "no second copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_channel_keeps_its_epoch_while_anyone_listens() {
    let redis = TestRedis::start();
    let config = ServerConfig {
        retention: Retention {
            history_ttl: Duration::from_secs(2),
            ..Retention::default()
        },
        ..ServerConfig::default()
    };
    let a = node(&redis, config.clone()).await;
    let (mut reader, _) = connect_native(&a).await;
    subscribe(&mut reader, "quiet").await;
    let epoch = redis.cli(&["GET", "hw:quiet#epoch"]);
    assert!(!epoch.trim().is_empty());
    // Well past the ttl: the node refreshes the keys every quarter of it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(redis.cli(&["GET", "hw:quiet#epoch"]), epoch);
}
