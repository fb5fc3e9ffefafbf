//! The limits of docs/SECURITY.md ("Floods and memory pinning") over real sockets:
//! the message rate, connections per address (behind a trusted proxy too) and per
//! user (tokens minted by PyJWT), the node's accept rate, connections that never
//! upgrade, messages left incomplete, channels, publish ids and their owners, the
//! frame length with its top bit set, and the headers of the demo page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{Access, Holdings, RateLimits, Secret, ServerConfig};
use heartwire_testkit::tokens::{Spec, TokenKit};
use heartwire_testkit::{
    PATIENCE, Socket, TestServer, connect, connect_native, expect_close, fast_config, http_get,
    http_request, next_frame, send,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, client_async};

const SECRET: &str = "a shared secret of at least thirty-two bytes";

fn with_rates(rates: RateLimits) -> ServerConfig {
    ServerConfig {
        rates,
        ..fast_config(5_000, 5_000)
    }
}

fn with_holdings(holdings: Holdings) -> ServerConfig {
    ServerConfig {
        holdings,
        ..fast_config(5_000, 5_000)
    }
}

fn publish(channel: &str, id: &str) -> ClientFrame {
    ClientFrame::Publish {
        channel: channel.into(),
        data: json!("x"),
        id: Some(id.into()),
    }
}

/// The status and `Retry-After` of an upgrade to `/ws` with `headers`, when it is
/// refused; `None` when it is accepted.
async fn refused_upgrade(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let mut request = server.url(path).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let attempt = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time");
    match attempt {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_default();
            Some((response.status().as_u16(), retry_after))
        }
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

/// A WebSocket to `server` from the loopback address `from`.
async fn connect_from(server: &TestServer, from: [u8; 4]) -> Socket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut socket, _) = client_async(server.url("/ws"), MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Hello { .. }
    ));
    socket
}

#[tokio::test]
async fn a_flooding_connection_is_told_to_wait_then_closed_and_heartbeats_never_count() {
    let server = TestServer::start(with_rates(RateLimits {
        // One token a minute: nothing refills while the test runs.
        message_rate: "1/m".parse().unwrap(),
        message_burst: 5,
        ..RateLimits::default()
    }))
    .await;
    let (mut socket, _) = connect_native(&server).await;
    for n in 0..5 {
        send(&mut socket, &publish("room", &format!("p-{n}"))).await;
        assert!(matches!(
            next_frame(&mut socket).await,
            ServerFrame::Ack { .. }
        ));
    }
    send(&mut socket, &publish("room", "p-5")).await;
    match next_frame(&mut socket).await {
        ServerFrame::Error {
            code: ErrorCode::RateLimited,
            id,
            retry_after_ms: Some(retry),
            ..
        } => {
            assert_eq!(id.as_deref(), Some("p-5"), "the refused publish is named");
            assert!(retry > 0 && retry <= 60_000, "{retry}");
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
    // Heartbeats of both kinds are answered however many come.
    for _ in 0..30 {
        send(
            &mut socket,
            &ClientFrame::Ping {
                echo: Default::default(),
            },
        )
        .await;
        assert!(matches!(
            next_frame(&mut socket).await,
            ServerFrame::Pong { .. }
        ));
        socket
            .send(Message::Ping(b"hi".to_vec().into()))
            .await
            .unwrap();
    }
    // Four more refusals are tolerated; the fifth message is one too many.
    for n in 6..10 {
        send(&mut socket, &publish("room", &format!("p-{n}"))).await;
        let refused = next_frame(&mut socket).await;
        assert!(
            matches!(
                refused,
                ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }
            ),
            "{refused:?}"
        );
    }
    send(&mut socket, &publish("room", "p-10")).await;
    assert_eq!(
        expect_close(&mut socket).await,
        (1008, "rate limited".into())
    );
    let refused = r#"heartwire_refused_total{reason="message_rate"}"#;
    assert_eq!(server.metric(refused).await, 5.0);
    let closed = r#"heartwire_disconnects_total{reason="rate_limited"}"#;
    assert_eq!(server.wait_for_metric(closed, 1.0).await, 1.0);
}

#[tokio::test]
async fn an_address_holds_at_most_so_many_connections_and_a_trusted_proxy_names_it() {
    let server = TestServer::start(with_rates(RateLimits {
        max_connections_per_ip: 2,
        ..RateLimits::default()
    }))
    .await;
    let _first = connect(&server.url("/ws")).await;
    let second = connect(&server.url("/ws")).await;
    // A forged header from an untrusted peer changes nothing.
    let forged = [("x-forwarded-for", "5.5.5.5")];
    assert_own_limit(refused_upgrade(&server, "/ws", &forged).await);
    let _other_address = connect_from(&server, [127, 0, 0, 2]).await;
    drop(second);
    // The slot comes back once the server has seen the connection end.
    let deadline = Instant::now() + PATIENCE;
    while refused_upgrade(&server, "/ws", &[]).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the address's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metric = r#"heartwire_refused_total{reason="max_connections_per_ip"}"#;
    assert!(server.metric(metric).await >= 1.0);

    let behind_proxy = TestServer::start(with_rates(RateLimits {
        max_connections_per_ip: 1,
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..RateLimits::default()
    }))
    .await;
    let client = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(
        refused_upgrade(&behind_proxy, "/ws", &client("5.5.5.5")).await,
        None
    );
    let mut held = Vec::new();
    for ip in ["5.5.5.5", "6.6.6.6"] {
        let mut request = behind_proxy.url("/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .append("x-forwarded-for", HeaderValue::from_static(ip));
        held.push(tokio_tungstenite::connect_async(request).await.unwrap());
    }
    assert_own_limit(refused_upgrade(&behind_proxy, "/ws", &client("5.5.5.5")).await);
    // The proxy's own address is not the client's: others behind it still get in.
    assert_eq!(
        refused_upgrade(&behind_proxy, "/ws", &client("7.7.7.7")).await,
        None
    );
}

#[tokio::test]
async fn a_user_holds_at_most_so_many_connections_however_many_addresses() {
    let kit = TokenKit::new().await;
    let tokens = kit
        .mint(&[
            Spec::secret("HS256", SECRET, json!({"sub": "ada"})),
            Spec::secret("HS256", SECRET, json!({"sub": "bob"})),
        ])
        .await;
    let server = TestServer::start(ServerConfig {
        access: Access {
            jwt_secret: Some(Secret::from(SECRET)),
            ..Access::default()
        },
        ..with_rates(RateLimits {
            max_connections_per_user: 2,
            ..RateLimits::default()
        })
    })
    .await;
    let ada = format!("/ws?token={}", tokens[0]);
    let _one = connect(&server.url(&ada)).await;
    let two = connect(&server.url(&ada)).await;
    assert_own_limit(refused_upgrade(&server, &ada, &[]).await);
    let bob = format!("/ws?token={}", tokens[1]);
    assert_eq!(refused_upgrade(&server, &bob, &[]).await, None);
    drop(two);
    let deadline = Instant::now() + PATIENCE;
    while refused_upgrade(&server, &ada, &[]).await.is_some() {
        assert!(Instant::now() < deadline, "ada's slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metric = r#"heartwire_refused_total{reason="max_connections_per_user"}"#;
    assert!(server.metric(metric).await >= 1.0);
}

#[tokio::test]
async fn past_the_accept_rate_connections_are_answered_503_with_retry_after() {
    let server = TestServer::start(with_rates(RateLimits {
        // One connection, then one a minute.
        accept_rate: "1/m".parse().unwrap(),
        ..RateLimits::default()
    }))
    .await;
    let _first = connect(&server.url("/ws")).await;
    let response = http_request(server.addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    // At least a second, spread over --shutdown-spread (5 s by default).
    let wait: u64 = response
        .lines()
        .find_map(|line| line.strip_prefix("Retry-After: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {response}"));
    assert!((1..=6).contains(&wait), "{response}");
    assert!(response.contains("accept-rate"), "{response}");
}

/// A refusal for the client's own connections: 429, asked to wait at least 10 s,
/// spread over --shutdown-spread (5 s by default).
fn assert_own_limit(refusal: Option<(u16, String)>) {
    let Some((429, wait)) = &refusal else {
        panic!("expected 429, got {refusal:?}")
    };
    let wait: u64 = wait.parse().expect("Retry-After in seconds");
    assert!((10..=15).contains(&wait), "Retry-After {wait}");
}

/// A TCP connection that sends nothing.
async fn idle(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test]
async fn connections_that_never_upgrade_count_against_max_connections() {
    let mut config = fast_config(5_000, 5_000);
    config.limits.max_connections = 2;
    let server = TestServer::start(config).await;
    // Two, and the eight more a full node still takes for health checks and scrapes.
    let first = idle(server.addr).await;
    let mut others = Vec::new();
    for _ in 0..9 {
        others.push(idle(server.addr).await);
    }
    // The server may take a moment to accept them both.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = http_request(server.addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
        if response.starts_with("HTTP/1.1 503") {
            assert!(response.contains("max-connections"), "{response}");
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {response}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    while !http_request(server.addr, "GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .starts_with("HTTP/1.0 200")
    {
        assert!(
            Instant::now() < deadline,
            "the idle connection's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket opened by hand, for frames no client library sends.
async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "GET /echo HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut byte))
            .await
            .expect("the answer in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A client frame with a zero mask.
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut bytes = vec![
        opcode | if fin { 0x80 } else { 0 },
        0x80 | payload.len() as u8,
    ];
    bytes.extend([0, 0, 0, 0]);
    bytes.extend(payload);
    bytes
}

/// Reads the server's frames until its close frame; returns the close code.
async fn close_code(stream: &mut (impl AsyncReadExt + Unpin)) -> u16 {
    loop {
        let mut head = [0; 2];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut head))
            .await
            .expect("a frame in time")
            .unwrap();
        let mut payload = vec![0; usize::from(head[1] & 0x7f)];
        stream.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[tokio::test]
async fn a_message_left_incomplete_is_closed_with_1008_however_many_pings_come() {
    let timeout = Duration::from_millis(400);
    let server = TestServer::start(with_holdings(Holdings {
        message_timeout: timeout,
        ..Holdings::default()
    }))
    .await;
    // A first fragment, then Pings that keep the connection alive.
    let mut fragments = raw_upgrade(server.addr).await;
    fragments
        .write_all(&frame(0x1, false, b"hel"))
        .await
        .unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = fragments.into_split();
    let pinger = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(&frame(0x9, true, b"")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let code = close_code(&mut reader).await;
    pinger.abort();
    assert_eq!(code, 1008);
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());

    // Half a frame is as incomplete as half a message.
    let mut half = raw_upgrade(server.addr).await;
    half.write_all(&frame(0x1, true, b"hello")[..8])
        .await
        .unwrap();
    assert_eq!(close_code(&mut half).await, 1008);
    let metric = r#"heartwire_disconnects_total{reason="incomplete_message"}"#;
    assert_eq!(server.wait_for_metric(metric, 2.0).await, 2.0);
}

#[tokio::test]
async fn a_64_bit_length_with_its_top_bit_set_is_closed_with_1002() {
    let server = TestServer::start(fast_config(5_000, 5_000)).await;
    let mut stream = raw_upgrade(server.addr).await;
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend((1u64 << 63).to_be_bytes());
    bytes.extend([0, 0, 0, 0]);
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1002);
}

#[tokio::test]
async fn channels_are_capped_per_creating_connection_and_per_node() {
    let server = TestServer::start(with_holdings(Holdings {
        max_created_channels: 3,
        max_channels: 4,
        ..Holdings::default()
    }))
    .await;
    let (mut creator, _) = connect_native(&server).await;
    for channel in ["c1", "c2", "c3", "c4"] {
        send(&mut creator, &publish(channel, channel)).await;
    }
    for _ in 0..3 {
        assert!(matches!(
            next_frame(&mut creator).await,
            ServerFrame::Ack { .. }
        ));
    }
    match next_frame(&mut creator).await {
        ServerFrame::Error {
            code: ErrorCode::TooManyChannels,
            id,
            reason,
            ..
        } => {
            assert_eq!(id.as_deref(), Some("c4"));
            assert!(reason.contains("max-created-channels"), "{reason}");
        }
        other => panic!("expected too_many_channels, got {other:?}"),
    }
    let (mut other, _) = connect_native(&server).await;
    for channel in ["d1", "d2"] {
        send(
            &mut other,
            &ClientFrame::Subscribe {
                channel: channel.into(),
                since: None,
            },
        )
        .await;
    }
    assert!(matches!(
        next_frame(&mut other).await,
        ServerFrame::Subscribed { .. }
    ));
    match next_frame(&mut other).await {
        ServerFrame::Error {
            code: ErrorCode::TooManyChannels,
            reason,
            ..
        } => assert!(reason.contains("max-channels"), "{reason}"),
        other => panic!("expected too_many_channels, got {other:?}"),
    }
    let metric = r#"heartwire_refused_total{reason="too_many_channels"}"#;
    assert_eq!(server.metric(metric).await, 2.0);
}

#[tokio::test]
async fn publish_ids_are_bounded_in_length_and_belong_to_their_publisher() {
    let server = TestServer::start(with_holdings(Holdings {
        max_publish_id_length: 16,
        ..Holdings::default()
    }))
    .await;
    let mut mallory = connect_from(&server, [127, 0, 0, 3]).await;
    send(&mut mallory, &publish("room", &"x".repeat(17))).await;
    match next_frame(&mut mallory).await {
        ServerFrame::Error {
            code: ErrorCode::IdTooLong,
            id: None,
            reason,
            ..
        } => assert!(reason.contains("max-publish-id-length"), "{reason}"),
        other => panic!("expected id_too_long, got {other:?}"),
    }
    // Mallory claims the id alice is about to use: alice is published all the same.
    send(&mut mallory, &publish("room", "alice-1")).await;
    assert!(matches!(
        next_frame(&mut mallory).await,
        ServerFrame::Ack {
            duplicate: false,
            ..
        }
    ));
    let mut alice = connect_from(&server, [127, 0, 0, 4]).await;
    send(&mut alice, &publish("room", "alice-1")).await;
    assert!(matches!(
        next_frame(&mut alice).await,
        ServerFrame::Ack {
            seq: 2,
            duplicate: false,
            ..
        }
    ));
    send(&mut alice, &publish("room", "alice-1")).await;
    assert!(matches!(
        next_frame(&mut alice).await,
        ServerFrame::Ack {
            seq: 2,
            duplicate: true,
            ..
        }
    ));
    let metric = r#"heartwire_refused_total{reason="id_too_long"}"#;
    assert_eq!(server.metric(metric).await, 1.0);
}

#[tokio::test]
async fn the_demo_page_is_served_with_security_headers() {
    let server = TestServer::start(fast_config(5_000, 5_000)).await;
    let response = http_request(server.addr, "GET / HTTP/1.0\r\nHost: test\r\n\r\n").await;
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!http_get(server.addr, "/").await.is_empty());
}
