//! Heartbeat conventions of existing clients: the magic string of
//! django-websocket-redis and reply rules such as `ping` → `pong`, on every endpoint.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use heartwire_server::{HeartbeatConventions, HeartbeatReply, ServerConfig};
use heartwire_testkit::*;
use tokio_tungstenite::tungstenite::Message;

const MAGIC: &str = "--heartbeat--";

fn config() -> ServerConfig {
    ServerConfig {
        heartbeats: HeartbeatConventions {
            heartbeat_text: Some(MAGIC.into()),
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_replies: vec![
                "ping=pong".parse::<HeartbeatReply>().unwrap(),
                "~H#C~=~H#C~".parse().unwrap(),
            ],
            heartbeat_facilities: Vec::new(),
        },
        ..ServerConfig::default()
    }
}

/// The next text that is not the server's magic heartbeat.
async fn next_text_but_heartbeats(socket: &mut Socket) -> String {
    loop {
        let text = next_text(socket).await;
        if text != MAGIC {
            return text;
        }
    }
}

/// Asserts nothing but `allowed` texts arrive within `window`.
async fn assert_quiet(socket: &mut Socket, window: Duration, allowed: &[&str]) {
    let until = tokio::time::Instant::now() + window;
    while let Ok(next) = tokio::time::timeout_at(until, socket.next()).await {
        match next {
            Some(Ok(Message::Text(text))) if allowed.contains(&text.as_str()) => {}
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn magic_string_is_sent_on_its_period_whatever_the_traffic() {
    let server = TestServer::start(config()).await;
    let mut socket =
        connect(&server.url("/ws/chat?subscribe-broadcast&publish-broadcast&echo")).await;
    let window = Duration::from_millis(2000);
    let started = tokio::time::Instant::now();
    let mut beats = 0;
    while let Ok(next) = tokio::time::timeout_at(started + window, socket.next()).await {
        match next {
            Some(Ok(Message::Text(text))) if text.as_str() == MAGIC => {
                beats += 1;
                // Traffic does not hold the heartbeat back.
                socket
                    .send(Message::text(format!("chatter {beats}")))
                    .await
                    .unwrap();
            }
            Some(Ok(Message::Text(text))) => assert!(text.starts_with("chatter"), "{text}"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every 200 ms for 2 s: 10, give or take scheduling.
    assert!(
        (7..=11).contains(&beats),
        "{beats} heartbeats in {window:?}"
    );
    assert!(server.metric("heartwire_heartbeat_texts_sent_total").await >= 7.0);
}

#[tokio::test]
async fn magic_string_from_a_client_is_dropped_not_published() {
    let server = TestServer::start(config()).await;
    let flags = "?subscribe-broadcast&publish-broadcast&echo";
    let mut sender = connect(&server.url(&format!("/ws/chat{flags}"))).await;
    let mut listener = connect(&server.url("/ws/chat?subscribe-broadcast")).await;
    sender.send(Message::text(MAGIC)).await.unwrap();
    sender.send(Message::text("real message")).await.unwrap();
    // The first non-heartbeat text either side sees is the real message.
    for socket in [&mut sender, &mut listener] {
        assert_eq!(next_text_but_heartbeats(socket).await, "real message");
    }
    assert!(server.metric("heartwire_client_heartbeats_total").await >= 1.0);
}

#[tokio::test]
async fn magic_string_is_not_sent_on_other_endpoints() {
    let server = TestServer::start(config()).await;
    let (mut native, _) = connect_native(&server).await;
    let mut echo = connect(&server.url("/echo")).await;
    assert_quiet(&mut native, Duration::from_millis(700), &[]).await;
    assert_quiet(&mut echo, Duration::from_millis(100), &[]).await;
}

#[tokio::test]
async fn magic_string_goes_only_to_the_facilities_it_is_scoped_to() {
    let mut config = config();
    config.heartbeats.heartbeat_facilities = vec!["notify*".into()];
    let server = TestServer::start(config).await;
    let mut chat = connect(&server.url("/ws/chat?subscribe-broadcast")).await;
    let mut notify = connect(&server.url("/ws/notify-ops?subscribe-broadcast")).await;
    // Two periods on the scoped facility (the other socket opened first)…
    for _ in 0..2 {
        assert_eq!(next_text(&mut notify).await, MAGIC);
    }
    // …and not one heartbeat on the other.
    assert_quiet(&mut chat, Duration::from_millis(50), &[]).await;
}

#[tokio::test]
async fn reply_rules_answer_on_every_endpoint_and_never_publish() {
    let server = TestServer::start(config()).await;
    let (mut native, _) = connect_native(&server).await;
    subscribe(&mut native, "broadcast:chat").await;
    let mut facility =
        connect(&server.url("/ws/chat?subscribe-broadcast&publish-broadcast&echo")).await;
    let mut echo = connect(&server.url("/echo")).await;

    for socket in [&mut native, &mut facility, &mut echo] {
        socket.send(Message::text("ping")).await.unwrap();
        assert_eq!(next_text_but_heartbeats(socket).await, "pong");
        socket.send(Message::text("~H#C~")).await.unwrap();
        assert_eq!(next_text_but_heartbeats(socket).await, "~H#C~");
    }
    // Neither heartbeat reached the facility's subscribers: the native subscriber of
    // broadcast:chat and the facility socket with `echo` saw only the answers above.
    assert_quiet(&mut native, Duration::from_millis(300), &[]).await;
    assert_quiet(&mut facility, Duration::from_millis(300), &[MAGIC]).await;
    assert_eq!(
        server.metric("heartwire_client_heartbeats_total").await,
        6.0
    );
}
