//! `/healthz` over a real socket: what it tells an operator (version, node, uptime,
//! broker), and that a shutting-down server keeps answering it with `draining` (503)
//! while its connections close, so a load balancer sees the node leave.

use std::time::Duration;

use heartwire_server::ServerConfig;
use heartwire_testkit::{PATIENCE, TestServer, connect_native, http_get, http_request};

async fn health(server: std::net::SocketAddr) -> serde_json::Value {
    serde_json::from_str(&http_get(server, "/healthz").await).expect("/healthz is JSON")
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn healthz_names_the_version_the_node_and_the_uptime() {
    let server = TestServer::start(ServerConfig::default()).await;
    let first = health(server.addr).await;
    assert_eq!(first["status"], "ok");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(first["broker"], "memory");
    let node = first["node"].as_str().expect("a node id");
    assert_eq!(node.len(), 16, "{node}");
    assert!(first["uptime_seconds"].as_u64().is_some(), "{first}");
    // The node keeps its id.
    assert_eq!(health(server.addr).await["node"], node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_answers_healthz_with_503_until_its_connections_are_gone() {
    let mut config = ServerConfig::default();
    config.liveness.close_timeout = Duration::from_secs(2);
    let server = TestServer::start(config).await;
    let addr = server.addr;
    // A client that never reads: it does not answer the close, so draining lasts.
    let (_silent, _) = connect_native(&server).await;
    let stopping = tokio::spawn(server.shut_down());

    let started = tokio::time::Instant::now();
    let response = loop {
        let response = http_request(addr, "GET /healthz HTTP/1.0\r\nHost: test\r\n\r\n").await;
        if response.contains("draining") {
            break response;
        }
        assert!(started.elapsed() < PATIENCE, "never draining: {response}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status_line(&response).contains(" 503 "), "{response}");
    // A new upgrade is refused while the node drains.
    let upgrade = http_request(
        addr,
        "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert!(status_line(&upgrade).contains(" 503 "), "{upgrade}");
    tokio::time::timeout(PATIENCE * 3, stopping)
        .await
        .expect("the server stops once the close timeout passed")
        .expect("shut down");
}

/// The sample lines of a scrape without their values.
fn series(scrape: &str) -> Vec<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            line.rsplit_once(' ')
                .map_or(line, |(name, _)| name)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn metrics_come_in_a_stable_order_with_process_build_and_subscription_figures() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut socket, _) = connect_native(&server).await;
    for channel in ["a", "b"] {
        heartwire_testkit::subscribe(&mut socket, channel).await;
    }
    let first = http_get(server.addr, "/metrics").await;
    let second = http_get(server.addr, "/metrics").await;
    assert_eq!(series(&first), series(&second), "two scrapes, two orders");
    let names: Vec<String> = series(&first)
        .iter()
        .map(|line| line.split('{').next().unwrap_or_default().to_owned())
        .collect();
    let families: Vec<&str> = first
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE heartwire_"))
        .filter(|rest| !rest.starts_with("build_info"))
        .map(|rest| rest.split(' ').next().unwrap_or_default())
        .collect();
    let mut sorted = families.clone();
    sorted.sort_unstable();
    assert_eq!(families, sorted, "families by name");
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(names.iter().any(|name| name == family), "no {family}");
    }
    assert!(
        first.contains(&format!(
            "heartwire_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{first}"
    );
    assert_eq!(server.metric("heartwire_channels").await, 2.0);
    assert_eq!(server.metric("heartwire_subscriptions").await, 2.0);
}
