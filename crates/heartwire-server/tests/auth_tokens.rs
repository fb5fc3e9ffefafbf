//! JWT verification over real sockets, with tokens minted by PyJWT: each family of
//! keys identifies a connection, bad tokens are refused with 4401 before any
//! `hello`, an expired one with 4498, and a live connection lasts until `exp` plus
//! the grace unless a `refresh` of the same user moves `exp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{Access, Secret, ServerConfig};
use heartwire_testkit::tokens::{Spec, TokenKit, unix_now};
use heartwire_testkit::{
    PATIENCE, Socket, TestServer, connect, connect_with, expect_close, expect_refusal, fast_config,
    next_frame, send,
};
use serde_json::json;

const SECRET: &str = "a shared secret of at least thirty-two bytes";
/// The grace after `exp` in these tests: short, so that expiry is seen quickly.
const GRACE: Duration = Duration::from_millis(500);

fn config(access: Access) -> ServerConfig {
    ServerConfig {
        access: Access {
            token_grace: GRACE,
            ..access
        },
        // Pings well apart from the deadlines these tests watch.
        ..fast_config(5_000, 5_000)
    }
}

fn secret_config() -> ServerConfig {
    config(Access {
        jwt_secret: Some(Secret::from(SECRET)),
        ..Access::default()
    })
}

fn with_token(server: &TestServer, token: &str) -> String {
    server.url(&format!("/ws?token={token}"))
}

/// The `hello` of an accepted connection: its user and `expires_in_ms`.
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
async fn tokens_of_every_key_family_identify_the_connection() {
    let kit = TokenKit::new().await;
    let claims = json!({"sub": "ada", "groups": ["staff"]});
    let cases = [
        (Spec::secret("HS256", SECRET, claims.clone()), None),
        (Spec::secret("HS512", SECRET, claims.clone()), None),
        (Spec::key("RS256", "rsa", claims.clone()), Some("rsa")),
        (Spec::key("RS512", "rsa", claims.clone()), Some("rsa")),
        (Spec::key("PS256", "rsa", claims.clone()), Some("rsa")),
        (Spec::key("PS384", "rsa", claims.clone()), Some("rsa")),
        // Below the 2048 bits ring checks: RustCrypto's `rsa` verifies it, as before.
        (
            Spec::key("RS256", "rsa1024", claims.clone()),
            Some("rsa1024"),
        ),
        (Spec::key("ES256", "ec", claims.clone()), Some("ec")),
        (Spec::key("EdDSA", "ed", claims.clone()), Some("ed")),
    ];
    for (spec, public_key) in cases {
        let access = match public_key {
            None => Access {
                jwt_secret: Some(Secret::from(SECRET)),
                ..Access::default()
            },
            Some(name) => Access {
                jwt_public_key: Some(kit.path(&format!("{name}.pub.pem"))),
                ..Access::default()
            },
        };
        let server = TestServer::start(config(access)).await;
        let token = kit.mint_one(spec.clone().expires_in(60)).await;
        let mut socket = connect(&with_token(&server, &token)).await;
        let (user, expires_in_ms) = hello(&mut socket).await;
        assert_eq!(user.as_deref(), Some("ada"), "{spec:?}");
        let expires_in_ms = expires_in_ms.expect("the token expires");
        // exp is in whole seconds, set when the token was minted a moment ago.
        assert!(
            (50_000..=60_000).contains(&expires_in_ms),
            "{spec:?}: {expires_in_ms}"
        );
        // The same token in an Authorization header.
        let bearer = format!("Bearer {token}");
        let mut socket = connect_with(&server.url("/ws"), &[("authorization", &bearer)]).await;
        assert_eq!(hello(&mut socket).await.0.as_deref(), Some("ada"));
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_4401_before_any_hello() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(config(Access {
        jwt_public_key: Some(kit.path("rsa.pub.pem")),
        jwt_audience: Some("chat".into()),
        jwt_issuer: Some("https://idp.test/".into()),
        ..Access::default()
    }))
    .await;
    let exp = unix_now() + 60;
    let good = json!({"sub": "ada", "exp": exp, "aud": "chat", "iss": "https://idp.test/"});
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    // The public key used as an HMAC secret: the algorithm-confusion attack.
    let public_pem = std::fs::read_to_string(kit.path("rsa.pub.pem")).unwrap();
    let tokens = kit
        .mint(&[
            Spec::key("RS256", "rsa", good.clone()),
            Spec::key("RS256", "rsa2", good.clone()),
            Spec::key("RS256", "rsa", with("aud", json!("news"))),
            Spec::key("RS256", "rsa", with("iss", json!("https://evil.test/"))),
            Spec::forged_hmac(&public_pem, good.clone()),
            Spec::key("ES256", "ec", good.clone()),
        ])
        .await;
    let mut socket = connect(&with_token(&server, &tokens[0])).await;
    assert_eq!(hello(&mut socket).await.0.as_deref(), Some("ada"));

    let cases = [
        (&tokens[1], "the token's signature does not verify"),
        (&tokens[2], "the token's aud is not chat"),
        (&tokens[3], "the token's iss is not https://idp.test/"),
        (
            &tokens[4],
            "the token is signed with HS256, which none of the server's keys verifies",
        ),
        (
            &tokens[5],
            "the token is signed with ES256, which none of the server's keys verifies",
        ),
    ];
    for (token, reason) in cases {
        let mut socket = connect(&with_token(&server, token)).await;
        assert_eq!(expect_refusal(&mut socket).await, (4401, reason.to_owned()));
    }
    let mut garbage = connect(&with_token(&server, "not.a.jwt")).await;
    assert_eq!(
        expect_refusal(&mut garbage).await,
        (4401, "the token is not a JWT".to_owned())
    );
    let mut none = connect(&server.url("/ws")).await;
    let (code, reason) = expect_refusal(&mut none).await;
    assert_eq!(code, 4401);
    assert!(reason.contains("needs a token"), "{reason}");
    // The ws4redis endpoint is guarded the same way.
    let mut facility = connect(&server.url("/ws/chat?subscribe-broadcast")).await;
    assert_eq!(expect_refusal(&mut facility).await.0, 4401);
    assert_eq!(
        server
            .metric(r#"heartwire_refused_total{reason="unauthorized"}"#)
            .await,
        8.0
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_with_4498() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(secret_config()).await;
    let claims = json!({"sub": "ada", "exp": unix_now() - 5});
    let token = kit.mint_one(Spec::secret("HS256", SECRET, claims)).await;
    let mut socket = connect(&with_token(&server, &token)).await;
    assert_eq!(
        expect_refusal(&mut socket).await,
        (
            4498,
            "token expired; connect again with a fresh token".to_owned()
        )
    );
}

#[tokio::test]
async fn anonymous_connections_follow_the_policy() {
    let kit = TokenKit::new().await;
    let token = kit
        .mint_one(Spec::secret("HS256", SECRET, json!({"sub": "ada"})))
        .await;
    // No key configured: anyone, anonymously.
    let open = TestServer::start(ServerConfig::default()).await;
    let mut socket = connect(&open.url("/ws")).await;
    assert_eq!(hello(&mut socket).await, (None, None));
    // A key configured: a token is required…
    let closed = TestServer::start(secret_config()).await;
    assert_eq!(
        expect_refusal(&mut connect(&closed.url("/ws")).await)
            .await
            .0,
        4401
    );
    // …unless anonymous connections are allowed too; a token still identifies.
    let mixed = TestServer::start(config(Access {
        jwt_secret: Some(Secret::from(SECRET)),
        allow_anonymous: Some(true),
        ..Access::default()
    }))
    .await;
    let mut anonymous = connect(&mixed.url("/ws")).await;
    assert_eq!(hello(&mut anonymous).await, (None, None));
    let mut identified = connect(&with_token(&mixed, &token)).await;
    assert_eq!(hello(&mut identified).await, (Some("ada".into()), None));
}

/// The wall-clock instant of a Unix time in seconds.
fn at(unix_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds)
}

/// Waits for the close 4498 of an expired connection and checks it came at `exp` plus
/// the grace: not before, and within a second after.
async fn expect_expiry(socket: &mut Socket, exp: u64) {
    let (code, reason) = expect_close(socket).await;
    let closed_at = SystemTime::now();
    assert_eq!(
        (code, reason.as_str()),
        (4498, "token expired; reconnect with a fresh token")
    );
    let due = at(exp) + GRACE;
    assert!(
        closed_at >= due,
        "closed {:?} early",
        due.duration_since(closed_at)
    );
    let late = closed_at.duration_since(due).unwrap();
    assert!(late < Duration::from_secs(1), "closed {late:?} late");
}

#[tokio::test]
async fn a_live_connection_ends_at_exp_plus_the_grace() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(secret_config()).await;
    let spec = Spec::secret("HS256", SECRET, json!({"sub": "ada"})).expires_in(2);
    let minted = kit.mint_with_claims(&[spec]).await.remove(0);
    let (token, exp) = (&minted.token, minted.exp());
    let mut socket = connect(&with_token(&server, token)).await;
    let (_, expires_in_ms) = hello(&mut socket).await;
    assert!(expires_in_ms.unwrap() <= 2_000);
    expect_expiry(&mut socket, exp).await;
    assert_eq!(
        server
            .metric(r#"heartwire_disconnects_total{reason="token_expired"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_refresh_of_the_same_user_keeps_the_connection_past_the_old_exp() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(secret_config()).await;
    let ada = json!({"sub": "ada"});
    let minted = kit
        .mint_with_claims(&[
            Spec::secret("HS256", SECRET, ada.clone()).expires_in(2),
            Spec::secret("HS256", SECRET, ada).expires_in(600),
        ])
        .await;
    let first_exp = minted[0].exp();
    let tokens: Vec<String> = minted.into_iter().map(|minted| minted.token).collect();
    let mut socket = connect(&with_token(&server, &tokens[0])).await;
    hello(&mut socket).await;
    let refresh = ClientFrame::Refresh {
        token: tokens[1].clone(),
    };
    send(&mut socket, &refresh).await;
    match next_frame(&mut socket).await {
        ServerFrame::Refreshed {
            expires_in_ms: Some(ms),
        } => assert!((580_000..=600_000).contains(&ms), "{ms}"),
        other => panic!("expected refreshed, got {other:?}"),
    }
    // Past the first token's deadline, the connection still answers.
    let first_deadline = at(first_exp) + GRACE + Duration::from_millis(300);
    let wait = first_deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(wait < PATIENCE);
    tokio::time::sleep(wait).await;
    send(
        &mut socket,
        &ClientFrame::Ping {
            echo: Default::default(),
        },
    )
    .await;
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Pong { .. }
    ));
}

#[tokio::test]
async fn a_refresh_with_another_sub_or_a_bad_token_is_refused_and_exp_stands() {
    let kit = TokenKit::new().await;
    let server = TestServer::start(secret_config()).await;
    let minted = kit
        .mint_with_claims(&[
            Spec::secret("HS256", SECRET, json!({"sub": "ada"})).expires_in(2),
            Spec::secret("HS256", SECRET, json!({"sub": "eve"})).expires_in(600),
            Spec::secret(
                "HS256",
                "another secret of thirty-two bytes!",
                json!({"sub": "ada"}),
            )
            .expires_in(600),
        ])
        .await;
    let exp = minted[0].exp();
    let tokens: Vec<String> = minted.into_iter().map(|minted| minted.token).collect();
    let mut socket = connect(&with_token(&server, &tokens[0])).await;
    hello(&mut socket).await;
    for (token, expected) in [
        (&tokens[1], ErrorCode::Forbidden),
        (&tokens[2], ErrorCode::Unauthorized),
    ] {
        let refresh = ClientFrame::Refresh {
            token: token.clone(),
        };
        send(&mut socket, &refresh).await;
        match next_frame(&mut socket).await {
            ServerFrame::Error { code, reason, .. } => {
                assert_eq!(code, expected, "{reason}");
                assert!(reason.starts_with("refresh refused"), "{reason}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    expect_expiry(&mut socket, exp).await;
}
