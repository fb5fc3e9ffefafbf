//! `/sse` over real sockets, read by a raw HTTP client that parses the event stream:
//! a stream of several channels resumes from the `Last-Event-ID` of any event with
//! nothing lost and nothing repeated, a position history no longer covers gets a
//! `gap` event, refusals (of a token, of the connect hook, of a channel rule) are
//! HTTP statuses with a sentence before any event, and the
//! stream has its heartbeats, its `retry:`, its slot and its end at shutdown and at
//! token expiry.

use std::time::{Duration, Instant};

use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{Access, ChannelRule, Limits, Retention, Secret, ServerConfig, SseOptions};
use heartwire_testkit::sse::{self, Event, SseClient};
use heartwire_testkit::tokens::{Spec, TokenKit};
use heartwire_testkit::{
    PATIENCE, Socket, TestServer, connect_native, fast_config, next_frame, send,
};
use serde_json::json;

const SECRET: &str = "a shared secret of at least thirty-two bytes";

/// Publishes `data` on `channel` through a `/ws` socket and returns its `seq`.
async fn publish(socket: &mut Socket, channel: &str, data: &str) -> u64 {
    send(
        socket,
        &ClientFrame::Publish {
            channel: channel.into(),
            data: json!(data),
            id: Some(format!("{channel}/{data}")),
        },
    )
    .await;
    match next_frame(socket).await {
        ServerFrame::Ack { seq, .. } => seq,
        other => panic!("expected an ack, got {other:?}"),
    }
}

async fn open(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> SseClient {
    sse::open(server.addr, path, headers).await.stream()
}

/// Reads the `subscribed` (or `gap`) event of each of `count` channels, by channel.
async fn confirmations(client: &mut SseClient, count: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..count {
        let event = client.next().await.expect("a confirmation");
        assert!(
            event.kind == "subscribed" || event.kind == "gap",
            "{event:?}"
        );
        events.push(event);
    }
    events.sort_by_key(|event| event.json()["channel"].as_str().unwrap().to_owned());
    events
}

/// The `(channel, seq, data)` of a message event.
fn delivery(event: &Event) -> (String, u64, String) {
    assert_eq!(event.kind, "message", "{event:?}");
    let message = event.json();
    assert_eq!(message["op"], "message");
    (
        message["channel"].as_str().unwrap().to_owned(),
        message["seq"].as_u64().unwrap(),
        message["data"].as_str().unwrap().to_owned(),
    )
}

fn rules(text: &str) -> Vec<ChannelRule> {
    #[derive(serde::Deserialize)]
    struct File {
        channels: Vec<ChannelRule>,
    }
    toml::from_str::<File>(text)
        .expect("the rules load")
        .channels
}

#[tokio::test]
async fn a_stream_of_two_channels_resumes_from_its_last_event_id_with_nothing_lost_or_repeated() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut publisher, _) = connect_native(&server).await;
    let path = "/sse?channel=room:a&channel=room:b";
    let mut first = open(&server, path, &[]).await;
    let confirmed = confirmations(&mut first, 2).await;
    for event in &confirmed {
        assert_eq!(event.json()["recovered"], serde_json::Value::Null);
    }
    // Before any message, the id already holds a position for each channel.
    let ids = confirmed.iter().filter_map(|event| event.id.clone());
    assert!(ids.clone().any(|id| id.split(',').all(|at| !at.is_empty())));
    let epoch_a = confirmed[0].json()["epoch"].as_str().unwrap().to_owned();
    let epoch_b = confirmed[1].json()["epoch"].as_str().unwrap().to_owned();

    for n in 1..=5 {
        publish(&mut publisher, "room:a", &format!("a{n}")).await;
        publish(&mut publisher, "room:b", &format!("b{n}")).await;
    }
    let mut last_id = String::new();
    for n in 1..=5 {
        for channel in ["a", "b"] {
            let event = first.next().await.unwrap();
            let expected = (format!("room:{channel}"), n, format!("{channel}{n}"));
            assert_eq!(delivery(&event), expected);
            last_id = event.id.unwrap();
        }
    }
    assert_eq!(last_id, format!("{epoch_a}:5,{epoch_b}:5"));
    drop(first);

    // Missed while away: three on each channel.
    for n in 6..=8 {
        publish(&mut publisher, "room:a", &format!("a{n}")).await;
        publish(&mut publisher, "room:b", &format!("b{n}")).await;
    }
    let mut second = open(&server, path, &[("Last-Event-ID", &last_id)]).await;
    let mut got = Vec::new();
    let mut subscribed = 0;
    while got.len() < 6 {
        let event = second.next().await.unwrap();
        if event.kind == "subscribed" {
            assert_eq!(event.json()["recovered"], true, "{event:?}");
            subscribed += 1;
            continue;
        }
        got.push(delivery(&event));
    }
    assert_eq!(subscribed, 2);
    got.sort();
    let expected: Vec<_> = ["a", "b"]
        .iter()
        .flat_map(|channel| {
            (6..=8).map(move |n| (format!("room:{channel}"), n, format!("{channel}{n}")))
        })
        .collect();
    assert_eq!(got, expected, "exactly what was missed, once each");
    // And live messages follow, with nothing repeated.
    publish(&mut publisher, "room:b", "b9").await;
    let live = second.next().await.unwrap();
    assert_eq!(delivery(&live), ("room:b".into(), 9, "b9".into()));
    assert_eq!(live.id.unwrap(), format!("{epoch_a}:8,{epoch_b}:9"));

    // A channel without a position in the id starts at the live edge.
    let mut third = open(
        &server,
        path,
        &[("Last-Event-ID", &format!(",{epoch_b}:9"))],
    )
    .await;
    let confirmed = confirmations(&mut third, 2).await;
    assert_eq!(confirmed[0].json()["recovered"], serde_json::Value::Null);
    assert_eq!(confirmed[1].json()["recovered"], true);
    publish(&mut publisher, "room:a", "a9").await;
    assert_eq!(
        delivery(&third.next().await.unwrap()),
        ("room:a".into(), 9, "a9".into())
    );
}

#[tokio::test]
async fn a_position_history_no_longer_covers_gets_a_gap_event() {
    let config = ServerConfig {
        retention: Retention {
            history_size: 2,
            ..Retention::default()
        },
        channels: rules(
            r#"
            [[channels]]
            pattern = "secret:*"
            subscribe = "anyone"
            history = "server"

            [[channels]]
            pattern = "*"
            subscribe = "anyone"
            publish = "anyone"
            "#,
        ),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut publisher, _) = connect_native(&server).await;
    let mut first = open(&server, "/sse?channel=news", &[]).await;
    confirmations(&mut first, 1).await;
    publish(&mut publisher, "news", "n1").await;
    let id = first.next().await.unwrap().id.unwrap();
    drop(first);
    for n in 2..=6 {
        publish(&mut publisher, "news", &format!("n{n}")).await;
    }
    let mut second = open(&server, "/sse?channel=news", &[("Last-Event-ID", &id)]).await;
    let gap = second.next().await.unwrap();
    assert_eq!(gap.kind, "gap", "{gap:?}");
    let told = gap.json();
    assert_eq!(
        (told["recovered"].clone(), told["seq"].clone()),
        (json!(false), json!(6))
    );
    let epoch = told["epoch"].as_str().unwrap().to_owned();
    assert_eq!(gap.id.unwrap(), format!("{epoch}:6"));
    publish(&mut publisher, "news", "n7").await;
    assert_eq!(
        delivery(&second.next().await.unwrap()),
        ("news".into(), 7, "n7".into())
    );

    // An epoch the channel never had, and a channel whose history the rules keep
    // from everyone: a gap too, never a replay.
    for (path, id) in [
        ("/sse?channel=news", "0123abcd:3".to_owned()),
        ("/sse?channel=secret:x", "0123abcd:0".to_owned()),
    ] {
        let mut client = open(&server, path, &[("Last-Event-ID", &id)]).await;
        assert_eq!(client.next().await.unwrap().kind, "gap", "{path}");
    }
}

/// A request (path and headers), and the status and words of its refusal.
type Refused<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn refusals_are_http_statuses_with_a_sentence() {
    let kit = TokenKit::new().await;
    let config = ServerConfig {
        access: Access {
            jwt_secret: Some(Secret::from(SECRET)),
            ..Access::default()
        },
        channels: rules(
            r#"
            [[channels]]
            pattern = "ops:*"
            subscribe = "group:staff"

            [[channels]]
            pattern = "*"
            subscribe = "authenticated"
            "#,
        ),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let ada = kit
        .mint_one(Spec::secret("HS256", SECRET, json!({"sub": "ada"})).expires_in(60))
        .await;
    let forged = kit
        .mint_one(
            Spec::secret(
                "HS256",
                "another secret of thirty-two bytes!",
                json!({"sub": "eve"}),
            )
            .expires_in(60),
        )
        .await;
    let with = |query: &str| format!("/sse?{query}&token={ada}");
    let cases: Vec<Refused<'_>> = vec![
        ("/sse?token=x".into(), vec![], 400, "no channel"),
        (
            with("channel=a&since=1"),
            vec![],
            400,
            "unknown query parameter \"since\"",
        ),
        (with("channel=a%20b"), vec![], 400, "invalid channel name"),
        (
            with("channel=a"),
            vec![("Last-Event-ID", "e:1,e:2")],
            400,
            "2 positions",
        ),
        (
            "/sse?channel=a".into(),
            vec![],
            401,
            "this server needs a token",
        ),
        (format!("/sse?channel=a&token={forged}"), vec![], 401, ""),
        (
            with("channel=a&channel=ops:deploy"),
            vec![],
            403,
            "cannot subscribe to ops:deploy",
        ),
        (
            with("channel=a"),
            vec![("Origin", "http://evil.example")],
            403,
            "origin",
        ),
    ];
    for (path, headers, status, sentence) in cases {
        let (got, body) = sse::open(server.addr, &path, &headers).await.refusal();
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(sentence), "{path}: {body}");
        assert!(body.len() > 10 && !body.contains(&ada), "{path}: {body}");
    }
    // A page of the server's own origin may read the stream, with CORS headers that
    // let its browser show it.
    let own = format!("http://{}", server.addr);
    let path = with("channel=a");
    let client = open(&server, &path, &[("Origin", &own)]).await;
    let allowed = format!("access-control-allow-origin: {own}");
    for header in [
        allowed.as_str(),
        "access-control-allow-credentials: true",
        "vary: origin",
    ] {
        assert!(
            client.headers.contains(header),
            "{header}: {}",
            client.headers
        );
    }
    // Bearer tokens work as on /ws, and the stream then starts.
    let bearer = format!("Bearer {ada}");
    let mut client = open(&server, "/sse?channel=a", &[("Authorization", &bearer)]).await;
    assert_eq!(client.next().await.unwrap().kind, "subscribed");
}

/// A connect hook: who each session cookie belongs to.
async fn hook(headers: axum::http::HeaderMap) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let cookie = headers
        .get("cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    match cookie.strip_prefix("sessionid=").unwrap_or("") {
        "ada" => (
            StatusCode::OK,
            json!({"user": "ada", "groups": ["staff"]}).to_string(),
        ),
        "bo" => (StatusCode::OK, json!({"user": "bo"}).to_string()),
        "" => (StatusCode::OK, json!({"user": null}).to_string()),
        "banned" => (StatusCode::FORBIDDEN, String::new()),
        _ => (StatusCode::UNAUTHORIZED, String::new()),
    }
}

#[tokio::test]
async fn the_connect_hook_identifies_a_stream_as_it_does_a_websocket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/auth", axum::routing::post(hook));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let server = TestServer::start(ServerConfig {
        access: Access {
            auth_url: Some(Secret::from(format!("http://{app}/auth").as_str())),
            ..Access::default()
        },
        channels: rules(
            r#"
            [[channels]]
            pattern = "ops:*"
            subscribe = "group:staff"

            [[channels]]
            pattern = "*"
            subscribe = "authenticated"
            "#,
        ),
        ..ServerConfig::default()
    })
    .await;
    let path = "/sse?channel=ops:deploy";
    let mut ada = open(&server, path, &[("Cookie", "sessionid=ada")]).await;
    assert_eq!(ada.next().await.unwrap().kind, "subscribed");
    for (session, status, sentence) in [
        ("bo", 403, "cannot subscribe to ops:deploy"),
        ("banned", 403, ""),
        ("stranger", 401, ""),
        ("", 401, "not signed in"),
    ] {
        let cookie = format!("sessionid={session}");
        let (got, body) = sse::open(server.addr, path, &[("Cookie", &cookie)])
            .await
            .refusal();
        assert_eq!(got, status, "{session}: {body}");
        assert!(
            body.contains(sentence) && body.len() > 10,
            "{session}: {body}"
        );
    }
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(ServerConfig {
        access: Access {
            jwt_secret: Some(Secret::from(SECRET)),
            ..Access::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let minted = kit
        .mint_with_claims(&[Spec::secret("HS256", SECRET, json!({"sub": "ada"})).expires_in(2)])
        .await;
    let token = &minted[0].token;
    let opened = Instant::now();
    let mut client = open(&server, &format!("/sse?channel=a&token={token}"), &[]).await;
    let events = client.rest().await;
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["subscribed", "expired"]);
    assert!(!client.cut, "the stream ends with its last chunk");
    assert!(
        events[1].json()["reason"]
            .as_str()
            .unwrap()
            .contains("fresh token")
    );
    // It lasted until `exp` (whole seconds) and no longer.
    let lasted = opened.elapsed();
    assert!(lasted < Duration::from_secs(2) + PATIENCE / 4, "{lasted:?}");
    server
        .wait_for_metric(
            r#"heartwire_disconnects_total{reason="token_expired"}"#,
            1.0,
        )
        .await;
}

#[tokio::test]
async fn a_stream_has_retry_heartbeats_a_slot_and_a_clean_end_at_shutdown() {
    const PING_MS: u64 = 100;
    let config = ServerConfig {
        limits: Limits {
            max_connections: 1,
            ..Limits::default()
        },
        sse: SseOptions {
            sse_retry: Duration::from_millis(400),
        },
        shutdown_spread: Duration::from_millis(1000),
        ..fast_config(PING_MS, 5_000)
    };
    let server = TestServer::start(config).await;
    let mut client = open(&server, "/sse?channel=a", &[]).await;
    for header in ["cache-control: no-store", "connection: close"] {
        assert!(client.headers.contains(header), "{}", client.headers);
    }
    assert_eq!(client.next().await.unwrap().kind, "subscribed");
    let retry = client.retry_ms.expect("a retry field first");
    assert!((400..=800).contains(&retry), "{retry}");

    // Heartbeats: a comment after each ping interval of silence.
    let start = Instant::now();
    while client.comments < 3 {
        let quiet = tokio::time::timeout(Duration::from_millis(PING_MS * 10), client.next()).await;
        assert!(quiet.is_err(), "no event expected: {quiet:?}");
    }
    assert!(
        start.elapsed() >= Duration::from_millis(PING_MS * 2),
        "{:?}",
        start.elapsed()
    );

    // The stream holds the only slot, and /metrics counts it.
    assert_eq!(
        server
            .metric(r#"heartwire_connections_open{endpoint="sse"}"#)
            .await,
        1.0
    );
    let (status, body) = sse::open(server.addr, "/sse?channel=b", &[])
        .await
        .refusal();
    assert_eq!(
        (status, body.trim()),
        (503, "server at max-connections; retry later")
    );

    // Shutdown: a reconnect event with a retry spread over the window, then the end.
    let stopping = tokio::spawn(server.shut_down());
    let rest = client.rest().await;
    let kinds: Vec<&str> = rest.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["reconnect"]);
    let after = rest[0].json()["after_ms"].as_u64().unwrap();
    assert!(after <= 1000, "{after}");
    assert_eq!(client.retry_ms, Some(400 + after));
    assert!(!client.cut, "the stream ends with its last chunk");
    // The connection ends with it, so the browser reconnects on a new one, which the
    // stopped listener refuses (network error: it tries again) rather than on this one.
    assert!(
        client.connection_closed().await,
        "and its connection with it"
    );
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_as_a_slow_consumer() {
    const SLOW: &str = r#"heartwire_disconnects_total{reason="slow_consumer"}"#;
    let config = ServerConfig {
        limits: Limits {
            outbound_queue: 4,
            ..Limits::default()
        },
        // A close timeout of 500 ms: the watchdog's patience.
        ..fast_config(5_000, 5_000)
    };
    let server = TestServer::start(config).await;
    let (mut publisher, _) = connect_native(&server).await;
    let mut reader = open(&server, "/sse?channel=flood", &[]).await;
    assert_eq!(reader.next().await.unwrap().kind, "subscribed");
    // From here the reader reads nothing: the socket buffers fill, then its mailbox.
    let big = "x".repeat(256 * 1024);
    let mut published = 0;
    while server.metric(SLOW).await < 1.0 {
        assert!(
            published < 400,
            "still not cut after {published} messages of 256 KiB"
        );
        for _ in 0..16 {
            published += 1;
            let frame = ClientFrame::Publish {
                channel: "flood".into(),
                data: json!(big),
                id: Some(published.to_string()),
            };
            send(&mut publisher, &frame).await;
            assert!(matches!(
                next_frame(&mut publisher).await,
                ServerFrame::Ack { .. }
            ));
        }
    }
    assert_eq!(
        server
            .metric(r#"heartwire_connections_open{endpoint="sse"}"#)
            .await,
        0.0
    );
    // Its connection is gone: reading what was buffered ends in the end of the socket.
    let rest = tokio::time::timeout(PATIENCE, async {
        let mut count = 0;
        while reader.next().await.is_some() {
            count += 1;
        }
        count
    })
    .await
    .expect("the cut socket ends");
    assert!(reader.cut, "the stream was cut, not ended");
    assert!(
        rest < published,
        "{rest} of {published} delivered before the cut"
    );
}

#[tokio::test]
async fn event_streams_count_once_against_max_connections() {
    // Enough streams that counting each twice (by its slot and as an HTTP connection
    // not upgraded) would pass max-connections plus the accept loop's headroom (8)
    // long before the slots run out.
    const MAX: usize = 24;
    let config = ServerConfig {
        limits: Limits {
            max_connections: MAX,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut streams = Vec::new();
    for _ in 0..MAX {
        let mut client = open(&server, "/sse?channel=a", &[]).await;
        assert_eq!(client.next().await.unwrap().kind, "subscribed");
        streams.push(client);
    }
    let (status, body) = sse::open(server.addr, "/sse?channel=a", &[])
        .await
        .refusal();
    assert_eq!(
        (status, body.trim()),
        (503, "server at max-connections; retry later")
    );
    assert_eq!(
        server
            .metric(r#"heartwire_connections_open{endpoint="sse"}"#)
            .await,
        MAX as f64
    );
}
