//! A JWKS served over loopback HTTP by the test, whose key rotates while heartwire
//! runs: tokens of the new key are accepted without a restart, the old key stops
//! working, unknown `kid`s fetch the set at most once per interval, and a set that
//! cannot be fetched makes clients back off (1013) rather than give up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use heartwire_core::protocol::ServerFrame;
use heartwire_server::{Access, ServerConfig};
use heartwire_testkit::tokens::{Spec, TokenKit, unix_now};
use heartwire_testkit::{TestServer, connect, expect_refusal, next_frame};
use parking_lot::Mutex;
use serde_json::json;

/// How often heartwire may fetch the set again for an unknown `kid`, in these tests.
const REFETCH: Duration = Duration::from_millis(400);

/// The identity provider of the test: its key set, how often it was fetched, and
/// whether it is failing.
#[derive(Default)]
struct Provider {
    set: Mutex<String>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

async fn serve_set(State(provider): State<Arc<Provider>>) -> (StatusCode, String) {
    provider.fetches.fetch_add(1, Ordering::SeqCst);
    if provider.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down".into());
    }
    (StatusCode::OK, provider.set.lock().clone())
}

async fn start_provider(set: String) -> (Arc<Provider>, SocketAddr) {
    let provider = Arc::new(Provider {
        set: Mutex::new(set),
        ..Provider::default()
    });
    let app = Router::new()
        .route("/jwks.json", get(serve_set))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (provider, addr)
}

async fn user_of(server: &TestServer, token: &str) -> Option<String> {
    let mut socket = connect(&server.url(&format!("/ws?token={token}"))).await;
    match next_frame(&mut socket).await {
        ServerFrame::Hello { user, .. } => user,
        other => panic!("expected hello, got {other:?}"),
    }
}

async fn refusal_of(server: &TestServer, token: &str) -> (u16, String) {
    let mut socket = connect(&server.url(&format!("/ws?token={token}"))).await;
    expect_refusal(&mut socket).await
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let kit = TokenKit::new().await;
    let claims = json!({"sub": "ada", "exp": unix_now() + 600});
    let tokens = kit
        .mint(&[
            Spec::key("RS256", "rsa", claims.clone()).kid("k1"),
            Spec::key("RS256", "rsa2", claims.clone()).kid("k2"),
            Spec::key("EdDSA", "ed", claims.clone()).kid("k3"),
            Spec::key("RS256", "rsa2", claims.clone()).kid("k9"),
        ])
        .await;
    let first_set = kit.jwks(&[("rsa", "k1", "RS256")]).await;
    let rotated_set = kit
        .jwks(&[("rsa2", "k2", "RS256"), ("ed", "k3", "EdDSA")])
        .await;
    let (provider, addr) = start_provider(first_set).await;
    let server = TestServer::start(ServerConfig {
        access: Access {
            jwt_jwks_url: Some(format!("http://{addr}/jwks.json")),
            jwt_jwks_refetch: REFETCH,
            ..Access::default()
        },
        ..ServerConfig::default()
    })
    .await;
    // Fetched once at start.
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);
    assert_eq!(user_of(&server, &tokens[0]).await.as_deref(), Some("ada"));

    // The provider rotates to new keys. Once the refetch interval has passed since
    // the last fetch, a token of a new kid makes heartwire fetch the set again.
    *provider.set.lock() = rotated_set;
    tokio::time::sleep(REFETCH).await;
    assert_eq!(user_of(&server, &tokens[1]).await.as_deref(), Some("ada"));
    assert_eq!(user_of(&server, &tokens[2]).await.as_deref(), Some("ada"));
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 2);

    // The key rotated out is gone with the set it was in.
    let (code, reason) = refusal_of(&server, &tokens[0]).await;
    assert_eq!(code, 4401);
    assert_eq!(reason, r#"no key with the token's kid "k1" in the JWKS"#);

    // A flood of unknown kids fetches at most once per interval.
    let flood_start = Instant::now();
    for _ in 0..10 {
        assert_eq!(refusal_of(&server, &tokens[3]).await.0, 4401);
    }
    let intervals = flood_start.elapsed().as_millis() / REFETCH.as_millis() + 1;
    let extra = provider.fetches.load(Ordering::SeqCst) - 2;
    assert!(
        extra as u128 <= intervals,
        "{extra} fetches in {:?}",
        flood_start.elapsed()
    );
}

#[tokio::test]
async fn a_set_that_cannot_be_fetched_means_try_again_later() {
    let kit = TokenKit::new().await;
    let claims = json!({"sub": "ada", "exp": unix_now() + 600});
    let tokens = kit
        .mint(&[
            Spec::key("ES256", "ec", claims.clone()).kid("e1"),
            Spec::key("RS256", "rsa", claims.clone()).kid("r1"),
        ])
        .await;
    let (provider, addr) = start_provider(kit.jwks(&[("ec", "e1", "ES256")]).await).await;
    let server = TestServer::start(ServerConfig {
        access: Access {
            jwt_jwks_url: Some(format!("http://{addr}/jwks.json")),
            jwt_jwks_refetch: REFETCH,
            ..Access::default()
        },
        ..ServerConfig::default()
    })
    .await;
    provider.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(REFETCH).await;
    // The cached key still works while the provider is down…
    assert_eq!(user_of(&server, &tokens[0]).await.as_deref(), Some("ada"));
    // …and a key the cache lacks may exist: come back later, do not give up.
    let (code, reason) = refusal_of(&server, &tokens[1]).await;
    assert_eq!(code, 1013);
    assert_eq!(
        reason,
        "the server cannot fetch its JWKS; retry after 5000 ms"
    );
    // Within the interval the failure stands, without another fetch.
    let fetches = provider.fetches.load(Ordering::SeqCst);
    assert_eq!(refusal_of(&server, &tokens[1]).await.0, 1013);
    assert_eq!(provider.fetches.load(Ordering::SeqCst), fetches);
}
