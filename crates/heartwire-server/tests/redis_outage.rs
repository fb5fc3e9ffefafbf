//! Redis going away under running nodes: they stay up for their own connections,
//! say "degraded", refuse publishes with `unavailable`, reconnect by themselves,
//! resubscribe, and catch up from the stream or report that they could not.

use std::time::Duration;

use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::ServerConfig;
use heartwire_testkit::redis::{TestRedis, node};
use heartwire_testkit::{
    Socket, TestServer, ask_to_subscribe, connect_native, http_get, next_frame, send, subscribe,
    wait_for_health,
};
use serde_json::json;

/// Detecting the loss takes at most a failed PING (1 s apart, 1 s to answer), 2 s;
/// coming back takes at most the backoff's 5 s cap plus a connection attempt. Slack
/// on top of both.
const DETECT_BOUND: Duration = Duration::from_secs(4);
const RECOVER_BOUND: Duration = Duration::from_secs(9);

async fn publish(socket: &mut Socket, data: serde_json::Value, id: &str) -> ServerFrame {
    send(
        socket,
        &ClientFrame::Publish {
            channel: "stream".into(),
            data,
            id: Some(id.into()),
        },
    )
    .await;
    loop {
        match next_frame(socket).await {
            ServerFrame::Message { .. } => continue,
            answer => return answer,
        }
    }
}

async fn health(server: &TestServer) -> serde_json::Value {
    serde_json::from_str(&http_get(server.addr, "/healthz").await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_degrades_the_nodes_which_recover_by_themselves() {
    let mut redis = TestRedis::start();
    let a = node(&redis, ServerConfig::default()).await;
    let b = node(&redis, ServerConfig::default()).await;
    let (mut reader, _) = connect_native(&b).await;
    send(
        &mut reader,
        &ClientFrame::Subscribe {
            channel: "stream".into(),
            since: None,
        },
    )
    .await;
    let ServerFrame::Subscribed { epoch: before, .. } = next_frame(&mut reader).await else {
        panic!("expected subscribed")
    };
    let (mut writer, _) = connect_native(&a).await;
    for n in 1..=5u64 {
        let answer = publish(&mut writer, json!(n), &format!("w{n}")).await;
        assert!(
            matches!(answer, ServerFrame::Ack { seq, .. } if seq == n),
            "{answer:?}"
        );
    }
    for n in 1..=5u64 {
        assert!(
            matches!(next_frame(&mut reader).await, ServerFrame::Message { seq, .. } if seq == n)
        );
    }

    redis.kill();
    for server in [&a, &b] {
        let took = wait_for_health(server, "degraded").await;
        assert!(took <= DETECT_BOUND, "degraded after {took:?}");
        assert_eq!(server.metric("heartwire_broker_up").await, 0.0);
    }
    println!("both nodes degraded");
    // A publish now is refused with its id, never dropped in silence.
    match publish(&mut writer, json!("during"), "during").await {
        ServerFrame::Error {
            code, id, reason, ..
        } => {
            assert_eq!(
                (code, id.as_deref()),
                (ErrorCode::Unavailable, Some("during"))
            );
            println!("publish during the outage refused: {reason}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }

    redis.relaunch();
    for server in [&a, &b] {
        let took = wait_for_health(server, "ok").await;
        assert!(took <= RECOVER_BOUND, "ok again after {took:?}");
        println!(
            "node ok again after {took:?}; /healthz {}",
            health(server).await
        );
        assert_eq!(server.metric("heartwire_broker_up").await, 1.0);
        assert!(server.metric("heartwire_broker_reconnects_total").await >= 1.0);
    }
    // The new Redis is empty: the subscriber is told its position is gone, on the
    // connection it kept all along.
    match next_frame(&mut reader).await {
        ServerFrame::Subscribed {
            epoch,
            seq,
            recovered,
            ..
        } => {
            assert_ne!(epoch, before);
            assert_eq!((seq, recovered), (0, Some(false)));
        }
        other => panic!("expected a new subscribed, got {other:?}"),
    }
    // The client sends its refused publish again; it reaches the other node.
    let answer = publish(&mut writer, json!("during"), "during").await;
    assert!(
        matches!(
            answer,
            ServerFrame::Ack {
                seq: 1,
                duplicate: false,
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(
        next_frame(&mut reader).await,
        ServerFrame::Message {
            channel: "stream".into(),
            seq: 1,
            data: json!("during")
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pubsub_connection_is_caught_up_from_the_stream() {
    let redis = TestRedis::start();
    let a = node(&redis, ServerConfig::default()).await;
    let b = node(&redis, ServerConfig::default()).await;
    let (mut reader, _) = connect_native(&b).await;
    subscribe(&mut reader, "stream").await;
    let (mut writer, _) = connect_native(&a).await;
    const TOTAL: u64 = 40;
    for n in 1..=TOTAL {
        if n == 10 {
            // Redis keeps its data; every node's pub/sub connection is cut.
            let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
            println!("pub/sub connections killed: {}", killed.trim());
        }
        let answer = publish(&mut writer, json!(n), &format!("w{n}")).await;
        if let ServerFrame::Error {
            code: ErrorCode::Unavailable,
            ..
        } = answer
        {
            // Node A noticed first: the client sends it again once A is back.
            wait_for_health(&a, "ok").await;
            let again = publish(&mut writer, json!(n), &format!("w{n}")).await;
            assert!(matches!(again, ServerFrame::Ack { .. }), "{again:?}");
        }
    }
    for n in 1..=TOTAL {
        assert_eq!(
            next_frame(&mut reader).await,
            ServerFrame::Message {
                channel: "stream".into(),
                seq: n,
                data: json!(n)
            },
            "exactly once, in order, across the cut"
        );
    }
    wait_for_health(&b, "ok").await;
    assert!(b.metric("heartwire_broker_reconnects_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_found_by_the_probe() {
    let redis = TestRedis::start();
    let server = node(&redis, ServerConfig::default()).await;
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "stream").await;
    // Frozen: the kernel keeps the connections open, nothing answers.
    redis.signal("STOP");
    let took = wait_for_health(&server, "degraded").await;
    println!("frozen Redis noticed after {took:?}");
    assert!(took <= DETECT_BOUND, "degraded after {took:?}");
    redis.signal("CONT");
    let took = wait_for_health(&server, "ok").await;
    println!("ok again {took:?} after Redis thawed");
    assert!(took <= RECOVER_BOUND, "ok again after {took:?}");
    // Nothing was lost (Redis kept its data): the subscription works on.
    let (mut writer, _) = connect_native(&server).await;
    let answer = publish(&mut writer, json!("after"), "after").await;
    assert!(
        matches!(answer, ServerFrame::Ack { seq: 1, .. }),
        "{answer:?}"
    );
    assert_eq!(
        next_frame(&mut reader).await,
        ServerFrame::Message {
            channel: "stream".into(),
            seq: 1,
            data: json!("after")
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_while_redis_is_away_is_answered_at_once_and_confirmed_when_it_is_back() {
    let mut redis = TestRedis::start();
    let server = node(&redis, ServerConfig::default()).await;
    redis.kill();
    wait_for_health(&server, "degraded").await;
    let (mut socket, _) = connect_native(&server).await;
    ask_to_subscribe(&mut socket, "waiting").await;
    match next_frame(&mut socket).await {
        ServerFrame::Error { code, reason, .. } => {
            assert_eq!(code, ErrorCode::Unavailable);
            assert!(reason.contains("waiting"), "{reason}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    redis.relaunch();
    let started = tokio::time::Instant::now();
    let frame = next_frame(&mut socket).await;
    confirmed_in_time(frame, started, "came back");
}

/// Checks that `frame` confirms the subscription to `waiting`, within
/// [`RECOVER_BOUND`] of `started`, when Redis `came back` (or thawed).
fn confirmed_in_time(frame: ServerFrame, started: tokio::time::Instant, came_back: &str) {
    match frame {
        ServerFrame::Subscribed { channel, .. } => assert_eq!(channel, "waiting"),
        other => panic!("expected subscribed, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took <= RECOVER_BOUND,
        "subscribed {took:?} after Redis {came_back}"
    );
}

/// The value of the `heartwire_subscriptions_joining` gauge in `/metrics`.
async fn joining(server: &TestServer) -> u64 {
    let metrics = http_get(server.addr, "/metrics").await;
    let line = metrics
        .lines()
        .find(|line| line.starts_with("heartwire_subscriptions_joining "))
        .unwrap_or_else(|| panic!("no joining gauge in /metrics:\n{metrics}"));
    line["heartwire_subscriptions_joining ".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|err| panic!("{line:?}: {err}"))
}

/// Polls `/metrics` until the joining gauge reads `count`, for at most `bound`;
/// returns how long that took.
async fn wait_for_joining(server: &TestServer, count: u64, bound: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let now = joining(server).await;
        if now == count {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "the joining gauge stayed {now}, wanted {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_waits_for_redis_is_counted_until_redis_answers() {
    let redis = TestRedis::start();
    let server = node(&redis, ServerConfig::default()).await;
    let (mut socket, _) = connect_native(&server).await;
    assert_eq!(joining(&server).await, 0);
    // Frozen: the node's subscription and its read of the channel wait.
    redis.signal("STOP");
    ask_to_subscribe(&mut socket, "waiting").await;
    let took = wait_for_joining(&server, 1, DETECT_BOUND).await;
    println!("counted as joining after {took:?}");
    redis.signal("CONT");
    // Confirmed once Redis answers; an `unavailable` may come first, when the probe
    // found Redis away meanwhile.
    let started = tokio::time::Instant::now();
    let mut frame = next_frame(&mut socket).await;
    if matches!(&frame, ServerFrame::Error { code, .. } if *code == ErrorCode::Unavailable) {
        frame = next_frame(&mut socket).await;
    }
    confirmed_in_time(frame, started, "thawed");
    // The confirmation is queued when the join ends: the gauge reads 0 by then.
    assert_eq!(
        joining(&server).await,
        0,
        "the join still counted after it ended"
    );
}
