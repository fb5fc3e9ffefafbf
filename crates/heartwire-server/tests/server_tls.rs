//! TLS on the listener (`--tls-cert`, `--tls-key`) with certificates that the
//! `openssl` command makes at test time: every route over TLS, plain text and silent
//! clients on the TLS port, certificate errors on the client's side, start errors,
//! and a certificate replaced while connections stay open.

use std::path::Path;
use std::time::Duration;

use heartwire_client::{Client, ClientConfig, ClosedReason, Event, Events, Incoming, TlsRoots};
use heartwire_server::{ApiAccess, Limits, Secret, Server, ServerConfig, TlsFiles};
use heartwire_testkit::certs::{CertPair, TestCa, https_get, tls_connect};
use heartwire_testkit::client::wait_for;
use heartwire_testkit::{PATIENCE, TestServer, http_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tls_files(pair: &CertPair) -> TlsFiles {
    TlsFiles {
        tls_cert: Some(pair.cert.clone()),
        tls_key: Some(pair.key.clone()),
        ..TlsFiles::default()
    }
}

async fn tls_server(pair: &CertPair, config: ServerConfig) -> TestServer {
    TestServer::start(ServerConfig {
        tls: tls_files(pair),
        ..config
    })
    .await
}

fn client_config(server: &TestServer, ca: &Path) -> ClientConfig {
    let mut config = ClientConfig::new([server.wss_url("/ws")]).unwrap();
    config.tls_roots = TlsRoots::from_pem_file(ca).unwrap();
    config
}

/// A client of `server` trusting `ca`, open on a heartwire session.
async fn open(server: &TestServer, ca: &Path) -> (Client, Events) {
    let (client, mut events) = heartwire_client::connect(client_config(server, ca)).unwrap();
    wait_for(&mut events, PATIENCE, "open", |event| {
        matches!(
            event,
            Event::Open {
                session: Some(_),
                ..
            }
        )
    })
    .await;
    (client, events)
}

/// Publishes on `channel` and waits for the message to come back.
async fn round_trip(client: &Client, events: &mut Events, channel: &str, text: &str) {
    client.publish(channel, text.into()).unwrap();
    wait_for(
        events,
        PATIENCE,
        "the message back",
        |event| matches!(event, Event::Message(Incoming::Channel { data, .. }) if data == text),
    )
    .await;
}

/// Reads until the server closes the connection; the time it took.
async fn time_to_close(stream: &mut TcpStream) -> Duration {
    let start = tokio::time::Instant::now();
    let mut buffer = [0u8; 512];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for {PATIENCE:?}"),
        }
    }
}

/// The value of one series in a `/metrics` body.
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_served_over_tls_and_plain_text_harms_nothing() {
    let ca = TestCa::new("heartwire routes CA");
    let server = tls_server(&ca.localhost(), ServerConfig::default()).await;
    let (client, mut events) = open(&server, &ca.cert).await;
    client.subscribe("room:tls").unwrap();
    round_trip(&client, &mut events, "room:tls", "first").await;

    let health = https_get(server.addr, &ca.cert, "/healthz").await;
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    let metrics = https_get(server.addr, &ca.cert, "/metrics").await;
    assert!(metrics.contains("heartwire_connections_open"), "{metrics}");
    let script = https_get(server.addr, &ca.cert, "/heartwire.js").await;
    assert!(script.starts_with("HTTP/1.0 200"), "{}", &script[..80]);

    // Plain HTTP on the TLS port: a 400 that says what to do, then the end.
    let plain = http_request(server.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    assert!(plain.contains("This port speaks TLS"), "{plain}");
    // Bytes that begin like TLS and are not: the handshake fails, the socket closes.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x00\x08not a hello at all")
        .await
        .unwrap();
    time_to_close(&mut garbage).await;

    // The open connection never noticed.
    round_trip(&client, &mut events, "room:tls", "second").await;
    client.close();
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_dropped_at_the_handshake_timeout() {
    let ca = TestCa::new("heartwire handshake CA");
    let handshake_timeout = Duration::from_millis(400);
    let server = tls_server(
        &ca.localhost(),
        ServerConfig {
            limits: Limits {
                handshake_timeout,
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    // Silent after connecting; one byte of a TLS record, then silent; a finished
    // TLS handshake, then no HTTP request. Each is dropped, within the one deadline.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(&[0x16]).await.unwrap();
    let mut quiet_tls = tls_connect(server.addr, &ca.cert).await.unwrap();

    // Meanwhile a real client is served.
    let (client, mut events) = open(&server, &ca.cert).await;
    client.subscribe("room:busy").unwrap();
    round_trip(&client, &mut events, "room:busy", "served").await;

    let bound = handshake_timeout + Duration::from_secs(3);
    for (what, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        let took = time_to_close(stream).await;
        assert!(took < bound, "the {what} client held on for {took:?}");
    }
    let start = tokio::time::Instant::now();
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, quiet_tls.read_to_end(&mut buffer))
        .await
        .expect("the quiet TLS client is dropped");
    assert!(start.elapsed() < bound, "held for {:?}", start.elapsed());

    round_trip(&client, &mut events, "room:busy", "still served").await;
    client.close();
    server.shut_down().await;
}

/// Connects a client that trusts `trusted` to a server presenting `pair`, and
/// returns why it closed; fails if it ever tried again.
async fn refusal(pair: &CertPair, trusted: &Path) -> String {
    let server = tls_server(pair, ServerConfig::default()).await;
    let (_client, mut events) = heartwire_client::connect(client_config(&server, trusted)).unwrap();
    let mut seen = Vec::new();
    let reason = loop {
        let event = tokio::time::timeout(PATIENCE, events.next())
            .await
            .unwrap_or_else(|_| panic!("no close within {PATIENCE:?}; seen {seen:#?}"))
            .expect("events end with Closed");
        match event {
            Event::Closed {
                reason: ClosedReason::NoUsableServer(reason),
            } => break reason,
            Event::Reconnecting { .. } | Event::Open { .. } | Event::Closed { .. } => {
                panic!("a certificate error must be final: {event:?} after {seen:#?}")
            }
            other => seen.push(other),
        }
    };
    server.shut_down().await;
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_errors_are_final_and_name_the_host_and_the_check() {
    let ca = TestCa::new("heartwire client CA");
    let localhost = ["DNS:localhost", "IP:127.0.0.1"];

    let expired = refusal(&ca.issue(&localhost, -1), &ca.cert).await;
    assert!(expired.contains("`localhost`"), "{expired}");
    assert!(expired.contains("the validity check"), "{expired}");
    assert!(expired.contains("expired"), "{expired}");

    let elsewhere = refusal(&ca.issue(&["DNS:elsewhere.example"], 1), &ca.cert).await;
    assert!(elsewhere.contains("`localhost`"), "{elsewhere}");
    assert!(elsewhere.contains("the host name check"), "{elsewhere}");
    assert!(elsewhere.contains("elsewhere.example"), "{elsewhere}");

    let stranger = TestCa::new("heartwire stranger CA");
    let unknown = refusal(&stranger.localhost(), &ca.cert).await;
    assert!(unknown.contains("the trust check"), "{unknown}");
}

#[tokio::test]
async fn a_missing_or_mismatched_pair_stops_the_start_with_one_sentence() {
    let ca = TestCa::new("heartwire start CA");
    let (one, two) = (ca.localhost(), ca.localhost());
    let start = |cert: &Path, key: &Path| {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: TlsFiles {
                tls_cert: Some(cert.to_owned()),
                tls_key: Some(key.to_owned()),
                ..TlsFiles::default()
            },
            ..ServerConfig::default()
        };
        async move { Server::bind(config).await.unwrap_err().to_string() }
    };
    let missing = ca.path("missing.pem");
    let err = start(&missing, &one.key).await;
    assert!(
        err.contains("cannot read the TLS certificate file") && err.contains("missing.pem"),
        "{err}"
    );
    let err = start(&one.cert, &two.key).await;
    assert!(err.contains("does not match the certificate"), "{err}");
    let err = start(&one.key, &one.key).await;
    assert!(err.contains("holds no usable PEM certificate"), "{err}");
    let err = start(&one.cert, &one.cert).await;
    assert!(err.contains("holds no usable private key"), "{err}");
    let only_cert = ServerConfig {
        tls: TlsFiles {
            tls_cert: Some(one.cert.clone()),
            ..TlsFiles::default()
        },
        ..ServerConfig::default()
    };
    let err = Server::bind(only_cert).await.unwrap_err().to_string();
    assert!(err.contains("tls-cert needs tls-key"), "{err}");
}

/// Waits until `/metrics` of the TLS server shows `at_least` for `name`.
async fn wait_for_series(server: &TestServer, ca: &Path, name: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = https_get(server.addr, ca, "/metrics").await;
        if series(&metrics, name) >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_reaches_new_connections_and_open_ones_stay() {
    let old_ca = TestCa::new("heartwire old CA");
    let new_ca = TestCa::new("heartwire new CA");
    let (old, new) = (old_ca.localhost(), new_ca.localhost());
    let live = CertPair {
        cert: old_ca.path("live-cert.pem"),
        key: old_ca.path("live-key.pem"),
    };
    std::fs::copy(&old.cert, &live.cert).unwrap();
    std::fs::copy(&old.key, &live.key).unwrap();
    let server = TestServer::start(ServerConfig {
        tls: TlsFiles {
            tls_reload_check: Duration::from_millis(100),
            ..tls_files(&live)
        },
        ..ServerConfig::default()
    })
    .await;
    let (client, mut events) = open(&server, &old_ca.cert).await;
    client.subscribe("room:reload").unwrap();
    round_trip(&client, &mut events, "room:reload", "before").await;

    // Half a rotation: the new certificate with the old key. Refused, logged, and the
    // old pair stays in use.
    std::fs::copy(&new.cert, &live.cert).unwrap();
    wait_for_series(
        &server,
        &old_ca.cert,
        "heartwire_tls_reloads_total{result=\"failed\"}",
        1.0,
    )
    .await;
    let (still_old, _events) = open(&server, &old_ca.cert).await;
    still_old.close();

    // The rotation completes: new handshakes present the new certificate.
    std::fs::copy(&new.key, &live.key).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tls_connect(server.addr, &new_ca.cert).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = https_get(server.addr, &new_ca.cert, "/metrics").await;
    assert!(series(&metrics, "heartwire_tls_reloads_total{result=\"loaded\"}") >= 1.0);
    let (fresh, _events) = open(&server, &new_ca.cert).await;
    fresh.close();

    // The connection made under the old certificate never noticed.
    round_trip(&client, &mut events, "room:reload", "after").await;
    client.close();
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_and_node_ws_speak_the_native_protocol_over_tls() {
    heartwire_testkit::peer::require(
        "python3",
        &["-c", "import websockets"],
        "the Python package websockets",
    )
    .await;
    let ca = TestCa::new("heartwire peers CA");
    let report =
        heartwire_testkit::peer::run_peer_tls("python3", &["tests/peers/ws_client.py"], &ca).await;
    assert_eq!(report["observed"]["close_code"], 1000, "{report}");

    heartwire_testkit::peer::require(
        "node",
        &[
            "--input-type=module",
            "-e",
            "await import('./tests/peers/node_modules/ws/wrapper.mjs')",
        ],
        "the npm package ws in tests/peers",
    )
    .await;
    let report =
        heartwire_testkit::peer::run_peer_tls("node", &["tests/peers/node_client.mjs"], &ca).await;
    assert_eq!(report["ok"], true, "{report}");
}

#[tokio::test]
async fn the_admin_cookie_is_secure_over_tls() {
    const KEY: &str = "api-key-of-the-tls-test-0123456789";
    let ca = TestCa::new("heartwire admin CA");
    let config = ServerConfig {
        api: ApiAccess {
            api_key: Some(Secret::from(KEY)),
            api_key_file: None,
        },
        ..ServerConfig::default()
    };
    let server = tls_server(&ca.localhost(), config).await;
    let mut stream = tls_connect(server.addr, &ca.cert)
        .await
        .expect("a TLS connection");
    let body = format!("key={KEY}");
    let request = format!(
        "POST /admin/login HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    let cookie = response
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {response}"));
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
}
