//! The django-websocket-redis endpoint `/ws/{facility}`: raw-text broadcast, the
//! `echo` flag, the last message for late joiners, bad facility names, and the
//! identity flags of an anonymous socket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{Retention, ServerConfig};
use heartwire_testkit::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const BOTH: &str = "?subscribe-broadcast&publish-broadcast";

async fn assert_nothing_within(socket: &mut Socket, window: Duration) {
    match tokio::time::timeout(window, next_message(socket)).await {
        Err(_) => {}
        Ok(message) => panic!("expected nothing, got {message:?}"),
    }
}

#[tokio::test]
async fn facility_broadcasts_raw_text_and_honours_echo() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut quiet = connect(&server.url(&format!("/ws/news{BOTH}"))).await;
    let mut echoing = connect(&server.url(&format!("/ws/news{BOTH}&echo"))).await;
    let mut reader = connect(&server.url("/ws/news?subscribe-broadcast")).await;

    quiet.send(Message::text("from quiet")).await.unwrap();
    assert_eq!(next_text(&mut echoing).await, "from quiet");
    assert_eq!(next_text(&mut reader).await, "from quiet");
    // Without `echo`, its own message does not come back.
    assert_nothing_within(&mut quiet, Duration::from_millis(300)).await;

    echoing.send(Message::text("from echoing")).await.unwrap();
    assert_eq!(next_text(&mut echoing).await, "from echoing");
    assert_eq!(next_text(&mut quiet).await, "from echoing");
    assert_eq!(next_text(&mut reader).await, "from echoing");

    // A socket without publish-broadcast publishes nothing.
    reader.send(Message::text("ignored")).await.unwrap();
    assert_nothing_within(&mut quiet, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn late_joiner_receives_the_last_message_first() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut publisher = connect(&server.url("/ws/alerts?publish-broadcast")).await;
    publisher.send(Message::text("first")).await.unwrap();
    publisher.send(Message::text("latest")).await.unwrap();
    // A subscriber that was there all along would have seen both; wait until the
    // broker has them by watching the messages counter.
    server
        .wait_for_metric(r#"heartwire_messages_in_total{endpoint="ws4redis"}"#, 2.0)
        .await;

    let mut late = connect(&server.url("/ws/alerts?subscribe-broadcast")).await;
    assert_eq!(next_text(&mut late).await, "latest");
    publisher.send(Message::text("live")).await.unwrap();
    assert_eq!(next_text(&mut late).await, "live");
}

#[tokio::test]
async fn no_last_message_when_persistence_is_off() {
    let config = ServerConfig {
        retention: Retention {
            persist_for: Duration::ZERO,
            ..Retention::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut publisher = connect(&server.url("/ws/alerts?publish-broadcast")).await;
    publisher.send(Message::text("gone")).await.unwrap();
    server
        .wait_for_metric(r#"heartwire_messages_in_total{endpoint="ws4redis"}"#, 1.0)
        .await;
    let mut late = connect(&server.url("/ws/alerts?subscribe-broadcast")).await;
    assert_nothing_within(&mut late, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn facility_and_native_channel_are_one() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut native, _) = connect_native(&server).await;
    subscribe(&mut native, "broadcast:mixed").await;
    let mut facility = connect(&server.url(&format!("/ws/mixed{BOTH}"))).await;

    facility.send(Message::text("raw text")).await.unwrap();
    match next_frame(&mut native).await {
        ServerFrame::Message {
            channel,
            seq: 1,
            data,
        } => {
            assert_eq!(channel, "broadcast:mixed");
            assert_eq!(data, json!("raw text"));
        }
        other => panic!("{other:?}"),
    }
    let publish = |data| ClientFrame::Publish {
        channel: "broadcast:mixed".into(),
        data,
        id: None,
    };
    send(&mut native, &publish(json!("plain string"))).await;
    assert_eq!(next_text(&mut facility).await, "plain string");
    send(&mut native, &publish(json!({"n": 1}))).await;
    assert_eq!(next_text(&mut facility).await, r#"{"n":1}"#);
}

#[tokio::test]
async fn bad_facility_names_are_refused_before_the_upgrade() {
    let server = TestServer::start(ServerConfig::default()).await;
    let request = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let response = http_request(server.addr, &request("/ws/bad%20name?subscribe-broadcast")).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("invalid facility"), "{response}");
    let mut ok = connect(&server.url("/ws/chat?subscribe-broadcast")).await;
    ok.close(None).await.unwrap();
    assert!(ok.next().await.is_none_or(|end| end.is_ok()));
}

#[tokio::test]
async fn an_anonymous_socket_has_the_broadcast_only() {
    let server = TestServer::start(ServerConfig::default()).await;
    // As in django-websocket-redis, identity flags of an anonymous socket do nothing.
    let all = "subscribe-broadcast&subscribe-user&subscribe-group&subscribe-session\
               &publish-user&publish-group&publish-session";
    let mut anonymous = connect(&server.url(&format!("/ws/chat?{all}&echo"))).await;
    let mut writer = connect(&server.url("/ws/chat?publish-broadcast")).await;
    writer.send(Message::text("to all")).await.unwrap();
    assert_eq!(next_text(&mut anonymous).await, "to all");
    anonymous.send(Message::text("to nobody")).await.unwrap();
    assert_nothing_within(&mut anonymous, Duration::from_millis(300)).await;
}
