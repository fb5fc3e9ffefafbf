//! The machine's dealings with identity, on synthetic time: token refreshes before
//! expiry, refused requests as error events, presence frames as events.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ClientConnection, ConnectionConfig};
use crate::client::{Carried, Event, Frame, Outgoing};
use crate::error::ErrorCode;
use crate::failover::Failover;
use crate::protocol::PresenceUser;

fn config() -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(10),
        close_timeout: Duration::from_secs(5),
        unavailable_hold: Duration::from_millis(500),
    }
}

fn text(json: Value) -> Frame {
    Frame::Text(json.to_string())
}

/// A machine on a heartwire server whose `hello` says the identity lasts
/// `expires_in_ms`, opened at `t0`, its first frames and events taken.
fn native(t0: Instant, expires_in_ms: Option<u64>, subscriptions: &[&str]) -> ClientConnection {
    let subscriptions = subscriptions.iter().map(|&s| s.to_owned()).collect();
    let carried = Carried::new(Failover::new(1, Duration::from_secs(30)));
    let mut machine = ClientConnection::new(config(), carried, 0, subscriptions, t0);
    let mut hello = json!({
        "op": "hello", "session": "s-1", "ping_interval_ms": 20_000,
        "ping_timeout_ms": 10_000, "server": "heartwire/test", "user": "ada",
    });
    if let Some(ms) = expires_in_ms {
        hello["expires_in_ms"] = ms.into();
    }
    machine.handle_frame(t0, text(hello));
    sent(&mut machine, t0);
    events(&mut machine);
    machine
}

fn events(machine: &mut ClientConnection) -> Vec<Event> {
    std::iter::from_fn(|| machine.poll_event()).collect()
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

#[test]
fn a_token_is_refreshed_before_it_expires_and_again_after_the_answer() {
    let t0 = Instant::now();
    let mut machine = native(t0, Some(120_000), &[]);
    // Due at 90 s (exp − 30 s); the liveness timer comes first.
    let due = t0 + Duration::from_secs(90);
    assert!(machine.poll_timeout().is_some_and(|at| at < due));
    machine.handle_timeout(due - Duration::from_millis(1));
    assert!(!machine.poll_token_request());
    // Keep the server alive for the liveness timer.
    machine.handle_frame(due, text(json!({"op": "pong"})));
    machine.handle_timeout(due);
    assert!(machine.poll_token_request());
    assert!(!machine.poll_token_request(), "asked once");
    machine.handle_token(due, Some("fresh".into()));
    assert_eq!(
        sent(&mut machine, due),
        [json!({"op": "refresh", "token": "fresh"})]
    );
    // Nothing more is asked while the refresh is under way.
    machine.handle_timeout(due + Duration::from_secs(1));
    assert!(!machine.poll_token_request());

    let answered = due + Duration::from_secs(1);
    machine.handle_frame(
        answered,
        text(json!({"op": "refreshed", "expires_in_ms": 40_000})),
    );
    assert_eq!(
        events(&mut machine),
        [Event::Refreshed {
            expires_in: Some(Duration::from_secs(40))
        }]
    );
    // 40 s: half of it, the floor, is the next refresh.
    let next = answered + Duration::from_secs(20);
    machine.handle_frame(next, text(json!({"op": "pong"})));
    machine.handle_timeout(next);
    assert!(machine.poll_token_request());
}

#[test]
fn a_connection_that_does_not_expire_never_asks_for_a_token() {
    let t0 = Instant::now();
    let mut machine = native(t0, None, &[]);
    for minute in 1..=10 {
        let now = t0 + Duration::from_secs(60 * minute);
        machine.handle_frame(now, text(json!({"op": "pong"})));
        machine.handle_timeout(now);
        assert!(!machine.poll_token_request());
    }
}

#[test]
fn a_refused_refresh_is_an_error_event_and_is_tried_again() {
    let t0 = Instant::now();
    let mut machine = native(t0, Some(40_000), &[]);
    let due = t0 + Duration::from_secs(20);
    machine.handle_frame(due, text(json!({"op": "pong"})));
    machine.handle_timeout(due);
    assert!(machine.poll_token_request());
    machine.handle_token(due, Some("stale".into()));
    sent(&mut machine, due);
    let refusal =
        json!({"op": "error", "code": "unauthorized", "reason": "refresh refused: token expired"});
    machine.handle_frame(due, text(refusal));
    assert_eq!(
        events(&mut machine),
        [Event::Error {
            code: ErrorCode::Unauthorized,
            reason: "refresh refused: token expired".into(),
            channel: None,
        }]
    );
    // Half of the 20 s left.
    let again = due + Duration::from_secs(10);
    machine.handle_timeout(again - Duration::from_millis(1));
    assert!(!machine.poll_token_request());
    machine.handle_timeout(again);
    assert!(machine.poll_token_request());
    // A provider with no token: tried again at half of what is left.
    machine.handle_token(again, None);
    assert!(sent(&mut machine, again).is_empty());
    machine.handle_timeout(again + Duration::from_secs(5));
    assert!(machine.poll_token_request());
}

#[test]
fn a_forbidden_channel_is_an_error_event_and_is_not_resumed() {
    let t0 = Instant::now();
    let mut machine = native(t0, None, &["secret"]);
    let refusal = json!({
        "op": "error", "code": "forbidden", "channel": "secret",
        "reason": "the rules do not let ada subscribe to `secret`",
    });
    machine.handle_frame(t0, text(refusal));
    assert_eq!(
        events(&mut machine),
        [Event::SubscriptionRefused {
            channel: "secret".into(),
            reason: "the rules do not let ada subscribe to `secret`".into(),
        }]
    );
    assert!(machine.poll_end().is_none(), "the connection stays");
    assert!(!machine.poll_token_request(), "not a refresh's answer");
    // Another refusal naming it (a presence request) is a plain error.
    let presence = json!({
        "op": "error", "code": "forbidden", "channel": "secret",
        "reason": "cannot see presence of secret",
    });
    machine.handle_frame(t0, text(presence));
    assert_eq!(
        events(&mut machine),
        [Event::Error {
            code: ErrorCode::Forbidden,
            reason: "cannot see presence of secret".into(),
            channel: Some("secret".into()),
        }]
    );
}

#[test]
fn a_subscription_the_server_ends_is_an_event_one_the_caller_left_is_not() {
    let t0 = Instant::now();
    let mut machine = native(t0, None, &["doc", "room"]);
    for channel in ["doc", "room"] {
        let frame = json!({"op": "subscribed", "channel": channel, "seq": 0, "epoch": "e"});
        machine.handle_frame(t0, text(frame));
    }
    events(&mut machine);
    let mut outbox = VecDeque::from([Outgoing::Unsubscribe("room".into())]);
    while machine.poll_transmit(t0, &mut outbox).is_some() {}
    // A refresh took `doc` away: forbidden, then unsubscribed, unasked.
    for frame in [
        json!({"op": "refreshed", "expires_in_ms": 600_000}),
        json!({"op": "error", "code": "forbidden", "channel": "doc", "reason": "cannot subscribe to doc"}),
        json!({"op": "unsubscribed", "channel": "doc"}),
        json!({"op": "unsubscribed", "channel": "room"}),
    ] {
        machine.handle_frame(t0, text(frame));
    }
    let events = events(&mut machine);
    assert_eq!(
        events[1..],
        [
            Event::Error {
                code: ErrorCode::Forbidden,
                reason: "cannot subscribe to doc".into(),
                channel: Some("doc".into()),
            },
            Event::SubscriptionEnded {
                channel: "doc".into()
            },
        ]
    );
}

#[test]
fn presence_frames_are_events() {
    let t0 = Instant::now();
    let mut machine = native(t0, None, &["room"]);
    let mut outbox = VecDeque::from([Outgoing::Presence("room".into())]);
    let frames: Vec<Value> = std::iter::from_fn(|| machine.poll_transmit(t0, &mut outbox))
        .filter_map(|frame| match frame {
            Frame::Text(text) => serde_json::from_str(&text).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(frames, [json!({"op": "presence", "channel": "room"})]);
    for frame in [
        json!({"op": "presence", "channel": "room", "members": ["a", "b"], "users": [{"user": "ada", "connections": 2}]}),
        json!({"op": "join", "channel": "room", "session": "c", "user": "bob"}),
        json!({"op": "leave", "channel": "room", "session": "a"}),
    ] {
        machine.handle_frame(t0, text(frame));
    }
    assert_eq!(
        events(&mut machine),
        [
            Event::Presence {
                channel: "room".into(),
                members: vec!["a".into(), "b".into()],
                users: vec![PresenceUser {
                    user: "ada".into(),
                    connections: 2
                }],
            },
            Event::Join {
                channel: "room".into(),
                session: "c".into(),
                user: Some("bob".into()),
            },
            Event::Leave {
                channel: "room".into(),
                session: "a".into(),
                user: None,
            },
        ]
    );
}
