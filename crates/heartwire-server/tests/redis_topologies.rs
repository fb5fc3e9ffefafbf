//! Channels spread over several independent Redis servers by a consistent hash
//! (`--redis URL,URL,URL`), and publishes that wait for a replica
//! (`--redis-wait-replicas`). Each test starts its own `redis-server` processes.

use std::time::Duration;

use futures_util::SinkExt;
use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{RedisConfig, RedisTopology, ServerConfig, WaitReplicas};
use heartwire_testkit::redis::{TestRedis, node_on};
use heartwire_testkit::redis_sentinel::TestSentinels;
use heartwire_testkit::stream::{Publisher, Watcher, judge};
use heartwire_testkit::{
    Socket, TestServer, connect, connect_native, http_get, next_frame, next_text, send,
    wait_for_health,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Publishes `data` on `channel` with `id` and returns the answer (skipping messages).
async fn publish(
    socket: &mut Socket,
    channel: &str,
    data: serde_json::Value,
    id: &str,
) -> ServerFrame {
    let frame = ClientFrame::Publish {
        channel: channel.into(),
        data,
        id: Some(id.into()),
    };
    send(socket, &frame).await;
    loop {
        match next_frame(socket).await {
            ServerFrame::Message { .. } => continue,
            answer => return answer,
        }
    }
}

async fn health(node: &TestServer) -> serde_json::Value {
    serde_json::from_str(&http_get(node.addr, "/healthz").await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_three_servers_and_a_dead_one_takes_only_its_own() {
    let mut servers = [TestRedis::start(), TestRedis::start(), TestRedis::start()];
    let config = RedisConfig::new(RedisTopology::Servers(
        servers.iter().map(TestRedis::url).collect(),
    ));
    let nodes = [
        node_on(&config, ServerConfig::default()).await,
        node_on(&config, ServerConfig::default()).await,
    ];
    let channels: Vec<String> = (0..60).map(|n| format!("room:{n}")).collect();
    let mut watchers = Vec::new();
    for node in &nodes {
        watchers.push(Watcher::start(&node.url("/ws"), &channels).await);
    }
    let mut publishers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let name = format!("p{index}");
        publishers.push(Publisher::start(&node.url("/ws"), &name, channels.clone(), 300).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut acked = Vec::new();
    for publisher in publishers {
        acked.push(publisher.finish().await);
    }
    let mut seen = Vec::new();
    for watcher in watchers {
        seen.push(watcher.finish().await);
    }
    let published: usize = acked
        .iter()
        .flat_map(|one| one.values())
        .map(Vec::len)
        .sum();
    let verdict = judge(&acked, &seen);
    println!("{published} messages over three servers; {verdict:?}");
    assert_eq!(verdict.delivered, 2 * published as u64);
    assert_eq!(
        (
            verdict.gaps,
            verdict.repeats,
            verdict.missing,
            verdict.aliases,
            verdict.told
        ),
        (0, 0, 0, 0, 0)
    );

    // Each server holds its share of the channels, and no channel is on two.
    let held: Vec<usize> = tokio::task::block_in_place(|| {
        servers
            .iter()
            .map(|server| server.cli(&["KEYS", "hw:room:*#epoch"]).lines().count())
            .collect()
    });
    println!("channels per server: {held:?}");
    assert_eq!(held.iter().sum::<usize>(), channels.len());
    assert!(held.iter().all(|count| *count >= 10), "{held:?}");

    // django-websocket-redis facilities live on the first server, where Django publishes.
    let mut facility = connect(&nodes[1].url("/ws/chat?subscribe-broadcast")).await;
    tokio::task::block_in_place(|| servers[0].wait_for_subscribers("broadcast:chat", 1));
    tokio::task::block_in_place(|| servers[0].cli(&["PUBLISH", "broadcast:chat", "from django"]));
    assert_eq!(next_text(&mut facility).await, "from django");
    let mut writer = connect(&nodes[0].url("/ws/chat?publish-broadcast")).await;
    writer.send(Message::text("to django")).await.unwrap();
    assert_eq!(next_text(&mut facility).await, "to django");

    let body = health(&nodes[0]).await;
    assert_eq!(body["broker_shards"].as_array().unwrap().len(), 3, "{body}");
    let shard = format!("127.0.0.1:{}", servers[2].port);
    let up = format!("heartwire_broker_shard_up{{shard=\"{shard}\"}}");
    assert_eq!(nodes[0].metric(&up).await, 1.0);

    // The third server dies: its channels are refused, the others' go on.
    let (on_third, on_first) = {
        let held_by = |server: &TestRedis| {
            server
                .cli(&["KEYS", "hw:room:*#epoch"])
                .lines()
                .map(|key| {
                    key.trim_start_matches("hw:")
                        .trim_end_matches("#epoch")
                        .to_owned()
                })
                .collect::<Vec<_>>()
        };
        tokio::task::block_in_place(|| {
            (
                held_by(&servers[2])[0].clone(),
                held_by(&servers[0])[0].clone(),
            )
        })
    };
    tokio::task::block_in_place(|| servers[2].kill());
    wait_for_health(&nodes[0], "degraded").await;
    assert_eq!(nodes[0].metric(&up).await, 0.0);
    let (mut socket, _) = connect_native(&nodes[0]).await;
    match publish(&mut socket, &on_third, json!("lost shard"), "x-1").await {
        ServerFrame::Error { code, id, .. } => {
            assert_eq!((code, id.as_deref()), (ErrorCode::Unavailable, Some("x-1")));
        }
        other => panic!("a publish on the dead server's channel is refused, got {other:?}"),
    }
    let answer = publish(&mut socket, &on_first, json!("live shard"), "x-2").await;
    assert!(matches!(answer, ServerFrame::Ack { .. }), "{answer:?}");
    tokio::task::block_in_place(|| servers[2].relaunch());
    wait_for_health(&nodes[0], "ok").await;
    let answer = publish(&mut socket, &on_third, json!("back"), "x-1").await;
    assert!(
        matches!(answer, ServerFrame::Ack { seq: 1, .. }),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_acknowledged_once_a_replica_holds_them() {
    let sentinels = tokio::task::block_in_place(TestSentinels::start);
    let wait = WaitReplicas {
        replicas: 1,
        timeout: Duration::from_millis(300),
    };
    let node = node_on(&sentinels.config().with_wait(wait), ServerConfig::default()).await;
    let (mut socket, _) = connect_native(&node).await;
    let answer = publish(&mut socket, "room", json!(1), "w-1").await;
    assert!(
        matches!(answer, ServerFrame::Ack { seq: 1, .. }),
        "{answer:?}"
    );

    // The replica hangs: the publish happens, but is not acknowledged.
    let master = tokio::task::block_in_place(|| sentinels.master_port());
    let replica = sentinels
        .server_ports()
        .into_iter()
        .find(|port| *port != master)
        .unwrap();
    tokio::task::block_in_place(|| sentinels.signal(replica, "STOP"));
    match publish(&mut socket, "room", json!(2), "w-2").await {
        ServerFrame::Error {
            code, id, reason, ..
        } => {
            assert_eq!((code, id.as_deref()), (ErrorCode::Unavailable, Some("w-2")));
            assert!(reason.contains("replicas confirmed"), "{reason}");
            println!("refused while the replica hangs: {reason}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    tokio::task::block_in_place(|| sentinels.signal(replica, "CONT"));
    // Sent again with its id, it is published once: the first try had been.
    let answer = publish(&mut socket, "room", json!(2), "w-2").await;
    assert!(
        matches!(
            answer,
            ServerFrame::Ack {
                seq: 2,
                duplicate: true,
                ..
            }
        ),
        "{answer:?}"
    );
    let master_seq = tokio::task::block_in_place(|| sentinels.cli(master, &["GET", "hw:room#seq"]));
    let replica_seq =
        tokio::task::block_in_place(|| sentinels.cli(replica, &["GET", "hw:room#seq"]));
    assert_eq!((master_seq.trim(), replica_seq.trim()), ("2", "2"));
}
