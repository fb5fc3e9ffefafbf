//! The report of the previous session, on synthetic time: what the next connection
//! says of the one lost (session, offline time, reason, last heard), and to whom.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ClientConnection, ConnectionConfig};
use crate::client::{Carried, Frame, Outgoing};
use crate::failover::Failover;
use crate::reason::DisconnectReason;

const INTERVAL: Duration = Duration::from_secs(4);
const TIMEOUT: Duration = Duration::from_secs(2);

fn config() -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(10),
        close_timeout: Duration::from_secs(5),
        unavailable_hold: Duration::from_millis(500),
    }
}

fn hello(session: &str, reports: bool) -> Frame {
    let mut hello = json!({
        "op": "hello", "session": session, "ping_interval_ms": INTERVAL.as_millis() as u64,
        "ping_timeout_ms": TIMEOUT.as_millis() as u64, "server": "heartwire/test",
    });
    if reports {
        hello["reports"] = true.into();
    }
    Frame::Text(hello.to_string())
}

/// A connection opened at `now` that received `hello` then, its frames sent.
fn opened(carried: Carried, hello: Frame, now: Instant) -> (ClientConnection, Vec<Value>) {
    let mut machine = ClientConnection::new(config(), carried, 0, vec!["c".into()], now);
    machine.handle_frame(now, hello);
    let sent = sent(&mut machine, now);
    (machine, sent)
}

fn sent(machine: &mut ClientConnection, now: Instant) -> Vec<Value> {
    let mut outbox = VecDeque::<Outgoing>::new();
    std::iter::from_fn(|| machine.poll_transmit(now, &mut outbox))
        .filter_map(|frame| match frame {
            Frame::Text(text) => serde_json::from_str(&text).ok(),
            _ => None,
        })
        .collect()
}

fn fresh() -> Carried {
    Carried::new(Failover::new(1, Duration::from_secs(30)))
}

#[test]
fn a_first_connection_reports_nothing() {
    let t0 = Instant::now();
    let (_, sent) = opened(fresh(), hello("s-1", true), t0);
    assert_eq!(sent, [json!({"op": "subscribe", "channel": "c"})]);
}

#[test]
fn a_session_lost_to_silence_is_reported_first_on_the_next_hello() {
    let t0 = Instant::now();
    let (mut first, _) = opened(fresh(), hello("s-1", true), t0);
    let heard = t0 + Duration::from_secs(1);
    first.handle_frame(heard, Frame::Text(r#"{"op":"pong"}"#.into()));
    // Silence: a Ping after the interval, the end after the timeout.
    let mut now = heard;
    while let Some(deadline) = first.poll_timeout() {
        now = deadline;
        first.handle_timeout(now);
        if first.poll_end().is_some() {
            break;
        }
    }
    assert_eq!(now, heard + INTERVAL + TIMEOUT);
    // Two failed attempts do not change what is reported, nor when the outage began.
    let mut carried = first.into_carried();
    for attempt in 1..=2 {
        let at = now + Duration::from_secs(attempt);
        let mut failed = ClientConnection::new(config(), carried, 0, vec![], at);
        failed.handle_transport_end(at, DisconnectReason::Transport("refused".into()));
        carried = failed.into_carried();
    }
    let back = now + Duration::from_millis(3_250);
    let (mut second, sent) = opened(carried, hello("s-2", true), back);
    assert_eq!(
        sent,
        [
            json!({"op": "report", "previous_session": "s-1", "offline_ms": 3_250,
                   "reason": "ping_timeout", "last_heard_ms": (INTERVAL + TIMEOUT).as_millis() as u64}),
            json!({"op": "subscribe", "channel": "c"}),
        ]
    );
    // Once said, it is not said again.
    second.handle_transport_end(back, DisconnectReason::LocalClose);
    let (_, sent) = opened(second.into_carried(), hello("s-3", true), back);
    assert_eq!(sent, [json!({"op": "subscribe", "channel": "c"})]);
}

#[test]
fn a_close_from_the_server_is_reported_with_its_code() {
    let t0 = Instant::now();
    let (mut first, _) = opened(fresh(), hello("s-1", true), t0);
    let closed = t0 + Duration::from_secs(3);
    first.handle_frame(
        closed,
        Frame::Close {
            code: Some(1012),
            reason: "server restarting".into(),
        },
    );
    assert!(first.poll_end().is_some());
    let back = closed + Duration::from_millis(800);
    let (_, sent) = opened(first.into_carried(), hello("s-2", true), back);
    assert_eq!(
        sent[0],
        json!({"op": "report", "previous_session": "s-1", "offline_ms": 800,
               "reason": "closed", "code": 1012, "last_heard_ms": 0})
    );
}

#[test]
fn a_server_that_takes_no_reports_gets_none_and_the_report_is_dropped() {
    let t0 = Instant::now();
    let (mut first, _) = opened(fresh(), hello("s-1", true), t0);
    first.handle_transport_end(t0, DisconnectReason::Transport("reset".into()));
    let (mut second, sent) = opened(first.into_carried(), hello("s-2", false), t0);
    assert_eq!(sent, [json!({"op": "subscribe", "channel": "c"})]);
    // The old session is not kept for a later server either.
    second.handle_close(t0, &mut VecDeque::new());
    second.handle_frame(
        t0,
        Frame::Close {
            code: Some(1000),
            reason: String::new(),
        },
    );
    let (_, sent) = opened(second.into_carried(), hello("s-3", true), t0);
    assert_eq!(sent, [json!({"op": "subscribe", "channel": "c"})]);
}

#[test]
fn a_plain_server_hears_no_report() {
    let t0 = Instant::now();
    let (mut first, _) = opened(fresh(), hello("s-1", true), t0);
    first.handle_transport_end(t0, DisconnectReason::Transport("reset".into()));
    let mut plain = ClientConnection::new(config(), first.into_carried(), 0, vec![], t0);
    plain.handle_frame(t0, Frame::Text("welcome".into()));
    assert!(sent(&mut plain, t0).is_empty());
}
