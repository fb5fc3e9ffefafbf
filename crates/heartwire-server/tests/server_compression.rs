//! permessage-deflate with real peers: Python `websockets` and raw sockets
//! (`tests/peers/deflate_client.py`), and Node `ws` with perMessageDeflate
//! (`tests/peers/deflate_node.mjs`), against `/echo`.
//!
//! Each peer checks the agreement, messages compressed both ways, an offer with a bad
//! parameter (declined: the upgrade goes on without compression), and a decompression
//! bomb (closed with 1009). This process is the server, so its peak memory shows what
//! the bomb cost: bounded by the limit, not by the 512 MiB it would inflate to.
//!
//! Python 3 with the pinned packages of `tests/peers/requirements.txt`, and Node with
//! `tests/peers/node_modules`, must be installed (`scripts/test` does it).

use std::process::Stdio;
use std::time::Duration;

use heartwire_server::ServerConfig;
use heartwire_testkit::TestServer;
use heartwire_testkit::peer::{repo_root, require};

/// How long one peer program may run.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `program args… URL…` and returns its JSON report, failing unless it says ok.
async fn run(program: &str, args: &[&str]) -> serde_json::Value {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {program}: {err}; run scripts/test"));
    let output = tokio::time::timeout(PEER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} ran longer than {PEER_TIMEOUT:?}"))
        .expect("the peer's output can be read");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("{program} printed no report\n{stdout}\n{stderr}"));
    assert!(
        output.status.success() && report["ok"] == true,
        "{program} {args:?}: {report}\n--- stderr\n{stderr}"
    );
    report
}

/// A line of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_peers_get_deflate_bad_offers_are_declined_and_a_bomb_is_closed_with_1009() {
    require(
        "python3",
        &["-c", "import websockets"],
        "the Python package websockets",
    )
    .await;
    let config = ServerConfig::default();
    let limit = config.limits.max_message_size;
    let server = TestServer::start(config).await;
    let before = status_bytes("VmRSS:");
    let report = run(
        "python3",
        &[
            "tests/peers/deflate_client.py",
            &server.url("/echo"),
            "--max-message-size",
            &limit.to_string(),
        ],
    )
    .await;
    // The server's peak memory grew by far less than what the bomb inflates to: the
    // inflated limit, the compressed frame, and room for the other connections.
    let growth = status_bytes("VmHWM:").saturating_sub(before);
    let inflated = report["observed"]["bomb_inflated_bytes"].as_u64().unwrap();
    assert!(
        growth < 32 << 20,
        "peak grew by {growth} bytes for a bomb of {inflated}: {report}"
    );
    assert_eq!(report["observed"]["bomb_close_code"], 1009, "{report}");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_with_per_message_deflate_gets_it_and_saves_bytes() {
    require(
        "node",
        &["-e", "require('./tests/peers/node_modules/ws')"],
        "Node with tests/peers/node_modules",
    )
    .await;
    let server = TestServer::start(ServerConfig::default()).await;
    let report = run(
        "node",
        &["tests/peers/deflate_node.mjs", &server.url("/echo")],
    )
    .await;
    let observed = &report["observed"];
    assert!(
        observed["chat_wire_compressed"].as_u64() < observed["chat_wire_uncompressed"].as_u64(),
        "{report}"
    );
    eprintln!("node ws: {report}");
    server.shut_down().await;
}
