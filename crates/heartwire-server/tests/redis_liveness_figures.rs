//! False reaps across nodes: a client reaped for silence by one node comes back to
//! another node of the same Redis, reports that it heard the server's close, and that
//! node counts the false reap (the reap is a short-lived Redis key, taken once).

use futures_util::SinkExt;
use heartwire_core::protocol::ServerFrame;
use heartwire_testkit::redis::{TestRedis, node};
use heartwire_testkit::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reaped_by_one_node_and_back_on_another_is_a_false_reap_there() {
    let redis = TestRedis::start();
    let reaper = node(&redis, fast_config(300, 300)).await;
    let other = node(&redis, fast_config(300, 300)).await;
    let session = silent_client(&reaper).await;
    reaper
        .wait_for_metric(
            r#"heartwire_detection_seconds_count{reason="ping_timeout"}"#,
            1.0,
        )
        .await;

    let (mut socket, _) = connect_native(&other).await;
    let report = json!({"op": "report", "previous_session": session, "offline_ms": 900,
                        "reason": "closed", "code": 1011, "last_heard_ms": 0});
    socket
        .send(Message::text(report.to_string()))
        .await
        .unwrap();
    other
        .wait_for_metric("heartwire_false_reaps_total", 1.0)
        .await;
    assert_eq!(
        other
            .metric(r#"heartwire_client_reports_total{result="accepted"}"#)
            .await,
        1.0
    );
    assert_eq!(reaper.metric("heartwire_false_reaps_total").await, 0.0);
    // The connection that reported goes on as before.
    subscribe(&mut socket, "room").await;
    socket
        .send(Message::text(r#"{"op":"ping"}"#))
        .await
        .unwrap();
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Pong { .. }
    ));
}
