//! The server's liveness over real sockets: silent clients are reaped within
//! `ping_interval + ping_timeout`, busy ones are never pinged, and clients that answer
//! Pings stay up.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use heartwire_testkit::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;

const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 300;
/// Scheduling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(700);

#[tokio::test]
async fn silent_client_is_reaped_within_the_bound_and_counted() {
    let server = TestServer::start(fast_config(INTERVAL_MS, TIMEOUT_MS)).await;
    let bound = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS);

    // A real handshake, then the client takes the raw TCP stream and never writes again.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (socket, _) = client_async(server.url("/ws"), tcp).await.unwrap();
    let opened = Instant::now();
    let mut tcp = socket.into_inner();
    let mut sink = vec![0u8; 4096];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server drops the silent client");
    let lived = ended - opened;
    assert!(
        lived + Duration::from_millis(50) >= bound,
        "reaped after {lived:?}, before the bound {bound:?}"
    );
    assert!(
        lived <= bound + SLACK,
        "reaped after {lived:?}, bound {bound:?} + slack {SLACK:?}"
    );

    server
        .wait_for_metric(r#"heartwire_disconnects_total{reason="ping_timeout"}"#, 1.0)
        .await;
    assert_eq!(server.metric("heartwire_pings_sent_total").await, 1.0);
    assert_eq!(
        server
            .metric(r#"heartwire_connections_open{endpoint="native"}"#)
            .await,
        0.0
    );
}

#[tokio::test]
async fn busy_client_is_never_pinged() {
    let server = TestServer::start(fast_config(INTERVAL_MS, TIMEOUT_MS)).await;
    let mut socket = connect(&server.url("/echo")).await;
    let mut pings = 0;
    // Traffic every quarter interval for ten intervals.
    let rounds = 40;
    for round in 0..rounds {
        socket
            .send(Message::text(format!("tick {round}")))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, socket.next())
                .await
                .expect("echo in time")
            {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Text(text))) => {
                    assert_eq!(text.as_str(), format!("tick {round}"));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS / 4)).await;
    }
    assert_eq!(pings, 0, "a client with traffic was pinged");
    assert_eq!(server.metric("heartwire_pings_sent_total").await, 0.0);
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn client_that_answers_pings_stays_up_for_many_intervals() {
    let server = TestServer::start(fast_config(INTERVAL_MS, TIMEOUT_MS)).await;
    let (mut socket, _session) = connect_native(&server).await;
    let hold = Duration::from_millis(INTERVAL_MS * 10);
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    // Reading lets the client answer each Ping with a Pong, and nothing else is sent.
    while started.elapsed() < hold {
        match tokio::time::timeout_at(started + hold, socket.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("connection disturbed: {other:?}"),
        }
    }
    // One Ping per interval of silence, counted from the previous Pong.
    assert!(pings >= 5, "only {pings} pings in ten intervals");
    assert!(pings <= 10, "{pings} pings in ten intervals");
    assert_eq!(
        server
            .metric(r#"heartwire_disconnects_total{reason="ping_timeout"}"#)
            .await,
        0.0
    );
    assert_eq!(
        server
            .metric(r#"heartwire_connections_open{endpoint="native"}"#)
            .await,
        1.0
    );
    assert!(server.metric("heartwire_pongs_received_total").await >= 5.0);
    assert!(server.metric("heartwire_rtt_seconds_count").await >= 5.0);
    socket.close(None).await.unwrap();
}
