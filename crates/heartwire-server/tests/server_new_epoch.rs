//! A subscriber that comes back with a position of an epoch the channel no longer has
//! (the server restarted, Redis lost its data) is told `recovered: false`, and still
//! gets every message of the new epoch from its first: nothing published after the
//! change is skipped. Over real sockets, on both brokers.

use heartwire_core::protocol::{ClientFrame, Position, ServerFrame};
use heartwire_server::ServerConfig;
use heartwire_testkit::redis::{TestRedis, node};
use heartwire_testkit::{Socket, TestServer, connect_native, next_frame, send, wait_for_health};
use serde_json::json;

/// Subscribes `socket` to `channel` since `since`; returns the `subscribed` frame's
/// epoch, seq and recovered.
async fn subscribe_since(
    socket: &mut Socket,
    channel: &str,
    since: Option<Position>,
) -> (String, u64, Option<bool>) {
    send(
        socket,
        &ClientFrame::Subscribe {
            channel: channel.into(),
            since,
        },
    )
    .await;
    match next_frame(socket).await {
        ServerFrame::Subscribed {
            epoch,
            seq,
            recovered,
            ..
        } => (epoch, seq, recovered),
        other => panic!("expected subscribed, got {other:?}"),
    }
}

/// Publishes `data` on `channel` with `id` and returns the acknowledged seq.
async fn publish(socket: &mut Socket, channel: &str, data: &str, id: &str) -> u64 {
    send(
        socket,
        &ClientFrame::Publish {
            channel: channel.into(),
            data: json!(data),
            id: Some(id.into()),
        },
    )
    .await;
    match next_frame(socket).await {
        ServerFrame::Ack { seq, .. } => seq,
        other => panic!("expected an ack, got {other:?}"),
    }
}

/// The next channel message on `socket`, as (seq, data).
async fn next_message(socket: &mut Socket) -> (u64, serde_json::Value) {
    match next_frame(socket).await {
        ServerFrame::Message { seq, data, .. } => (seq, data),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Subscribes to `room` and publishes one message on `before`; returns the position
/// the subscriber holds.
async fn position_before(before: &TestServer) -> Position {
    let (mut reader, _) = connect_native(before).await;
    let (epoch, _, _) = subscribe_since(&mut reader, "room", None).await;
    let (mut writer, _) = connect_native(before).await;
    assert_eq!(publish(&mut writer, "room", "old", "w-old").await, 1);
    assert_eq!(next_message(&mut reader).await, (1, json!("old")));
    Position { epoch, seq: 1 }
}

/// After the change to `after`: one message is published, then the old subscriber
/// comes back with its position and must get it, then a live one.
async fn nothing_of_the_new_epoch_is_skipped(after: &TestServer, held: Position) {
    let (mut writer, _) = connect_native(after).await;
    assert_eq!(publish(&mut writer, "room", "m1", "w-m1").await, 1);
    let (mut back, _) = connect_native(after).await;
    let (epoch, seq, recovered) = subscribe_since(&mut back, "room", Some(held.clone())).await;
    assert_ne!(epoch, held.epoch, "the channel has a new epoch");
    assert_eq!((seq, recovered), (0, Some(false)));
    assert_eq!(next_message(&mut back).await, (1, json!("m1")));
    assert_eq!(publish(&mut writer, "room", "m2", "w-m2").await, 2);
    assert_eq!(next_message(&mut back).await, (2, json!("m2")));
}

#[tokio::test]
async fn after_a_restart_the_new_epoch_is_replayed_from_its_first_message() {
    let before = TestServer::start(ServerConfig::default()).await;
    let held = position_before(&before).await;
    before.shut_down().await;
    // The in-process broker starts empty: a restarted server.
    let after = TestServer::start(ServerConfig::default()).await;
    nothing_of_the_new_epoch_is_skipped(&after, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_lost_its_data_the_new_epoch_is_replayed_from_its_first_message() {
    let mut redis = TestRedis::start();
    let server = node(&redis, ServerConfig::default()).await;
    let held = position_before(&server).await;
    redis.kill();
    wait_for_health(&server, "degraded").await;
    redis.relaunch();
    wait_for_health(&server, "ok").await;
    nothing_of_the_new_epoch_is_skipped(&server, held).await;
}
