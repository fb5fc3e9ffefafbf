//! The connect hook against a small HTTP app run by the test: what the hook is sent
//! (the forwarded headers, path, query and address), how its answers identify or
//! refuse (4401, 4403), and how a slow or failing app makes clients back off (1013).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use heartwire_core::protocol::ServerFrame;
use heartwire_core::reconnect::retry_hint;
use heartwire_server::{Access, Secret, ServerConfig};
use heartwire_testkit::tokens::unix_now;
use heartwire_testkit::{Socket, TestServer, connect_with, expect_refusal, next_frame};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// How long heartwire waits for the hook in these tests.
const AUTH_TIMEOUT: Duration = Duration::from_millis(300);

/// One request the app received: its forwarded headers and its body.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: Value,
}

/// The app: who each session cookie belongs to, and what it was asked.
#[derive(Default)]
struct App {
    seen: Mutex<Vec<Seen>>,
}

async fn auth(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let body: Value = serde_json::from_str(&body).expect("the hook's body is JSON");
    app.seen.lock().push(Seen {
        headers: headers.clone(),
        body,
    });
    let cookie = headers
        .get("cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let session = cookie
        .split(';')
        .filter_map(|pair| pair.trim().strip_prefix("sessionid="))
        .next()
        .unwrap_or("");
    let ok = |answer: Value| (StatusCode::OK, answer.to_string());
    match session {
        "ada-session" => ok(json!({
            "user": "ada", "groups": ["staff"], "expires_at": unix_now() + 3600,
        })),
        "bo-session" => ok(json!({"user": "bo"})),
        "" | "anonymous" => ok(json!({"user": null})),
        "banned" => (StatusCode::FORBIDDEN, String::new()),
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
        "garbled" => (StatusCode::OK, "<html>".into()),
        "slow" => {
            tokio::time::sleep(AUTH_TIMEOUT * 10).await;
            ok(json!({"user": "late"}))
        }
        _ => (StatusCode::UNAUTHORIZED, String::new()),
    }
}

async fn start_app() -> (Arc<App>, SocketAddr) {
    let app = Arc::new(App::default());
    let router = Router::new()
        .route("/auth", post(auth))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (app, addr)
}

async fn start_server(app: SocketAddr, allow_anonymous: Option<bool>) -> TestServer {
    TestServer::start(ServerConfig {
        access: Access {
            auth_url: Some(Secret::from(format!("http://{app}/auth").as_str())),
            auth_timeout: AUTH_TIMEOUT,
            allow_anonymous,
            ..Access::default()
        },
        ..ServerConfig::default()
    })
    .await
}

/// Connects to `path` with the session cookie `session` and the server's own Origin.
async fn open(server: &TestServer, path: &str, session: &str) -> Socket {
    let origin = format!("http://{}", server.addr);
    let cookie = format!("csrftoken=x; sessionid={session}");
    let headers = [
        ("origin", origin.as_str()),
        ("cookie", cookie.as_str()),
        ("user-agent", "hook-test/1"),
        ("x-forwarded-for", "203.0.113.7"),
        ("authorization", "Bearer opaque"),
    ];
    connect_with(&server.url(path), &headers).await
}

async fn hello(socket: &mut Socket) -> (Option<String>, Option<u64>) {
    match next_frame(socket).await {
        ServerFrame::Hello {
            user,
            expires_in_ms,
            ..
        } => (user, expires_in_ms),
        other => panic!("expected hello, got {other:?}"),
    }
}

#[tokio::test]
async fn the_hook_is_told_about_the_request_and_names_the_user() {
    let (app, addr) = start_app().await;
    let server = start_server(addr, None).await;
    let mut socket = open(&server, "/ws?room=7", "ada-session").await;
    let (user, expires_in_ms) = hello(&mut socket).await;
    assert_eq!(user.as_deref(), Some("ada"));
    let expires_in_ms = expires_in_ms.expect("the hook gave expires_at");
    assert!(
        (3_590_000..=3_600_000).contains(&expires_in_ms),
        "{expires_in_ms}"
    );

    let seen = app.seen.lock()[0].clone();
    let header = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("cookie").as_deref(),
        Some("csrftoken=x; sessionid=ada-session")
    );
    assert_eq!(header("origin"), Some(format!("http://{}", server.addr)));
    assert_eq!(header("user-agent").as_deref(), Some("hook-test/1"));
    assert_eq!(header("x-forwarded-for").as_deref(), Some("203.0.113.7"));
    assert_eq!(header("authorization").as_deref(), Some("Bearer opaque"));
    // What is not in the list stays with heartwire.
    assert!(seen.headers.get("sec-websocket-key").is_none());
    assert_eq!(
        seen.body,
        json!({"path": "/ws", "query": "room=7", "remote_addr": "127.0.0.1"})
    );

    // The ws4redis endpoint asks the same way, with its query flags.
    let _facility = open(&server, "/ws/chat?subscribe-broadcast&echo", "bo-session").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.seen.lock().len() < 2 {
        assert!(Instant::now() < deadline, "the hook was not asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.seen.lock()[1].body,
        json!({"path": "/ws/chat", "query": "subscribe-broadcast&echo", "remote_addr": "127.0.0.1"})
    );
}

#[tokio::test]
async fn the_hooks_refusals_are_final_and_its_failures_are_not() {
    let (_app, addr) = start_app().await;
    let server = start_server(addr, None).await;
    let cases = [
        ("stolen", 4401),
        ("banned", 4403),
        // Not signed in, and anonymous callers are not let in with a hook.
        ("anonymous", 4401),
    ];
    for (session, code) in cases {
        let mut socket = open(&server, "/ws", session).await;
        let (got, reason) = expect_refusal(&mut socket).await;
        assert_eq!(got, code, "{session}: {reason}");
    }
    for session in ["broken", "garbled", "slow"] {
        let started = Instant::now();
        let mut socket = open(&server, "/ws", session).await;
        let (code, reason) = expect_refusal(&mut socket).await;
        assert_eq!(code, 1013, "{session}: {reason}");
        let hint = retry_hint(&reason).unwrap_or_else(|| panic!("no retry hint in {reason:?}"));
        assert!(hint >= Duration::from_secs(1), "{hint:?}");
        if session == "slow" {
            // Refused at the timeout, not when the app finally answers.
            let waited = started.elapsed();
            assert!(waited >= AUTH_TIMEOUT, "{waited:?}");
            assert!(waited < AUTH_TIMEOUT * 5, "{waited:?}");
        }
    }
    assert_eq!(
        server
            .metric(r#"heartwire_refused_total{reason="unavailable"}"#)
            .await,
        3.0
    );
}

#[tokio::test]
async fn a_caller_the_app_does_not_know_is_anonymous_when_allowed() {
    let (_app, addr) = start_app().await;
    let server = start_server(addr, Some(true)).await;
    let mut socket = open(&server, "/ws", "anonymous").await;
    assert_eq!(hello(&mut socket).await, (None, None));
    let mut known = open(&server, "/ws", "bo-session").await;
    assert_eq!(hello(&mut known).await, (Some("bo".into()), None));
}
