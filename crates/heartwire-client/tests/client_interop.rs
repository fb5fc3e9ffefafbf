//! The client against servers that are not heartwire: Python `websockets` and Node
//! `ws` peers started by the test, and small tokio-tungstenite servers that close with
//! a given code.
//!
//! The peers need `pip install -r tests/peers/requirements.txt` and
//! `npm install --prefix tests/peers`; without them these tests fail, saying so.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use heartwire_client::{self as client, ClientConfig, ClosedReason, Event, Incoming};
use heartwire_core::{BackoffConfig, Delay, DisconnectReason};
use heartwire_testkit::client::wait_for;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const WITHIN: Duration = Duration::from_secs(10);

fn peers_dir() -> PathBuf {
    heartwire_testkit::peer::repo_root().join("tests/peers")
}

/// Starts a peer script that prints its port, and returns it with that port.
async fn start_peer(program: &str, script: &str, install_hint: &str) -> (Child, u16) {
    let mut child = Command::new(program)
        .arg(script)
        .current_dir(peers_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {program}: {err}; {install_hint}"));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let read = tokio::time::timeout(WITHIN, BufReader::new(stdout).read_line(&mut line)).await;
    if let Ok(port) = line.trim().parse() {
        return (child, port);
    }
    let mut stderr = String::new();
    if let Some(err) = child.stderr.take() {
        let mut reader = BufReader::new(err);
        while tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut stderr))
            .await
            .is_ok_and(|read| read.is_ok_and(|n| n > 0))
        {}
    }
    panic!(
        "{program} {script} did not print its port ({read:?}); {install_hint}\nstderr:\n{stderr}"
    );
}

fn quick_config(url: &str) -> ClientConfig {
    let mut config = ClientConfig::new([url]).unwrap();
    config.ping_interval = Duration::from_millis(200);
    config.ping_timeout = Duration::from_millis(300);
    config.backoff = BackoffConfig {
        delay: Delay::Exponential {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
        },
        ..BackoffConfig::default()
    };
    config.jitter_seed = Some(9);
    config
}

/// Echo, RTT from the client's own Pings, and a reconnect after the peer is killed.
async fn echo_and_reconnect(mut peer: Child, port: u16) {
    let url = format!("ws://127.0.0.1:{port}/");
    let (client, mut events) = client::connect(quick_config(&url)).unwrap();
    let (open, _) = wait_for(&mut events, WITHIN, "open", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    assert!(
        matches!(open, Event::Open { session: None, .. }),
        "not a heartwire server: no session"
    );
    for n in 0..3 {
        client.send_text(format!("line {n}")).unwrap();
    }
    for n in 0..3 {
        let expected = format!("line {n}");
        wait_for(&mut events, WITHIN, &expected, |event| {
            *event == Event::Message(Incoming::Text(expected.clone()))
        })
        .await;
    }
    // The client pings after 200 ms of silence; the peer answers by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while client.rtt().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no RTT measured");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(client.rtt().unwrap() < Duration::from_secs(1));

    peer.kill().await.unwrap();
    wait_for(&mut events, WITHIN, "reconnecting", |event| {
        matches!(event, Event::Reconnecting { .. })
    })
    .await;
    client.close();
    wait_for(&mut events, WITHIN, "closed", |event| {
        matches!(event, Event::Closed { .. })
    })
    .await;
}

#[tokio::test]
async fn python_websockets_peer() {
    let (peer, port) = start_peer(
        "python3",
        "echo_server.py",
        "install it with `pip install -r tests/peers/requirements.txt`",
    )
    .await;
    echo_and_reconnect(peer, port).await;
}

#[tokio::test]
async fn node_ws_peer() {
    let (peer, port) = start_peer(
        "node",
        "echo_server.js",
        "install it with `npm install --prefix tests/peers`",
    )
    .await;
    echo_and_reconnect(peer, port).await;
}

/// A server that closes every connection at once with `code` and `reason`; returns
/// its URL and how many connections it accepted.
async fn closing_server(code: u16, reason: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let close = CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                while socket.next().await.is_some_and(|frame| frame.is_ok()) {}
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn no_retry_after_a_do_not_come_back_close() {
    for (code, reason) in [(4401, "unauthorized"), (1008, "forbidden"), (1002, "")] {
        let (url, accepted) = closing_server(code, reason).await;
        let (_client, mut events) = client::connect(quick_config(&url)).unwrap();
        let (closed, _) = wait_for(&mut events, WITHIN, "closed", |event| {
            matches!(event, Event::Closed { .. } | Event::Reconnecting { .. })
        })
        .await;
        assert_eq!(
            closed,
            Event::Closed {
                reason: ClosedReason::DoNotComeBack(DisconnectReason::PeerClosed {
                    code: Some(code),
                    reason: reason.into()
                })
            },
            "close {code}"
        );
        assert_eq!(events.next().await, None, "nothing after closed");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "close {code}: one connection"
        );
    }
}

#[tokio::test]
async fn slow_consumer_close_is_retried() {
    let (url, accepted) = closing_server(1008, "slow consumer").await;
    let (client, mut events) = client::connect(quick_config(&url)).unwrap();
    for _ in 0..2 {
        let (event, _) = wait_for(&mut events, WITHIN, "reconnecting", |event| {
            matches!(event, Event::Reconnecting { .. } | Event::Closed { .. })
        })
        .await;
        assert!(matches!(event, Event::Reconnecting { .. }), "{event:?}");
    }
    assert!(accepted.load(Ordering::SeqCst) >= 2);
    client.close();
}

#[tokio::test]
async fn restart_close_waits_for_the_hinted_delay() {
    let (url, _) = closing_server(1012, "server restarting; retry after 700 ms").await;
    let (client, mut events) = client::connect(quick_config(&url)).unwrap();
    let (event, _) = wait_for(&mut events, WITHIN, "reconnecting", |event| {
        matches!(event, Event::Reconnecting { .. })
    })
    .await;
    let Event::Reconnecting { delay, .. } = event else {
        unreachable!()
    };
    assert_eq!(delay, Duration::from_millis(700));
    client.close();
}

#[tokio::test]
async fn a_restart_close_starts_the_backoff_streak_again() {
    // Three failures, then a graceful restart, then a failure: its attempt counts from
    // the restart, not from the failures before it.
    let script: [(u16, &str); 5] = [
        (1011, "boom"),
        (1011, "boom"),
        (1011, "boom"),
        (1012, "server restarting; retry after 20 ms"),
        (1011, "boom"),
    ];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for (code, reason) in script {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let close = CloseFrame {
                code: code.into(),
                reason: reason.into(),
            };
            let _ = socket.send(Message::Close(Some(close))).await;
            while socket.next().await.is_some_and(|frame| frame.is_ok()) {}
        }
    });
    let (client, mut events) = client::connect(quick_config(&url)).unwrap();
    let mut attempts = Vec::new();
    while attempts.len() < 5 {
        let (event, _) = wait_for(&mut events, WITHIN, "reconnecting", |event| {
            matches!(event, Event::Reconnecting { .. })
        })
        .await;
        if let Event::Reconnecting { attempt, .. } = event {
            attempts.push(attempt);
        }
    }
    assert_eq!(attempts, [1, 2, 3, 1, 2]);
    client.close();
}

#[tokio::test]
async fn refused_handshake_everywhere_closes_the_client() {
    // An HTTP server that answers 404 to the upgrade: no server can ever work.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut request = vec![0u8; 4096];
            let _ = tcp.read(&mut request).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let (_client, mut events) = client::connect(quick_config(&url)).unwrap();
    let (closed, _) = wait_for(&mut events, WITHIN, "closed", |event| {
        matches!(event, Event::Closed { .. })
    })
    .await;
    let Event::Closed {
        reason: ClosedReason::NoUsableServer(why),
    } = closed
    else {
        panic!("{closed:?}")
    };
    assert!(why.contains("HTTP 404"), "{why}");
}

#[tokio::test]
async fn every_attempt_carries_a_fresh_token() {
    // A server that records each handshake's Authorization header and closes at once
    // with 1011, so the client must come back again and again.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                // The error type is tungstenite's handshake callback's own.
                #[allow(clippy::result_large_err)]
                let record = |request: &Request, response: Response| {
                    let header = request.headers().get("authorization");
                    let value = header
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("none");
                    let _ = seen_tx.send(value.to_owned());
                    Ok(response)
                };
                let mut socket = tokio_tungstenite::accept_hdr_async(tcp, record)
                    .await
                    .unwrap();
                let close = CloseFrame {
                    code: 1011.into(),
                    reason: "try again".into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                while socket.next().await.is_some_and(|frame| frame.is_ok()) {}
            });
        }
    });

    let issued = Arc::new(AtomicUsize::new(0));
    let mut config = quick_config(&url);
    let counter = Arc::clone(&issued);
    config.token = Some(Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { Some(format!("token-{n}")) })
    }));
    let (client, _events) = client::connect(config).unwrap();
    let mut headers = Vec::new();
    for _ in 0..3 {
        let header = tokio::time::timeout(WITHIN, seen.recv())
            .await
            .expect("an attempt in time");
        headers.push(header.expect("the server runs"));
    }
    assert_eq!(
        headers,
        ["Bearer token-1", "Bearer token-2", "Bearer token-3"]
    );
    client.close();
}
