//! The liveness figures of `/metrics` over real sockets: the detection time of a
//! silent client, the reports clients send of their previous session (offline time,
//! reason, false reaps; bad reports ignored), and how resumes went.

use std::time::Duration;

use futures_util::SinkExt;
use heartwire_core::protocol::{ClientFrame, Position, ServerFrame};
use heartwire_testkit::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 300;
/// Scheduling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(700);

async fn send_text(socket: &mut Socket, value: serde_json::Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

/// Whether the connection still answers: a `ping` gets its `pong`.
async fn still_open(socket: &mut Socket) {
    send_text(socket, json!({"op": "ping", "n": 1})).await;
    match next_frame(socket).await {
        ServerFrame::Pong { echo } => assert_eq!(echo["n"], 1),
        other => panic!("expected the pong, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_client_is_one_detection_time_within_the_bound() {
    let server = TestServer::start(fast_config(INTERVAL_MS, TIMEOUT_MS)).await;
    let count = r#"heartwire_detection_seconds_count{reason="ping_timeout"}"#;
    assert_eq!(server.metric(count).await, 0.0);
    silent_client(&server).await;
    server.wait_for_metric(count, 1.0).await;
    let detected = server
        .metric(r#"heartwire_detection_seconds_sum{reason="ping_timeout"}"#)
        .await;
    // Silent from the handshake: a Ping after the interval, the reap a timeout later.
    let bound = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS).as_secs_f64();
    assert!(
        detected >= bound && detected <= bound + SLACK.as_secs_f64(),
        "detected after {detected} s, bound {bound} s + slack {SLACK:?}"
    );
    assert_eq!(server.metric(count).await, 1.0);
}

#[tokio::test]
async fn reports_count_offline_time_and_a_reaped_client_that_heard_the_close_is_a_false_reap() {
    let server = TestServer::start(fast_config(INTERVAL_MS, TIMEOUT_MS)).await;
    let reaped = silent_client(&server).await;
    server
        .wait_for_metric(
            r#"heartwire_detection_seconds_count{reason="ping_timeout"}"#,
            1.0,
        )
        .await;

    // The reaped client heard the server's close 1011: a false reap.
    let (mut socket, _) = connect_native(&server).await;
    send_text(
        &mut socket,
        json!({"op": "report", "previous_session": reaped, "offline_ms": 1500,
               "reason": "closed", "code": 1011, "last_heard_ms": 0}),
    )
    .await;
    still_open(&mut socket).await;
    assert_eq!(server.metric("heartwire_false_reaps_total").await, 1.0);
    assert_eq!(
        server
            .metric(r#"heartwire_client_reports_total{result="accepted"}"#)
            .await,
        1.0
    );
    let offline = r#"heartwire_client_offline_seconds_sum{reason="server_reaped"}"#;
    assert_eq!(server.metric(offline).await, 1.5);

    // A second report on one connection is ignored and counted; the connection stays.
    send_text(
        &mut socket,
        json!({"op": "report", "previous_session": reaped, "offline_ms": 1, "reason": "closed", "code": 1011}),
    )
    .await;
    still_open(&mut socket).await;
    let invalid = r#"heartwire_client_reports_total{result="invalid"}"#;
    assert_eq!(server.metric(invalid).await, 1.0);

    // The same session reported again from elsewhere counts no second false reap; a
    // client that lost the server on its own side (its own ping timeout) is no false
    // reap either, and an unknown reason is "other".
    for (session, reason) in [
        (reaped.as_str(), "closed"),
        ("0123abcd", "ping_timeout"),
        ("ab", "sunspots"),
    ] {
        let (mut socket, _) = connect_native(&server).await;
        send_text(
            &mut socket,
            json!({"op": "report", "previous_session": session, "offline_ms": 200, "reason": reason, "code": 1011}),
        )
        .await;
        still_open(&mut socket).await;
    }
    assert_eq!(server.metric("heartwire_false_reaps_total").await, 1.0);
    assert_eq!(
        server
            .metric(r#"heartwire_client_offline_seconds_count{reason="ping_timeout"}"#)
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric(r#"heartwire_client_offline_seconds_count{reason="other"}"#)
            .await,
        1.0
    );

    // Bad reports are counted and ignored, and never close the connection.
    let (mut socket, _) = connect_native(&server).await;
    send_text(
        &mut socket,
        json!({"op": "report", "previous_session": "x".repeat(65), "offline_ms": 1, "reason": "network"}),
    )
    .await;
    still_open(&mut socket).await;
    let (mut socket, _) = connect_native(&server).await;
    send_text(
        &mut socket,
        json!({"op": "report", "previous_session": "ab", "offline_ms": -4, "reason": "network"}),
    )
    .await;
    still_open(&mut socket).await;
    assert_eq!(server.metric(invalid).await, 3.0);
    assert_eq!(
        server
            .metric(r#"heartwire_client_reports_total{result="accepted"}"#)
            .await,
        4.0
    );
}

#[tokio::test]
async fn resumes_are_counted_by_outcome_with_the_messages_replayed() {
    let mut config = fast_config(20_000, 20_000);
    config.retention.history_size = 3;
    let server = TestServer::start(config).await;
    let (mut publisher, _) = connect_native(&server).await;
    for n in 1..=5 {
        send(
            &mut publisher,
            &ClientFrame::Publish {
                channel: "room".into(),
                data: json!(n),
                id: Some(format!("p-{n}")),
            },
        )
        .await;
        assert!(matches!(
            next_frame(&mut publisher).await,
            ServerFrame::Ack { .. }
        ));
    }
    let epoch = epoch_of(&server, "room").await;
    assert_eq!(
        server
            .metric(r#"heartwire_resumes_total{outcome="recovered"}"#)
            .await,
        0.0,
        "a subscribe without a position is no resume"
    );
    // Kept: 3, 4, 5. From 3: 2 replayed. From 1: a gap. Another epoch: epoch_change.
    for (seq, epoch) in [
        (3, epoch.as_str()),
        (1, epoch.as_str()),
        (4, "0000000000000000"),
    ] {
        let (mut socket, _) = connect_native(&server).await;
        send(
            &mut socket,
            &ClientFrame::Subscribe {
                channel: "room".into(),
                since: Some(Position {
                    epoch: epoch.into(),
                    seq,
                }),
            },
        )
        .await;
        match next_frame(&mut socket).await {
            ServerFrame::Subscribed { .. } => {}
            other => panic!("expected subscribed, got {other:?}"),
        }
    }
    for outcome in ["recovered", "gap", "epoch_change"] {
        let series = format!("heartwire_resumes_total{{outcome=\"{outcome}\"}}");
        assert_eq!(server.metric(&series).await, 1.0, "{series}");
    }
    assert_eq!(
        server
            .metric("heartwire_resume_replayed_messages_sum")
            .await,
        2.0
    );
    assert_eq!(
        server
            .metric("heartwire_resume_replayed_messages_count")
            .await,
        1.0
    );
}

/// The epoch of `channel`, from a fresh subscription.
async fn epoch_of(server: &TestServer, channel: &str) -> String {
    let (mut socket, _) = connect_native(server).await;
    send(
        &mut socket,
        &ClientFrame::Subscribe {
            channel: channel.into(),
            since: None,
        },
    )
    .await;
    match next_frame(&mut socket).await {
        ServerFrame::Subscribed { epoch, .. } => epoch,
        other => panic!("expected subscribed, got {other:?}"),
    }
}
