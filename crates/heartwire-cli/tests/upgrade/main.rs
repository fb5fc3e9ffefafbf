//! Live upgrade (`--upgrade-socket`, `--take-over`): while messages flow to
//! subscribers and clients publish, a new `heartwire serve` takes over the listening
//! socket and every connection of the running one. No client sees a close, a
//! reconnect or a gap; every message arrives once and in order; the server's
//! liveness goes on. A new process that dies before confirming changes nothing.

#[path = "../common/mod.rs"]
mod common;
mod rebuilt;
mod systemd;
mod traffic;
mod ws4redis;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

use common::{PATIENCE, Running, heartwire};
use heartwire_client::ClientConfig;
use tokio::io::AsyncBufReadExt;
use traffic::{Traffic, client, serve, serve_with, socket_path, traffic, traffic_of, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upgrades_in_a_row_lose_nothing_and_close_nothing() {
    let (_dir, socket) = socket_path("upgrade");
    let mut old = Running::start(serve(&socket, false));
    let addr = old.addr.clone();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the upgrade socket is the owner's only"
    );

    let traffic = traffic(&addr, 3).await;

    for round in 1..=2 {
        let new = Running::start(serve(&socket, true));
        assert_eq!(
            new.addr, addr,
            "the new process serves the same listening socket"
        );
        assert!(
            old.wait().success(),
            "the old process ends once it has handed over"
        );
        old = new;
        traffic.twenty_more("messages after the upgrade").await;
        let counted = |series: &'static str| {
            let addr = addr.parse().unwrap();
            async move {
                heartwire_testkit::metric(addr, &format!("{series}{{endpoint=\"native\"}}")).await
            }
        };
        if round == 1 {
            // The 3 subscribers and the publisher came over; none connected anew.
            assert_eq!(counted("heartwire_connections_adopted_total").await, 4.0);
            assert_eq!(counted("heartwire_connections_accepted_total").await, 0.0);
        }
        // A new client is accepted by the new process.
        let (_late, late) = client(&addr, true);
        until("a client of the new process", || {
            late.lock().unwrap().opens == 1
        })
        .await;
        if round == 1 {
            assert_eq!(counted("heartwire_connections_accepted_total").await, 1.0);
        }
        eprintln!("upgrade {round}: done");
    }

    traffic.check().await;
    drop(old);
}

/// The old process lends each connection's own descriptor to the handover rather
/// than a duplicate: with its open-files limit set just above what it holds, every
/// connection still moves, and no client sees a close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_at_its_open_files_limit_hands_over_every_connection() {
    const SUBSCRIBERS: usize = 60;
    let (_dir, socket) = socket_path("upgrade-nofile");
    let old = Running::start(serve(&socket, false));
    let traffic = traffic(&old.addr, SUBSCRIBERS).await;

    // What the old process holds now, its connections among them, and a few more for
    // the handover's own (its Unix connection, the listening socket sent): a duplicate
    // of each connection's descriptor would need SUBSCRIBERS more.
    let pid = old.child.id();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(open > SUBSCRIBERS, "{open} descriptors open");
    let limit = open + 8;
    let limited = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit set the old process's limit");

    let new = Running::start(serve(&socket, true));
    went_over_live(old, new, traffic).await;
}

/// Waits for `old` to end once it has handed over to `new`, then checks that the
/// traffic went on: twenty more messages, none lost or repeated, no client closed.
async fn went_over_live(mut old: Running, new: Running, traffic: Traffic) {
    assert!(
        old.wait().success(),
        "the old process ends once it has handed over"
    );
    traffic.twenty_more("messages after the upgrade").await;
    traffic.check().await;
    drop(new);
}

/// Reads one framed handover message (a 4-byte length and JSON) from `stream`.
fn read_message(stream: &mut UnixStream) -> serde_json::Value {
    let mut length = [0; 4];
    stream.read_exact(&mut length).unwrap();
    let mut json = vec![0; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut json).unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn write_message(stream: &mut UnixStream, message: &serde_json::Value) {
    let json = serde_json::to_vec(message).unwrap();
    stream
        .write_all(&(json.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&json).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_dies_before_confirming_changes_nothing() {
    let (_dir, socket) = socket_path("upgrade-fails");
    let mut old = Running::start(serve(&socket, false));
    let traffic = traffic(&old.addr, 2).await;

    // A new process that takes everything the old one sends, then dies without
    // confirming (the descriptors it was sent are closed with it).
    let path = socket.clone();
    let sent = tokio::task::spawn_blocking(move || {
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let begin = read_message(&mut stream);
        assert!(begin["begin"]["version"].is_u64(), "{begin}");
        write_message(&mut stream, &serde_json::json!("ready"));
        let mut connections = 0;
        loop {
            let message = read_message(&mut stream);
            if message == "end" {
                return connections;
            }
            if message.get("connection").is_some() {
                connections += 1;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(sent, 3, "the old process offered its three connections");

    traffic
        .twenty_more("messages after the failed upgrade")
        .await;
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old process goes on"
    );
    let (_late, late) = client(&old.addr, true);
    until("a new client of the old process", || {
        late.lock().unwrap().opens == 1
    })
    .await;

    // The upgrade socket is still the old process's: a real upgrade follows.
    let new = Running::start(serve(&socket, true));
    went_over_live(old, new, traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_echo_clients_see_no_close_across_an_upgrade() {
    let (_dir, socket) = socket_path("upgrade-echo");
    let old = Running::start(serve(&socket, false));
    let script = heartwire_testkit::peer::repo_root().join("tests/peers/echo_stream_client.py");
    let mut python = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("ws://{}/echo", old.addr))
        .args(["--ping-interval", "0.5", "--ping-timeout", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = tokio::io::BufReader::new(python.stdout.take().unwrap()).lines();
    let mut next_line = async || -> serde_json::Value {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("the Python client answers in time")
            .unwrap()
            .expect("the Python client prints its result");
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(next_line().await["state"], "open");
    let before = next_line().await["echoed"].as_u64().unwrap();

    let mut old = old;
    let new = Running::start(serve(&socket, true));
    assert!(old.wait().success());
    let mut after = before;
    while after < before + 100 {
        after = next_line().await["echoed"].as_u64().expect("echoes go on");
    }
    drop(python.stdin.take());
    let result = next_line().await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(python.wait().await.unwrap().success());
    drop(new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_new_process_resumes_every_subscription_from_redis() {
    let redis = heartwire_testkit::redis::TestRedis::start();
    let url = redis.url();
    let options = ["--redis", url.as_str()];
    let (_dir, socket) = socket_path("upgrade-redis");
    let old = Running::start(serve_with(&socket, false, &options));
    let traffic = traffic(&old.addr, 2).await;
    let new = Running::start(serve_with(&socket, true, &options));
    went_over_live(old, new, traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_are_closed_with_1012_and_resume_without_a_gap() {
    let ca = heartwire_testkit::certs::TestCa::new("upgrade");
    let pair = ca.localhost();
    let (cert, key) = (pair.cert.to_str().unwrap(), pair.key.to_str().unwrap());
    let options = [
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--shutdown-spread",
        "100ms",
    ];
    let (_dir, socket) = socket_path("upgrade-tls");
    let mut old = Running::start(serve_with(&socket, false, &options));
    let port = old.addr.rsplit(':').next().unwrap().to_owned();
    let traffic = traffic_of(2, || {
        let mut config = ClientConfig::new([format!("wss://localhost:{port}/ws")]).unwrap();
        config.tls_roots = heartwire_client::TlsRoots::from_pem_file(&ca.cert).unwrap();
        config
    })
    .await;
    let new = Running::start(serve_with(&socket, true, &options));
    assert!(old.wait().success());
    old = new;
    // Each client comes back to the new process and resumes where it was: the
    // channels moved with their epoch and history.
    traffic.check_back_after_1012().await;
    drop(old);
}

/// Starts a new process that takes over from `socket` through a relay, in `dir`,
/// that claims the handover format's `version` (`tests/peers/handover_relay.py`).
async fn take_over_through_a_relay(
    dir: &traffic::tempdir::Dir,
    socket: &std::path::Path,
    version: u32,
    options: &[&str],
) -> (Running, tokio::process::Child) {
    let relayed = dir.path().join("relay.sock");
    let script = heartwire_testkit::peer::repo_root().join("tests/peers/handover_relay.py");
    let mut relay = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&relayed)
        .arg(socket)
        .args(["--version", &version.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = tokio::io::BufReader::new(relay.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line()).await;
    assert_eq!(
        line.unwrap().unwrap().as_deref(),
        Some(r#"{"state": "listening"}"#)
    );
    let mut new_process = heartwire();
    new_process.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ping-interval",
        "1s",
        "--ping-timeout",
        "2s",
    ]);
    new_process.arg("--take-over").arg(&relayed).args(options);
    (Running::start(new_process), relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_new_process_does_not_know_falls_back_to_1012_and_resume() {
    let redis = heartwire_testkit::redis::TestRedis::start();
    let url = redis.url();
    let options = ["--redis", url.as_str(), "--shutdown-spread", "100ms"];
    let (dir, socket) = socket_path("upgrade-version");
    let mut old = Running::start(serve_with(&socket, false, &options));
    let traffic = traffic(&old.addr, 2).await;

    // The new process reaches the old one through a relay that claims version 9999.
    let (new, _relay) = take_over_through_a_relay(&dir, &socket, 9999, &options).await;
    assert_eq!(
        new.addr, old.addr,
        "the new process took the listening socket"
    );
    assert!(
        old.wait().success(),
        "the old process closes its connections and ends"
    );
    old = new;
    // Every client was closed with 1012 and came back to the new process, which
    // resumed each subscription from Redis.
    traffic.check_back_after_1012().await;
    drop(old);
}

/// Version 2 of the format only added `/ws/{facility}` sockets: a process of version
/// 1 (here, a relay that says so) hands over live to this build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_version_of_the_format_is_taken_over_live() {
    let (dir, socket) = socket_path("upgrade-version-1");
    let old = Running::start(serve(&socket, false));
    let traffic = traffic(&old.addr, 2).await;
    let (new, _relay) = take_over_through_a_relay(&dir, &socket, 1, &[]).await;
    assert_eq!(new.addr, old.addr);
    went_over_live(old, new, traffic).await;
}
