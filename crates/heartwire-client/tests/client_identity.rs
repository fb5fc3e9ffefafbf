//! The client's side of identity, against a real server verifying tokens minted by
//! PyJWT: a short-lived token is refreshed through the provider before it expires,
//! a close 4498 fetches a fresh token and reconnects at once, a forbidden channel is
//! an error event and no reconnect, and presence frames reach the application.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heartwire_client::{self as client, ClientConfig, ErrorCode, Event, Events, PresenceUser};
use heartwire_core::{BackoffConfig, Delay};
use heartwire_server::{Access, ChannelRule, Secret, ServerConfig};
use heartwire_testkit::client::wait_for;
use heartwire_testkit::tokens::{Spec, TokenKit, unix_now};
use heartwire_testkit::{TestServer, fast_config};
use serde_json::json;

const SECRET: &str = "a shared secret of at least thirty-two bytes";
/// The server's grace after `exp`: short, so that an expiry shows quickly.
const GRACE: Duration = Duration::from_millis(500);
const WITHIN: Duration = Duration::from_secs(15);

fn server_config() -> ServerConfig {
    #[derive(serde::Deserialize)]
    struct File {
        channels: Vec<ChannelRule>,
    }
    let rules = r#"
        [[channels]]
        pattern = "staff:*"
        subscribe = "group:staff"

        [[channels]]
        pattern = "*"
        subscribe = "anyone"
        publish = "authenticated"
        presence = "authenticated"
    "#;
    ServerConfig {
        access: Access {
            jwt_secret: Some(Secret::from(SECRET)),
            token_grace: GRACE,
            ..Access::default()
        },
        channels: toml::from_str::<File>(rules)
            .expect("the rules load")
            .channels,
        presence: vec!["room:*".into()],
        // Pings well apart from the deadlines these tests watch.
        ..fast_config(5_000, 5_000)
    }
}

/// A client of `server` whose provider hands out `next()`'s tokens, counting calls.
fn client_config(
    server: &TestServer,
    calls: &Arc<AtomicUsize>,
    next: impl Fn(usize) -> String + Send + Sync + 'static,
) -> ClientConfig {
    let mut config = ClientConfig::new([server.url("/ws")]).unwrap();
    config.backoff = BackoffConfig {
        delay: Delay::Exponential {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
        },
        ..BackoffConfig::default()
    };
    let calls = Arc::clone(calls);
    let next = Arc::new(next);
    config.token = Some(Arc::new(move || {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        let token = next(call);
        Box::pin(async move { Some(token) })
    }));
    config
}

fn at(unix_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds)
}

/// Every event until `until` (wall-clock), which must be within [`WITHIN`].
async fn events_until(events: &mut Events, until: SystemTime) -> Vec<Event> {
    let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(wait < WITHIN, "{wait:?}");
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        seen.push(event);
    }
    seen
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_and_the_connection_outlives_it() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(server_config()).await;
    let ada = json!({"sub": "ada"});
    let minted = kit
        .mint_with_claims(&[
            Spec::secret("HS256", SECRET, ada.clone()).expires_in(4),
            Spec::secret("HS256", SECRET, ada).expires_in(600),
        ])
        .await;
    let first_exp = minted[0].exp();
    let tokens: Vec<String> = minted.into_iter().map(|minted| minted.token).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let config = client_config(&server, &calls, move |call| tokens[call.min(1)].clone());
    let (client, mut events) = client::connect(config).unwrap();
    wait_for(&mut events, WITHIN, "open", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    // Past the first token's exp and the server's grace, with slack.
    let seen = events_until(&mut events, at(first_exp) + GRACE + Duration::from_secs(1)).await;
    let refreshed: Vec<_> = seen
        .iter()
        .filter_map(|event| match event {
            Event::Refreshed { expires_in } => Some(*expires_in),
            _ => None,
        })
        .collect();
    assert_eq!(refreshed.len(), 1, "{seen:#?}");
    assert!(
        refreshed[0].is_some_and(|left| left > Duration::from_secs(500)),
        "{refreshed:?}"
    );
    assert!(
        !seen.iter().any(|event| matches!(
            event,
            Event::Reconnecting { .. } | Event::Open { .. } | Event::Closed { .. }
        )),
        "the connection stayed: {seen:#?}"
    );
    // One token to connect, one to refresh.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    client.close();
}

#[tokio::test]
async fn close_4498_fetches_a_fresh_token_and_reconnects_at_once() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(server_config()).await;
    let ada = json!({"sub": "ada"});
    let minted = kit
        .mint_with_claims(&[
            Spec::secret("HS256", SECRET, ada.clone()).expires_in(3),
            Spec::secret("HS256", SECRET, ada).expires_in(600),
        ])
        .await;
    let stale_exp = minted[0].exp();
    let tokens: Vec<String> = minted.into_iter().map(|minted| minted.token).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let fresh_handed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fresh_handed);
    // A provider that hands out the same token until it has expired: its refreshes
    // move nothing, so the server ends the connection with 4498.
    let config = client_config(&server, &calls, move |_| {
        let fresh = unix_now() >= stale_exp;
        counter.fetch_add(usize::from(fresh), Ordering::SeqCst);
        tokens[usize::from(fresh)].clone()
    });
    let (client, mut events) = client::connect(config).unwrap();
    wait_for(&mut events, WITHIN, "open", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    let (reconnecting, _) = wait_for(&mut events, WITHIN, "reconnecting", |event| {
        matches!(event, Event::Reconnecting { .. })
    })
    .await;
    let Event::Reconnecting { delay, reason, .. } = reconnecting else {
        unreachable!()
    };
    assert!(reason.contains("4498"), "{reason}");
    assert_eq!(delay, Duration::ZERO, "at once");
    wait_for(&mut events, WITHIN, "open again", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    assert_eq!(
        fresh_handed.load(Ordering::SeqCst),
        1,
        "the attempt asked for a token, and got the fresh one"
    );
    // The fresh token lasts: no 4498 follows within the old one's lifetime.
    let seen = events_until(&mut events, SystemTime::now() + Duration::from_secs(3)).await;
    assert!(
        !seen
            .iter()
            .any(|event| matches!(event, Event::Reconnecting { .. })),
        "{seen:#?}"
    );
    client.close();
}

#[tokio::test]
async fn a_refresh_that_takes_a_channel_away_ends_its_subscription() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(server_config()).await;
    let tokens = kit
        .mint(&[
            Spec::secret("HS256", SECRET, json!({"sub": "ada", "groups": ["staff"]})).expires_in(4),
            Spec::secret("HS256", SECRET, json!({"sub": "ada", "groups": []})).expires_in(600),
        ])
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut config = client_config(&server, &calls, move |call| tokens[call.min(1)].clone());
    config.subscriptions = vec!["staff:payroll".into(), "room:1".into()];
    let (client, mut events) = client::connect(config).unwrap();
    wait_for(
        &mut events,
        WITHIN,
        "subscribed",
        |event| matches!(event, Event::Subscribed { channel, .. } if channel == "staff:payroll"),
    )
    .await;
    // The refresh, at half of the first token's life, leaves the group.
    let (ended, _) = wait_for(
        &mut events,
        WITHIN,
        "the end of the subscription",
        |event| matches!(event, Event::SubscriptionEnded { .. }),
    )
    .await;
    assert_eq!(
        ended,
        Event::SubscriptionEnded {
            channel: "staff:payroll".into()
        }
    );
    assert_eq!(client.subscriptions(), ["room:1"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no reconnect");
    client.close();
}

#[tokio::test]
async fn a_forbidden_channel_is_an_error_event_and_presence_reaches_the_application() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(server_config()).await;
    let tokens = kit
        .mint(&[
            Spec::secret("HS256", SECRET, json!({"sub": "ada"})).expires_in(600),
            Spec::secret("HS256", SECRET, json!({"sub": "bob"})).expires_in(600),
        ])
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let ada_token = tokens[0].clone();
    let mut config = client_config(&server, &calls, move |_| ada_token.clone());
    config.subscriptions = vec!["staff:payroll".into(), "room:1".into()];
    let (ada, mut ada_events) = client::connect(config).unwrap();
    let (error, _) = wait_for(&mut ada_events, WITHIN, "error", |event| {
        matches!(event, Event::Error { .. })
    })
    .await;
    let Event::Error {
        code,
        reason,
        channel,
    } = error
    else {
        unreachable!()
    };
    assert_eq!(code, ErrorCode::Forbidden);
    assert_eq!(channel.as_deref(), Some("staff:payroll"));
    assert!(reason.contains("staff:payroll"), "{reason}");
    assert_eq!(ada.subscriptions(), ["room:1"], "not asked for again");
    wait_for(
        &mut ada_events,
        WITHIN,
        "subscribed",
        |event| matches!(event, Event::Subscribed { channel, .. } if channel == "room:1"),
    )
    .await;

    let bob_calls = Arc::new(AtomicUsize::new(0));
    let bob_token = tokens[1].clone();
    let mut config = client_config(&server, &bob_calls, move |_| bob_token.clone());
    config.subscriptions = vec!["room:1".into()];
    let (bob, mut bob_events) = client::connect(config).unwrap();
    wait_for(&mut bob_events, WITHIN, "subscribed", |event| {
        matches!(event, Event::Subscribed { .. })
    })
    .await;
    let (join, _) = wait_for(&mut ada_events, WITHIN, "join", |event| {
        matches!(event, Event::Join { .. })
    })
    .await;
    assert!(
        matches!(&join, Event::Join { channel, user: Some(user), .. } if channel == "room:1" && user == "bob"),
        "{join:?}"
    );
    ada.presence("room:1").unwrap();
    let (presence, _) = wait_for(&mut ada_events, WITHIN, "presence", |event| {
        matches!(event, Event::Presence { .. })
    })
    .await;
    let Event::Presence { members, users, .. } = presence else {
        unreachable!()
    };
    assert_eq!(members.len(), 2);
    let user = |name: &str| PresenceUser {
        user: name.into(),
        connections: 1,
    };
    assert_eq!(users, [user("ada"), user("bob")]);
    bob.close();
    let (leave, _) = wait_for(&mut ada_events, WITHIN, "leave", |event| {
        matches!(event, Event::Leave { .. })
    })
    .await;
    assert!(
        matches!(&leave, Event::Leave { user: Some(user), .. } if user == "bob"),
        "{leave:?}"
    );
    // Through all of it the first connection stayed: one token, no reconnect.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    ada.close();
    let (closed, _) = wait_for(&mut ada_events, WITHIN, "closed", |event| {
        matches!(event, Event::Closed { .. })
    })
    .await;
    assert!(matches!(closed, Event::Closed { .. }));
}
