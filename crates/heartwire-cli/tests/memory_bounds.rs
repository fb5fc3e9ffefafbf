//! One unauthenticated client tries each way of pinning a node's memory, against a
//! `heartwire serve` process; the process's resident memory (from
//! /proc/PID/status) stays within what its options allow, with generous slack for
//! the allocator and the buffers of the moment. Without the bounds each attack adds
//! at least twice its slack.

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, Running, heartwire};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1 << 20;

/// What the allocator, the runtime and the frames in flight may add to a bound.
const SLACK: u64 = 32 * MIB;

/// History bytes the node may hold for all channels (`--history-total-bytes`).
const HISTORY_TOTAL: u64 = 8 * MIB;

/// Channels one connection may create (`--max-created-channels`).
const CREATED_CHANNELS: u64 = 1000;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .map(|kib| kib.trim().parse().unwrap())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let hello = tokio::time::timeout(PATIENCE, socket.next()).await.unwrap();
    assert!(matches!(hello, Some(Ok(Message::Text(_)))), "{hello:?}");
    socket
}

/// Frames sent before the client waits for the server to catch up: what they
/// bring back must fit in the connection's mailbox (`--outbound-queue`).
const BATCH: usize = 100;

/// Sends `frames` in batches, each followed by a publish with an id whose ack says
/// the server has handled the batch. Returns the texts that came back, but for the
/// acks of those publishes.
async fn flood(addr: &str, frames: impl Iterator<Item = String>) -> Vec<String> {
    let mut socket = connect(addr).await;
    let mut answers = Vec::new();
    let mut frames = frames.peekable();
    let mut batch = 0;
    loop {
        for frame in frames.by_ref().take(BATCH) {
            socket.send(Message::text(frame)).await.unwrap();
        }
        batch += 1;
        let marker = format!(r#""id":"batch-{batch}""#);
        let publish = format!(r#"{{"op":"publish","channel":"room:0","data":0,{marker}}}"#);
        socket.send(Message::text(publish)).await.unwrap();
        loop {
            let next = tokio::time::timeout(PATIENCE, socket.next())
                .await
                .expect("the batch is handled in time");
            match next {
                Some(Ok(Message::Text(text))) if text.contains(&marker) => break,
                Some(Ok(Message::Text(text))) => answers.push(text.to_string()),
                Some(Ok(_)) => {}
                other => panic!("the connection ended: {other:?}"),
            }
        }
        if frames.peek().is_none() {
            return answers;
        }
    }
}

/// Runs `attack` and checks that resident memory grew by at most `bound`.
async fn within(pid: u32, what: &str, bound: u64, attack: impl std::future::Future<Output = ()>) {
    let before = rss(pid);
    let started = Instant::now();
    attack.await;
    let grown = rss(pid).saturating_sub(before);
    eprintln!(
        "{what}: +{} KiB resident in {:?} (bound {} KiB)",
        grown / 1024,
        started.elapsed(),
        bound / 1024
    );
    assert!(grown <= bound, "{what}: +{grown} bytes, over {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_pin_memory_beyond_the_configured_bounds() {
    let mut command = heartwire();
    command.env("HEARTWIRE_LOG", "warn").args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        // Each attack is about memory, not speed.
        "--message-rate",
        "0/s",
        "--max-message-size",
        "300KiB",
        "--history-max-bytes",
        "4MiB",
        "--history-total-bytes",
        "8MiB",
        "--max-created-channels",
        "1000",
        "--max-publish-id-length",
        "128",
    ]);
    let server = Running::start(command);
    let pid = server.child.id();
    let addr = server.addr.clone();
    // Warm the process up: its first connections size the runtime's buffers.
    for _ in 0..3 {
        flood(&addr, std::iter::empty()).await;
    }

    // 500 messages of 256 KiB on four channels: 128 MiB without a bound on history.
    let body = "x".repeat(256 * 1024);
    let history = (0..500).map(move |n| {
        format!(
            r#"{{"op":"publish","channel":"room:{}","data":"{body}"}}"#,
            n % 4
        )
    });
    let bound = 3 * HISTORY_TOTAL + SLACK;
    within(pid, "history", bound, async {
        assert!(flood(&addr, history).await.is_empty());
    })
    .await;

    // 400 publish ids of 256 KiB, each refused: 100 MiB of ids without a bound on
    // their length.
    let id = "i".repeat(256 * 1024);
    let ids = (0..400)
        .map(move |n| format!(r#"{{"op":"publish","channel":"ids","data":{n},"id":"{id}{n}"}}"#));
    within(pid, "publish ids", SLACK, async {
        let answers = flood(&addr, ids).await;
        assert_eq!(answers.len(), 400);
        assert!(answers.iter().all(|text| text.contains("id_too_long")));
    })
    .await;

    // 100,000 channels from one connection: about 78 MiB without a cap.
    let channels =
        (0..100_000).map(|n| format!(r#"{{"op":"publish","channel":"c:{n}","data":0}}"#));
    within(pid, "channels", SLACK, async {
        let answers = flood(&addr, channels).await;
        let refused = answers
            .iter()
            .filter(|text| text.contains("too_many_channels"))
            .count() as u64;
        assert_eq!(refused, 100_000 - CREATED_CHANNELS);
    })
    .await;

    // The node still serves.
    let started = Instant::now();
    flood(&addr, std::iter::empty()).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}
