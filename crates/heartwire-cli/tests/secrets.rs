//! Secrets (the password in a Redis URL, an HMAC key, the credentials of the
//! connect hook's URL) never show in the log, `/healthz`, `/metrics` or `--help`,
//! whatever the server goes through: Redis out of reach, refused tokens, a hook that
//! cannot be reached, debug logging.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{PATIENCE, heartwire};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REDIS_PASSWORD: &str = "redis-pw-7d1f0c";
const HMAC_KEY: &str = "hmac-key-5b2e9a-of-at-least-thirty-two-bytes";
const HOOK_PASSWORD: &str = "hook-pw-3c8e41";

/// A plain GET; the whole response.
async fn get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    response
}

fn assert_clean(what: &str, text: &str) {
    for secret in [REDIS_PASSWORD, HMAC_KEY, HOOK_PASSWORD] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

#[tokio::test]
async fn secrets_never_reach_the_log_health_metrics_or_help() {
    let redis = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:1/0");
    let hook = format!("http://hook:{HOOK_PASSWORD}@127.0.0.1:1/auth");
    let log_path =
        std::env::temp_dir().join(format!("heartwire-secrets-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = heartwire()
        .env("HEARTWIRE_LOG", "debug")
        .env("HEARTWIRE_JWT_SECRET", HMAC_KEY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &redis,
            "--auth-url",
            &hook,
        ])
        .args(["--auth-timeout", "300ms"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("heartwire listening on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    // A token that does not verify, and a caller the unreachable hook must judge.
    for path in ["/ws?token=not.a.token", "/ws"] {
        let url = format!("ws://{addr}{path}");
        if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await {
            while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, socket.next()).await {}
        }
    }
    let health = get(&addr, "/healthz").await;
    assert!(health.contains("degraded"), "{health}");
    assert_clean("/healthz", &health);
    let metrics = get(&addr, "/metrics").await;
    assert!(metrics.contains("heartwire_refused_total"), "{metrics}");
    assert_clean("/metrics", &metrics);

    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    std::fs::remove_file(&log_path).unwrap();
    assert!(
        log.contains("cannot reach Redis"),
        "the log saw the outage:\n{log}"
    );
    assert_clean("the log", &log);

    let help = heartwire()
        .env("HEARTWIRE_JWT_SECRET", HMAC_KEY)
        .env("HEARTWIRE_REDIS", &redis)
        .env("HEARTWIRE_AUTH_URL", &hook)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert_clean("--help", &String::from_utf8_lossy(&help.stdout));
}
