//! The `Origin` check over real sockets: a handshake from a foreign page is refused
//! with HTTP 403 and a sentence naming the option, before any upgrade; the server's
//! own origin and clients that send no `Origin` pass. (tests/browser/origin.test.mjs
//! checks the same with Chromium and a page served from another origin.)

use heartwire_server::{Access, ServerConfig};
use heartwire_testkit::{PATIENCE, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The raw response to a WebSocket handshake for `path` with these extra headers.
async fn handshake(server: &TestServer, path: &str, extra: &str) -> String {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        server.addr
    );
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // The connection stays open after either answer: read the head, then the body
    // its Content-Length announces.
    let mut response = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            response.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&response).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .map_or(0, |length| length.trim().parse().unwrap());
                if body.len() >= length || n == 0 {
                    return text;
                }
            }
            assert!(n > 0, "the server hung up mid-answer: {text}");
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("an answer in time")
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn by_default_only_the_servers_own_origin_passes() {
    let server = TestServer::start(ServerConfig::default()).await;
    let own = format!("Origin: http://{}\r\n", server.addr);
    for path in ["/ws", "/echo", "/ws/chat?subscribe-broadcast"] {
        let refused = handshake(&server, path, "Origin: https://evil.example\r\n").await;
        assert!(status(&refused).starts_with("HTTP/1.1 403"), "{refused}");
        assert!(
            refused.ends_with(
                "WebSocket connections from pages of https://evil.example are not allowed: \
                 start heartwire with --allowed-origin https://evil.example to allow them"
            ),
            "{refused}"
        );
        assert!(
            !refused
                .to_ascii_lowercase()
                .contains("sec-websocket-accept")
        );
        let accepted = handshake(&server, path, &own).await;
        assert!(status(&accepted).starts_with("HTTP/1.1 101"), "{accepted}");
        // Not a browser: no Origin, no check.
        let plain = handshake(&server, path, "").await;
        assert!(status(&plain).starts_with("HTTP/1.1 101"), "{plain}");
    }
    // Another port of the same host is another origin.
    let port = server.addr.port().wrapping_add(1);
    let neighbour = format!("Origin: http://127.0.0.1:{port}\r\n");
    assert!(status(&handshake(&server, "/ws", &neighbour).await).starts_with("HTTP/1.1 403"));
    assert_eq!(
        server
            .metric(r#"heartwire_refused_total{reason="origin"}"#)
            .await,
        4.0
    );
}

#[tokio::test]
async fn allowed_origins_replace_the_default() {
    let server = TestServer::start(ServerConfig {
        access: Access {
            allowed_origins: vec![
                "https://app.example.com".into(),
                "https://*.example.org".into(),
            ],
            ..Access::default()
        },
        ..ServerConfig::default()
    })
    .await;
    for origin in [
        "https://app.example.com",
        "https://chat.example.org",
        "https://a.b.example.org",
    ] {
        let response = handshake(&server, "/ws", &format!("Origin: {origin}\r\n")).await;
        assert!(
            status(&response).starts_with("HTTP/1.1 101"),
            "{origin}: {response}"
        );
    }
    for origin in [
        "http://app.example.com",
        "https://example.org",
        "https://evilexample.org",
        "null",
    ] {
        let response = handshake(&server, "/ws", &format!("Origin: {origin}\r\n")).await;
        assert!(
            status(&response).starts_with("HTTP/1.1 403"),
            "{origin}: {response}"
        );
    }
}
