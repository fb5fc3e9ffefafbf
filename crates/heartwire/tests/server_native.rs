//! The native `/ws` protocol end to end: hello, ping/pong, channels with sequence
//! numbers and acks, and the spread-out reconnect hints of a graceful shutdown.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use heartwire::server::ServerConfig;
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn hello_advertises_the_heartbeat_and_a_unique_session() {
    let server = TestServer::start(fast_config(1500, 2500)).await;
    let mut sessions = HashSet::new();
    for _ in 0..3 {
        let mut socket = connect(&server.url("/ws")).await;
        match next_frame(&mut socket).await {
            ServerFrame::Hello {
                session,
                ping_interval_ms,
                ping_timeout_ms,
                server,
            } => {
                assert_eq!((ping_interval_ms, ping_timeout_ms), (1500, 2500));
                assert!(server.starts_with("heartwire/"), "{server}");
                assert!(sessions.insert(session));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn channel_messages_reach_subscribers_in_sequence_with_acks() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut alice, _) = connect_native(&server).await;
    let (mut bob, _) = connect_native(&server).await;
    subscribe(&mut alice, "room:1").await;
    subscribe(&mut bob, "room:1").await;

    for n in 1..=50u64 {
        let id = format!("m{n}");
        let frame = ClientFrame::Publish {
            channel: "room:1".into(),
            data: json!({"n": n}),
            id: Some(id),
        };
        send(&mut alice, &frame).await;
    }
    let mut acked = 0;
    let mut seen = 0;
    while acked < 50 || seen < 50 {
        match next_frame(&mut alice).await {
            ServerFrame::Ack { id, seq } => {
                acked += 1;
                assert_eq!(id, format!("m{seq}"));
            }
            ServerFrame::Message { seq, data, .. } => {
                seen += 1;
                assert_eq!((seq, data), (seen, json!({"n": seen})));
            }
            other => panic!("{other:?}"),
        }
    }
    for n in 1..=50u64 {
        assert_eq!(
            next_frame(&mut bob).await,
            ServerFrame::Message {
                channel: "room:1".into(),
                seq: n,
                data: json!({"n": n})
            }
        );
    }
    // A late subscriber learns where the channel stands.
    let (mut carol, _) = connect_native(&server).await;
    send(
        &mut carol,
        &ClientFrame::Subscribe {
            channel: "room:1".into(),
        },
    )
    .await;
    assert_eq!(
        next_frame(&mut carol).await,
        ServerFrame::Subscribed {
            channel: "room:1".into(),
            seq: 50
        }
    );
}

#[tokio::test]
async fn unsubscribed_channels_deliver_nothing_more() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut reader, _) = connect_native(&server).await;
    let (mut writer, _) = connect_native(&server).await;
    subscribe(&mut reader, "a").await;
    subscribe(&mut reader, "b").await;
    send(
        &mut reader,
        &ClientFrame::Unsubscribe {
            channel: "a".into(),
        },
    )
    .await;
    assert_eq!(
        next_frame(&mut reader).await,
        ServerFrame::Unsubscribed {
            channel: "a".into()
        }
    );
    for channel in ["a", "b"] {
        let frame = ClientFrame::Publish {
            channel: channel.into(),
            data: json!(channel),
            id: None,
        };
        send(&mut writer, &frame).await;
    }
    // Only b's message arrives.
    match next_frame(&mut reader).await {
        ServerFrame::Message { channel, .. } => assert_eq!(channel, "b"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn shutdown_closes_with_1012_and_spreads_reconnect_hints() {
    let spread = Duration::from_secs(5);
    let server = TestServer::start(ServerConfig {
        shutdown_spread: spread,
        ..ServerConfig::default()
    })
    .await;
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(connect_native(&server).await.0);
    }
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let hint = match next_frame(&mut socket).await {
                    ServerFrame::Reconnect { after_ms, .. } => after_ms,
                    other => panic!("expected a reconnect hint, got {other:?}"),
                };
                let (code, reason) = expect_close(&mut socket).await;
                assert_eq!(code, 1012);
                assert_eq!(reason, format!("server restarting; retry after {hint} ms"));
                hint
            })
        })
        .collect();
    let stopping = tokio::spawn(server.shut_down());
    let mut hints = Vec::new();
    for reader in readers {
        hints.push(reader.await.unwrap());
    }
    stopping.await.unwrap();
    let max = u64::try_from(spread.as_millis()).unwrap();
    assert!(hints.iter().all(|hint| *hint <= max), "{hints:?}");
    let distinct: HashSet<_> = hints.iter().collect();
    assert!(distinct.len() >= 15, "hints not spread: {hints:?}");
    let (low, high) = (hints.iter().min().unwrap(), hints.iter().max().unwrap());
    assert!(high - low >= max / 2, "hints bunched in [{low}, {high}]");
}
