//! For the interop tests: a third-party peer program run with a bounded time against a
//! server with a short ping interval.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use heartwire_server::{LivenessTiming, ServerConfig, TlsFiles};

use super::TestServer;
use super::certs::TestCa;

/// The server's ping interval in these tests: short, so a few intervals fit in a second.
const PING_INTERVAL: Duration = Duration::from_millis(200);

/// How long one peer program may run before the test fails.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Fails the test, with what to do, when `program` cannot run `check` successfully.
pub async fn require(program: &str, args: &[&str], what: &str) {
    let status = tokio::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(PEER_TIMEOUT, status).await {
        Ok(Ok(status)) if status.success() => {}
        outcome => panic!(
            "{what} is missing ({program} {args:?}: {outcome:?}); \
             run scripts/test, which installs what the tests need"
        ),
    }
}

/// Starts a server, runs `program args… ws://ADDR/ws` against it, stops the server and checks
/// that the peer exited 0 and printed a JSON line with `"ok": true`. Returns that line.
pub async fn run_peer(program: &str, args: &[&str]) -> serde_json::Value {
    run_peer_on(program, args, None).await
}

/// As [`run_peer`], over TLS: the server presents a certificate for `localhost` that
/// `ca` signed, and the peer gets `wss://localhost:PORT/ws` and `--ca CA_FILE`.
pub async fn run_peer_tls(program: &str, args: &[&str], ca: &TestCa) -> serde_json::Value {
    run_peer_on(program, args, Some(ca)).await
}

async fn run_peer_on(program: &str, args: &[&str], ca: Option<&TestCa>) -> serde_json::Value {
    let pair = ca.map(TestCa::localhost);
    let server = TestServer::start(ServerConfig {
        liveness: LivenessTiming {
            ping_interval: PING_INTERVAL,
            ..LivenessTiming::default()
        },
        tls: TlsFiles {
            tls_cert: pair.as_ref().map(|pair| pair.cert.clone()),
            tls_key: pair.as_ref().map(|pair| pair.key.clone()),
            ..TlsFiles::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    let url = match ca {
        Some(ca) => {
            command.arg("--ca").arg(&ca.cert);
            server.wss_url("/ws")
        }
        None => server.url("/ws"),
    };
    let child = command
        .arg(&url)
        .arg("--expect-ping-interval-ms")
        .arg(PING_INTERVAL.as_millis().to_string())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {program}: {err}; run scripts/test"));
    let output = tokio::time::timeout(PEER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} {url} ran longer than {PEER_TIMEOUT:?}"))
        .expect("the peer's output can be read");

    server.shut_down().await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} {url} failed with {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!("{program} printed no JSON report\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
        });
    assert_eq!(
        report["ok"],
        serde_json::Value::Bool(true),
        "peer report: {report}"
    );
    let checks = report["checks"].as_object().expect("the report has checks");
    assert!(
        checks.len() >= 10 && checks.values().all(|v| v == &serde_json::Value::Bool(true)),
        "peer report: {report}"
    );
    report
}
