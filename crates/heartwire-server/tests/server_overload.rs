//! Overload admission over real sockets (docs/RELIABILITY.md, "Overload"): past a bound,
//! an upgrade is answered HTTP 503 with a spread `Retry-After` and a sentence naming
//! the signal, counted in `heartwire_refused_total`, while the connections already open
//! carry on. The memory bound is set under the process's own resident memory; the
//! handshake bound is crossed with connections that never send their request. The lag
//! bound's decision is tested with explicit time in the server's `overload::gate`.

use std::net::SocketAddr;
use std::time::Duration;

use heartwire_server::{OverloadBounds, ServerConfig};
use heartwire_testkit::{
    PATIENCE, TestServer, connect, connect_native, fast_config, http_get, http_request,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close\r\n\r\n";

fn with_bounds(overload: OverloadBounds) -> ServerConfig {
    ServerConfig {
        overload,
        shutdown_spread: Duration::from_secs(4),
        ..fast_config(5_000, 5_000)
    }
}

/// The process's resident memory, in bytes.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Asserts that `response` is a 503 whose `Retry-After` is within 1 s plus the spread
/// of 4 s, and whose sentence has `words`.
fn assert_overloaded(response: &str, words: &str) {
    assert_eq!(response.split(' ').nth(1), Some("503"), "{response}");
    let wait: u64 = response
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Retry-After in {response}"));
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    assert!(response.contains(words), "{response}");
}

async fn refused_total(addr: SocketAddr, reason: &str) -> f64 {
    let series = format!("heartwire_refused_total{{reason=\"{reason}\"}} ");
    let scrape = http_get(addr, "/metrics").await;
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {scrape}"))
}

#[tokio::test]
async fn over_the_memory_bound_upgrades_are_refused_503_and_health_still_answers() {
    let max = resident_bytes() / 2;
    let server = TestServer::start(with_bounds(OverloadBounds {
        overload_max_memory: Some(max),
        ..OverloadBounds::default()
    }))
    .await;
    let response = http_request(server.addr, UPGRADE).await;
    assert_overloaded(&response, "memory is over overload-max-memory");
    let stream = http_request(
        server.addr,
        "GET /sse?channel=a HTTP/1.0\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_overloaded(&stream, "memory");
    assert_eq!(refused_total(server.addr, "overload_memory").await, 2.0);
    assert_eq!(refused_total(server.addr, "overload_lag").await, 0.0);
    // Health checks and scrapes are not refused: the node is still there.
    let health = http_request(server.addr, "GET /healthz HTTP/1.0\r\nHost: t\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    server.shut_down().await;
}

#[tokio::test]
async fn under_the_memory_bound_upgrades_are_let_in() {
    let server = TestServer::start(with_bounds(OverloadBounds {
        overload_max_memory: Some(resident_bytes() * 64),
        ..OverloadBounds::default()
    }))
    .await;
    let (_socket, _session) = connect_native(&server).await;
    assert_eq!(refused_total(server.addr, "overload_memory").await, 0.0);
    let scrape = http_get(server.addr, "/metrics").await;
    for gauge in [
        "heartwire_scheduler_lag_seconds ",
        "heartwire_runtime_alive_tasks ",
    ] {
        let value: f64 = scrape
            .lines()
            .find_map(|line| line.strip_prefix(gauge)?.parse().ok())
            .unwrap_or_else(|| panic!("no {gauge}in {scrape}"));
        assert!(value >= 0.0, "{gauge}{value}");
    }
    server.shut_down().await;
}

#[tokio::test]
async fn past_the_pending_handshakes_upgrades_are_refused_until_they_are_answered() {
    let server = TestServer::start(with_bounds(OverloadBounds {
        max_pending_handshakes: 2,
        ..OverloadBounds::default()
    }))
    .await;
    // An open WebSocket is no longer a pending handshake.
    let _open = connect(&server.url("/ws")).await;
    // Two connections that never send their request hold two handshakes in flight;
    // with the upgrade's own, that is three.
    let mut silent = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET /ws HTTP/1.1\r\n")
            .await
            .expect("write");
        silent.push(stream);
    }
    let response = http_request(server.addr, UPGRADE).await;
    assert_overloaded(&response, "max-pending-handshakes");
    assert_eq!(refused_total(server.addr, "overload_handshakes").await, 1.0);
    // Past the bound and the 8 connections of headroom kept for health checks, a new
    // connection is answered 503 before its request is read.
    for _ in 0..8 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(b"GET /ws HTTP/1.1\r\n")
            .await
            .expect("write");
        silent.push(stream);
    }
    let started = tokio::time::Instant::now();
    let response = loop {
        // The server counts a connection once it accepted it: the last silent ones may
        // not be counted yet.
        let response = http_request(server.addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
        if !response.starts_with("HTTP/1.0 200") {
            break response;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never refused before the request"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_overloaded(&response, "max-pending-handshakes");
    // Once they are gone, upgrades are let in again.
    drop(silent);
    let started = tokio::time::Instant::now();
    loop {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(UPGRADE.as_bytes()).await.expect("write");
        let mut head = [0u8; 12];
        tokio::time::timeout(
            PATIENCE,
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head),
        )
        .await
        .expect("an answer in time")
        .expect("read");
        if head.starts_with(b"HTTP/1.1 101") {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "still refused after the silent connections closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused_total(server.addr, "overload_handshakes").await >= 2.0);
    server.shut_down().await;
}
