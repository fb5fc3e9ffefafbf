//! The native `/ws` protocol end to end: hello, ping/pong, channels with sequence
//! numbers and acks, and the spread-out reconnect hints of a graceful shutdown.

use std::collections::HashSet;
use std::time::Duration;

use heartwire_core::protocol::{ClientFrame, Position, ServerFrame};
use heartwire_server::{Retention, ServerConfig};
use heartwire_testkit::*;
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
                user,
                expires_in_ms,
                reports,
            } => {
                assert_eq!((ping_interval_ms, ping_timeout_ms), (1500, 2500));
                assert!(reports, "the server takes reports of previous sessions");
                // No credentials configured: anonymous, and nothing expires.
                assert_eq!((user, expires_in_ms), (None, None));
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
            ServerFrame::Ack {
                id,
                seq,
                duplicate: false,
            } => {
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
            since: None,
        },
    )
    .await;
    match next_frame(&mut carol).await {
        ServerFrame::Subscribed {
            channel,
            seq: 50,
            recovered: None,
            ..
        } => assert_eq!(channel, "room:1"),
        other => panic!("{other:?}"),
    }
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

/// Subscribes with `since` and returns the confirmation's `seq` and `recovered`.
async fn resubscribe(socket: &mut Socket, channel: &str, since: Position) -> (u64, Option<bool>) {
    let frame = ClientFrame::Subscribe {
        channel: channel.into(),
        since: Some(since),
    };
    send(socket, &frame).await;
    match next_frame(socket).await {
        ServerFrame::Subscribed { seq, recovered, .. } => (seq, recovered),
        other => panic!("{other:?}"),
    }
}

async fn publish_numbers(
    socket: &mut Socket,
    channel: &str,
    numbers: std::ops::RangeInclusive<u64>,
) {
    for n in numbers {
        let frame = ClientFrame::Publish {
            channel: channel.into(),
            data: json!(n),
            id: None,
        };
        send(socket, &frame).await;
    }
}

#[tokio::test]
async fn a_client_that_comes_back_gets_exactly_what_it_missed() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut writer, _) = connect_native(&server).await;
    let (mut reader, _) = connect_native(&server).await;
    send(
        &mut reader,
        &ClientFrame::Subscribe {
            channel: "feed".into(),
            since: None,
        },
    )
    .await;
    let epoch = match next_frame(&mut reader).await {
        ServerFrame::Subscribed { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };
    publish_numbers(&mut writer, "feed", 1..=3).await;
    for n in 1..=3u64 {
        assert!(
            matches!(next_frame(&mut reader).await, ServerFrame::Message { seq, .. } if seq == n)
        );
    }
    drop(reader);

    // Published while the reader is away; the ack of the last one says the broker
    // has them all.
    publish_numbers(&mut writer, "feed", 4..=9).await;
    let last = ClientFrame::Publish {
        channel: "feed".into(),
        data: json!(10),
        id: Some("last".into()),
    };
    send(&mut writer, &last).await;
    assert!(matches!(
        next_frame(&mut writer).await,
        ServerFrame::Ack { seq: 10, .. }
    ));
    let (mut back, _) = connect_native(&server).await;
    assert_eq!(
        resubscribe(&mut back, "feed", Position { epoch, seq: 3 }).await,
        (10, Some(true))
    );
    publish_numbers(&mut writer, "feed", 11..=12).await;
    for n in 4..=12u64 {
        match next_frame(&mut back).await {
            ServerFrame::Message { seq, data, .. } => assert_eq!((seq, data), (n, json!(n))),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_gap_the_history_cannot_fill_is_reported() {
    let server = TestServer::start(ServerConfig {
        retention: Retention {
            history_size: 4,
            ..Retention::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let (mut writer, _) = connect_native(&server).await;
    send(
        &mut writer,
        &ClientFrame::Subscribe {
            channel: "feed".into(),
            since: None,
        },
    )
    .await;
    let epoch = match next_frame(&mut writer).await {
        ServerFrame::Subscribed { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };
    publish_numbers(&mut writer, "feed", 1..=10).await;
    for _ in 1..=10 {
        next_frame(&mut writer).await;
    }
    let (mut back, _) = connect_native(&server).await;
    let since = Position {
        epoch: epoch.clone(),
        seq: 2,
    };
    assert_eq!(
        resubscribe(&mut back, "feed", since).await,
        (10, Some(false))
    );
    let since = Position {
        epoch: "another epoch".into(),
        seq: 10,
    };
    assert_eq!(
        resubscribe(&mut back, "feed", since).await,
        (10, Some(false))
    );
    // Nothing was replayed: the next frame is the answer to a ping.
    send(
        &mut back,
        &ClientFrame::Ping {
            echo: serde_json::Map::new(),
        },
    )
    .await;
    assert!(matches!(
        next_frame(&mut back).await,
        ServerFrame::Pong { .. }
    ));
}

#[tokio::test]
async fn a_publish_sent_again_after_a_reconnect_is_not_published_twice() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "orders").await;
    let publish = ClientFrame::Publish {
        channel: "orders".into(),
        data: json!("order 1"),
        id: Some("client-7f3a:1".into()),
    };
    for attempt in 0..2 {
        // Each attempt on a new connection, as after a reconnect.
        let (mut writer, _) = connect_native(&server).await;
        send(&mut writer, &publish).await;
        let duplicate = attempt == 1;
        assert_eq!(
            next_frame(&mut writer).await,
            ServerFrame::Ack {
                id: "client-7f3a:1".into(),
                seq: 1,
                duplicate
            }
        );
    }
    assert!(matches!(
        next_frame(&mut reader).await,
        ServerFrame::Message { seq: 1, .. }
    ));
    send(
        &mut reader,
        &ClientFrame::Ping {
            echo: serde_json::Map::new(),
        },
    )
    .await;
    assert!(
        matches!(next_frame(&mut reader).await, ServerFrame::Pong { .. }),
        "published twice"
    );
}
