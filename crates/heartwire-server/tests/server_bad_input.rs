//! Bad input gets a clear answer and harms no other connection: close codes for
//! protocol-level faults, error envelopes for request faults, 503 at capacity, and
//! dropped half-finished handshakes.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{Limits, LivenessTiming, RateLimits, ServerConfig};
use heartwire_testkit::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

async fn expect_error(socket: &mut Socket, code: ErrorCode) -> String {
    match next_frame(socket).await {
        ServerFrame::Error {
            code: got, reason, ..
        } if got == code => reason,
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

/// The connection still answers: a ping gets its pong.
async fn assert_still_open(socket: &mut Socket) {
    let mut echo = serde_json::Map::new();
    echo.insert("t".into(), json!(7));
    send(socket, &ClientFrame::Ping { echo: echo.clone() }).await;
    assert_eq!(next_frame(socket).await, ServerFrame::Pong { echo });
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let config = ServerConfig {
        limits: Limits {
            max_message_size: 1024,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    for path in ["/ws", "/echo"] {
        let mut socket = connect(&server.url(path)).await;
        socket.send(Message::text("x".repeat(1025))).await.unwrap();
        let (code, reason) = expect_close(&mut socket).await;
        assert_eq!(
            (code, reason.as_str()),
            (1009, "message too big"),
            "on {path}"
        );
    }
    // A message of exactly the limit is fine.
    let mut socket = connect(&server.url("/echo")).await;
    socket.send(Message::text("y".repeat(1024))).await.unwrap();
    assert_eq!(next_text(&mut socket).await.len(), 1024);
    assert_eq!(
        server
            .metric(r#"heartwire_disconnects_total{reason="message_too_big"}"#)
            .await,
        2.0
    );
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut socket = connect(&server.url("/ws")).await;
    let frame = Frame::message(vec![0x68, 0xff, 0x69], OpCode::Data(Data::Text), true);
    socket.send(Message::Frame(frame)).await.unwrap();
    let (code, _) = expect_close(&mut socket).await;
    assert_eq!(code, 1007);
    server
        .wait_for_metric(r#"heartwire_disconnects_total{reason="invalid_utf8"}"#, 1.0)
        .await;
}

#[tokio::test]
async fn request_faults_get_error_envelopes_and_the_connection_stays() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_subscriptions: 2,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let (mut socket, _) = connect_native(&server).await;

    socket.send(Message::text("{oops")).await.unwrap();
    expect_error(&mut socket, ErrorCode::BadJson).await;
    socket
        .send(Message::text(r#"{"op":"dance"}"#))
        .await
        .unwrap();
    let reason = expect_error(&mut socket, ErrorCode::UnknownOp).await;
    assert!(reason.contains("dance"), "{reason}");
    socket
        .send(Message::text(r#"{"op":"subscribe","channel":"has space"}"#))
        .await
        .unwrap();
    expect_error(&mut socket, ErrorCode::InvalidChannel).await;
    socket
        .send(Message::text(r#"{"op":"publish","channel":"a"}"#))
        .await
        .unwrap();
    let reason = expect_error(&mut socket, ErrorCode::BadRequest).await;
    assert!(reason.contains("data"), "{reason}");
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    expect_error(&mut socket, ErrorCode::Unsupported).await;

    subscribe(&mut socket, "one").await;
    subscribe(&mut socket, "two").await;
    subscribe(&mut socket, "two").await; // again: harmless, not a third
    send(
        &mut socket,
        &ClientFrame::Subscribe {
            channel: "three".into(),
            since: None,
        },
    )
    .await;
    expect_error(&mut socket, ErrorCode::TooManySubscriptions).await;

    assert_still_open(&mut socket).await;
}

#[tokio::test]
async fn slow_consumer_is_closed_and_the_others_get_everything() {
    let config = ServerConfig {
        limits: Limits {
            outbound_queue: 32,
            ..Limits::default()
        },
        // The publisher floods on purpose: the subject is the slow reader.
        rates: unlimited(),
        // The slow client reads only once the fast one has everything, which may take
        // up to `PATIENCE * 3` on a busy machine; its close must still be waiting then,
        // not given up on (a close that times out drops the socket, close frame unsent).
        liveness: LivenessTiming {
            close_timeout: PATIENCE * 4,
            ..LivenessTiming::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut slow, _) = connect_native(&server).await;
    subscribe(&mut slow, "firehose").await;
    let (mut fast, _) = connect_native(&server).await;
    subscribe(&mut fast, "firehose").await;
    let (mut publisher, _) = connect_native(&server).await;

    // 32 MiB in 2,000 messages: more than the kernel buffers of a client that does not
    // read can hold, so its mailbox overflows.
    let count = 2_000u64;
    let body = "z".repeat(16 * 1024);
    let fast_reader = tokio::spawn(async move {
        for expected in 1..=count {
            match next_frame(&mut fast).await {
                ServerFrame::Message { seq, .. } => assert_eq!(seq, expected),
                other => panic!("{other:?}"),
            }
        }
        fast
    });
    for _ in 0..count {
        let frame = ClientFrame::Publish {
            channel: "firehose".into(),
            data: json!(body),
            id: None,
        };
        send(&mut publisher, &frame).await;
    }
    let mut fast = tokio::time::timeout(PATIENCE * 3, fast_reader)
        .await
        .expect("fast reader done")
        .unwrap();

    // The slow client now reads, within the close timeout: what was already in
    // flight, then the close. Its backlog beyond that was dropped.
    let (code, reason) = expect_close(&mut slow).await;
    assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
    server
        .wait_for_metric(
            r#"heartwire_disconnects_total{reason="slow_consumer"}"#,
            1.0,
        )
        .await;
    assert_still_open(&mut fast).await;
    assert_still_open(&mut publisher).await;
}

#[tokio::test]
async fn connections_beyond_the_maximum_get_503_before_the_upgrade() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_connections: 2,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut first = connect(&server.url("/echo")).await;
    let _second = connect(&server.url("/ws")).await;
    match tokio_tungstenite::connect_async(server.url("/echo")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 503);
            // A second, spread over --shutdown-spread (5 s by default).
            let wait: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=6).contains(&wait), "Retry-After {wait}");
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    assert_eq!(server.metric("heartwire_rejected_total").await, 1.0);
    // A freed slot is usable again.
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    let deadline = Instant::now() + PATIENCE;
    while tokio_tungstenite::connect_async(server.url("/echo"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn malformed_upgrade_requests_get_a_status_and_a_sentence() {
    let server = TestServer::start(ServerConfig::default()).await;
    let good = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    let cases = [
        // axum's router answers a method the route does not take.
        ("POST", None, "405", ""),
        // HEAD reaches GET routes in axum; the upgrade refuses it.
        ("HEAD", None, "405", ""),
        ("GET", Some(0), "400", "Connection header"),
        ("GET", Some(1), "400", "Upgrade header"),
        ("GET", Some(2), "400", "Sec-WebSocket-Version"),
        ("GET", Some(3), "400", "Sec-WebSocket-Key"),
    ];
    for (method, missing, status, sentence) in cases {
        let headers: String = good
            .iter()
            .enumerate()
            .filter(|(index, _)| Some(*index) != missing)
            .map(|(_, header)| format!("{header}\r\n"))
            .collect();
        let request = format!("{method} /echo HTTP/1.0\r\nHost: test\r\n{headers}\r\n");
        let response = http_request(server.addr, &request).await;
        let status_line = response.lines().next().unwrap_or_default();
        assert!(
            status_line.contains(status),
            "{method} without {missing:?}: {response}"
        );
        assert!(
            response.contains(sentence),
            "{method} without {missing:?}: {response}"
        );
    }
    // Still serving upgrades.
    let (mut socket, _) = connect_native(&server).await;
    assert_still_open(&mut socket).await;
}

#[tokio::test]
async fn a_frame_sent_together_with_the_upgrade_request_is_answered() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut request = b"GET /echo HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec();
    // A masked text frame "early" in the same write.
    let mask = [1u8, 2, 3, 4];
    request.extend([0x81, 0x80 | 5]);
    request.extend(mask);
    request.extend(b"early".iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&request).await.unwrap();

    let mut received = Vec::new();
    let echoed = [0x81, 5, b'e', b'a', b'r', b'l', b'y'];
    tokio::time::timeout(PATIENCE, async {
        while !received.ends_with(&echoed) {
            let mut chunk = [0; 512];
            let read = tcp.read(&mut chunk).await.unwrap();
            assert!(
                read > 0,
                "closed early: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("the early frame is echoed");
    assert!(received.starts_with(b"HTTP/1.1 101"));
}

#[tokio::test]
async fn a_flood_of_requests_in_one_write_is_answered_in_full_and_in_order() {
    // Far more frames than replies may wait (32), in one write, so the server stops
    // decoding with most of them read but not yet decoded. Nothing else would wake
    // the connection (its next Ping is 20 s away) if it forgot them.
    let server = TestServer::start(ServerConfig {
        rates: unlimited(),
        ..ServerConfig::default()
    })
    .await;
    let mut socket = connect(&server.url("/echo")).await;
    let count = 2_000u32;
    let mask = [9u8, 8, 7, 6];
    let mut flood = Vec::new();
    for n in 0..count {
        let text = n.to_string();
        flood.extend([0x81, 0x80 | text.len() as u8]);
        flood.extend(mask);
        flood.extend(text.bytes().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
    }
    match socket.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.write_all(&flood).await.unwrap(),
        _ => unreachable!("loopback is plain TCP"),
    }
    tokio::time::timeout(PATIENCE, async {
        for n in 0..count {
            assert_eq!(next_text(&mut socket).await, n.to_string());
        }
    })
    .await
    .expect("every frame echoed well before the next Ping");
}

#[tokio::test]
async fn unfinished_handshakes_are_dropped_after_the_timeout() {
    let timeout = Duration::from_millis(300);
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            handshake_timeout: timeout,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    for opening in ["", "GET /ws HTTP/1.1\r\nHost: te"] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(opening.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut buffer = Vec::new();
        tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut buffer))
            .await
            .expect("the server drops the connection")
            .ok();
        let held = started.elapsed();
        assert!(
            held + Duration::from_millis(50) >= timeout,
            "dropped after {held:?} for {opening:?}"
        );
        assert!(
            held <= timeout + Duration::from_millis(700),
            "held {held:?} for {opening:?}"
        );
    }
}

/// No message rate, for tests that flood on purpose.
fn unlimited() -> RateLimits {
    RateLimits {
        message_rate: "0/s".parse().unwrap(),
        ..RateLimits::default()
    }
}
