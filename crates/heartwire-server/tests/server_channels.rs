//! Channel permissions over real sockets: each kind of `[[channels]]` rule decides what a
//! connection may do on `/ws` and `/ws/{facility}`, a refusal is an `error` `forbidden`
//! naming the channel on a connection that stays open, and a channel that matches no
//! rule is refused. The history permission is checked on both brokers.
//!
//! These connections are anonymous; the rules that need an identity (`authenticated`
//! granted, `owner`, `group:NAME`, the `channels` claim) are exercised with identified
//! connections in `auth_channels.rs`.

use futures_util::{SinkExt, StreamExt};
use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, Position, ServerFrame};
use heartwire_server::{ChannelRule, ServerConfig};
use heartwire_testkit::redis::{TestRedis, node};
use heartwire_testkit::{
    PATIENCE, Socket, TestServer, connect, connect_native, next_frame, next_text, send, subscribe,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The rules of these tests, as a config file holds them.
const RULES: &str = r#"
[[channels]]
pattern = "open:*"
subscribe = "anyone"
publish = "anyone"
presence = "anyone"

[[channels]]
pattern = "room:*"
subscribe = "anyone"
publish = "authenticated"
presence = "authenticated"

[[channels]]
pattern = "news:*"
subscribe = "anyone"
publish = "server"

[[channels]]
pattern = "replay:*"
subscribe = "anyone"
publish = "anyone"
history = "server"

[[channels]]
pattern = "staff:*"
subscribe = "group:staff"
"#;

fn rules() -> Vec<ChannelRule> {
    #[derive(serde::Deserialize)]
    struct File {
        channels: Vec<ChannelRule>,
    }
    toml::from_str::<File>(RULES)
        .expect("the rules load")
        .channels
}

fn config() -> ServerConfig {
    ServerConfig {
        channels: rules(),
        presence: vec!["open:*".into(), "room:*".into()],
        ..ServerConfig::default()
    }
}

/// Asserts that the next frame is `forbidden` for `channel` (and `id`).
async fn expect_forbidden(socket: &mut Socket, channel: &str, id: Option<&str>) -> String {
    match next_frame(socket).await {
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            channel: Some(refused),
            id: got_id,
            reason,
            ..
        } if refused == channel && got_id.as_deref() == id => reason,
        other => panic!("expected forbidden for {channel}, got {other:?}"),
    }
}

fn publish(channel: &str, data: serde_json::Value, id: Option<&str>) -> ClientFrame {
    ClientFrame::Publish {
        channel: channel.into(),
        data,
        id: id.map(str::to_owned),
    }
}

fn presence(channel: &str) -> ClientFrame {
    ClientFrame::Presence {
        channel: channel.into(),
    }
}

#[tokio::test]
async fn a_channel_that_matches_no_rule_is_refused_and_the_connection_stays_open() {
    let server = TestServer::start(config()).await;
    let (mut socket, _) = connect_native(&server).await;
    send(
        &mut socket,
        &ClientFrame::Subscribe {
            channel: "elsewhere".into(),
            since: None,
        },
    )
    .await;
    let reason = expect_forbidden(&mut socket, "elsewhere", None).await;
    assert_eq!(
        reason,
        "cannot subscribe to elsewhere: no rule of [[channels]] matches it"
    );
    send(&mut socket, &publish("elsewhere", json!(1), Some("p-1"))).await;
    expect_forbidden(&mut socket, "elsewhere", Some("p-1")).await;
    // Still open, and what the rules allow works.
    subscribe(&mut socket, "open:1").await;
}

#[tokio::test]
async fn without_rules_every_channel_is_open() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut socket, _) = connect_native(&server).await;
    subscribe(&mut socket, "elsewhere").await;
    send(&mut socket, &publish("elsewhere", json!(1), Some("p-1"))).await;
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Message { seq: 1, .. }
    ));
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Ack { seq: 1, .. }
    ));
}

#[tokio::test]
async fn anyone_lets_an_anonymous_connection_subscribe_and_publish() {
    let server = TestServer::start(config()).await;
    let (mut socket, _) = connect_native(&server).await;
    subscribe(&mut socket, "open:1").await;
    send(&mut socket, &publish("open:1", json!("hi"), Some("p-1"))).await;
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Message { seq: 1, .. }
    ));
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Ack { seq: 1, .. }
    ));
}

#[tokio::test]
async fn authenticated_refuses_an_anonymous_publisher() {
    let server = TestServer::start(config()).await;
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "room:1").await;
    subscribe(&mut reader, "open:1").await;
    let (mut anonymous, _) = connect_native(&server).await;
    send(
        &mut anonymous,
        &publish("room:1", json!("spam"), Some("p-1")),
    )
    .await;
    let reason = expect_forbidden(&mut anonymous, "room:1", Some("p-1")).await;
    assert!(reason.contains("identified connections only"), "{reason}");
    // Nothing reached the reader: the next message it gets is the one after.
    send(&mut anonymous, &publish("open:1", json!("fine"), None)).await;
    match next_frame(&mut reader).await {
        ServerFrame::Message { channel, data, .. } => {
            assert_eq!((channel.as_str(), data), ("open:1", json!("fine")));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_lets_no_connection_publish() {
    let server = TestServer::start(config()).await;
    let (mut socket, _) = connect_native(&server).await;
    subscribe(&mut socket, "news:1").await;
    send(&mut socket, &publish("news:1", json!("rumour"), None)).await;
    let reason = expect_forbidden(&mut socket, "news:1", None).await;
    assert!(reason.contains("the server only"), "{reason}");
}

#[tokio::test]
async fn a_group_rule_refuses_who_is_not_in_it() {
    let server = TestServer::start(config()).await;
    let (mut socket, _) = connect_native(&server).await;
    send(
        &mut socket,
        &ClientFrame::Subscribe {
            channel: "staff:news".into(),
            since: None,
        },
    )
    .await;
    let reason = expect_forbidden(&mut socket, "staff:news", None).await;
    assert!(
        reason.contains("members of the group staff only"),
        "{reason}"
    );
}

#[tokio::test]
async fn presence_needs_its_permission_for_the_list_and_the_events() {
    let server = TestServer::start(config()).await;
    let (mut watcher, _) = connect_native(&server).await;
    subscribe(&mut watcher, "room:1").await;
    subscribe(&mut watcher, "open:1").await;
    send(&mut watcher, &presence("room:1")).await;
    expect_forbidden(&mut watcher, "room:1", None).await;
    send(&mut watcher, &presence("open:1")).await;
    assert!(matches!(
        next_frame(&mut watcher).await,
        ServerFrame::Presence { .. }
    ));

    // Another session joins room:1, then open:1: the watcher hears of the second only.
    let (mut other, other_session) = connect_native(&server).await;
    subscribe(&mut other, "room:1").await;
    subscribe(&mut other, "open:1").await;
    match next_frame(&mut watcher).await {
        ServerFrame::Join {
            channel, session, ..
        } => assert_eq!((channel.as_str(), session), ("open:1", other_session)),
        other => panic!("expected the join of open:1 alone, got {other:?}"),
    }
}

/// Publishes three messages on `channel`, then subscribes a second connection since
/// the first of them; returns what confirms its subscription and its next frame.
async fn resume_after_the_first_of_three(
    publisher: &TestServer,
    reader: &TestServer,
    channel: &str,
) -> (Option<bool>, ServerFrame) {
    let (mut writer, _) = connect_native(publisher).await;
    for n in 1..=3 {
        send(
            &mut writer,
            &publish(channel, json!(n), Some(&format!("w-{n}"))),
        )
        .await;
        match next_frame(&mut writer).await {
            ServerFrame::Ack { seq, .. } => assert_eq!(seq, n),
            other => panic!("{other:?}"),
        }
    }
    let (mut probe, _) = connect_native(publisher).await;
    send(
        &mut probe,
        &ClientFrame::Subscribe {
            channel: channel.into(),
            since: None,
        },
    )
    .await;
    let epoch = match next_frame(&mut probe).await {
        ServerFrame::Subscribed { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };
    let (mut back, _) = connect_native(reader).await;
    send(
        &mut back,
        &ClientFrame::Subscribe {
            channel: channel.into(),
            since: Some(Position { epoch, seq: 1 }),
        },
    )
    .await;
    let recovered = match next_frame(&mut back).await {
        ServerFrame::Subscribed {
            seq: 3, recovered, ..
        } => recovered,
        other => panic!("expected subscribed at 3, got {other:?}"),
    };
    send(&mut writer, &publish(channel, json!("live"), None)).await;
    (recovered, next_frame(&mut back).await)
}

async fn history_is_replayed_only_with_its_permission(nodes: [&TestServer; 2]) {
    let (recovered, next) = resume_after_the_first_of_three(nodes[0], nodes[1], "open:h").await;
    assert_eq!(recovered, Some(true));
    assert!(
        matches!(next, ServerFrame::Message { seq: 2, .. }),
        "{next:?}"
    );
    // Without the permission: no replay, said with recovered: false; live messages flow.
    let (recovered, next) = resume_after_the_first_of_three(nodes[0], nodes[1], "replay:h").await;
    assert_eq!(recovered, Some(false));
    match next {
        ServerFrame::Message { seq: 4, data, .. } => assert_eq!(data, json!("live")),
        other => panic!("expected the live message, got {other:?}"),
    }
}

#[tokio::test]
async fn history_needs_its_permission_with_the_in_process_broker() {
    let server = TestServer::start(config()).await;
    history_is_replayed_only_with_its_permission([&server, &server]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_needs_its_permission_across_redis_nodes() {
    let redis = TestRedis::start();
    let a = node(&redis, config()).await;
    let b = node(&redis, config()).await;
    history_is_replayed_only_with_its_permission([&a, &b]).await;
}

/// Rules for the django-websocket-redis endpoint.
const FACILITY_RULES: &str = r#"
[[channels]]
pattern = "broadcast:quiet"
subscribe = "anyone"
publish = "authenticated"

[[channels]]
pattern = "broadcast:*"
subscribe = "anyone"
publish = "anyone"
history = "server"

[[channels]]
pattern = "open:*"
subscribe = "anyone"
presence = "anyone"
"#;

fn facility_config() -> ServerConfig {
    #[derive(serde::Deserialize)]
    struct File {
        channels: Vec<ChannelRule>,
    }
    ServerConfig {
        channels: toml::from_str::<File>(FACILITY_RULES).unwrap().channels,
        presence: vec!["open:*".into()],
        ..ServerConfig::default()
    }
}

/// Sends a Ping and waits for its Pong: the server has read everything sent before.
async fn read_by_the_server(socket: &mut Socket) {
    socket
        .send(Message::Ping(b"sync".to_vec().into()))
        .await
        .unwrap();
    loop {
        match next_message_or_pong(socket).await {
            Message::Pong(payload) if &payload[..] == b"sync" => return,
            Message::Text(text) => panic!("unexpected text before the pong: {text}"),
            _ => continue,
        }
    }
}

async fn next_message_or_pong(socket: &mut Socket) -> Message {
    tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("a frame in time")
        .expect("socket still open")
        .expect("no transport error")
}

#[tokio::test]
async fn a_ws4redis_socket_does_not_publish_where_it_may_not() {
    let server = TestServer::start(facility_config()).await;
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "broadcast:quiet").await;
    let mut socket =
        connect(&server.url("/ws/quiet?subscribe-broadcast&publish-broadcast&echo")).await;
    socket.send(Message::text("refused")).await.unwrap();
    read_by_the_server(&mut socket).await;
    // The in-process broker delivers at once: had the text been published, it would be
    // in the reader's queue before the answer to this request.
    send(&mut reader, &presence("open:1")).await;
    match next_frame(&mut reader).await {
        ServerFrame::Presence { channel, .. } => assert_eq!(channel, "open:1"),
        other => panic!("expected the presence answer alone, got {other:?}"),
    }
}

#[tokio::test]
async fn a_ws4redis_socket_without_history_gets_no_last_message() {
    let server = TestServer::start(facility_config()).await;
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "broadcast:loud").await;
    let mut writer = connect(&server.url("/ws/loud?publish-broadcast")).await;
    writer.send(Message::text("last")).await.unwrap();
    assert!(matches!(
        next_frame(&mut reader).await,
        ServerFrame::Message { seq: 1, .. }
    ));
    let mut late = connect(&server.url("/ws/loud?subscribe-broadcast")).await;
    read_by_the_server(&mut late).await;
    writer.send(Message::text("live")).await.unwrap();
    assert_eq!(next_text(&mut late).await, "live");
}
