//! `heartwire serve` as a process: configuration from flags, environment and file,
//! clear errors with a non-zero exit, and a graceful stop on SIGTERM.

mod common;

use std::process::Command;

use common::{PATIENCE, Running, heartwire};
use heartwire_testkit::redis_process::wait_until;

use futures_util::StreamExt;
use heartwire_core::protocol::ServerFrame;
use tokio_tungstenite::tungstenite::Message;

async fn hello(addr: &str) -> (u64, u64) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let text = match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
        Some(Ok(Message::Text(text))) => text,
        other => panic!("{other:?}"),
    };
    match ServerFrame::parse(&text).unwrap() {
        ServerFrame::Hello {
            ping_interval_ms,
            ping_timeout_ms,
            ..
        } => (ping_interval_ms, ping_timeout_ms),
        other => panic!("{other:?}"),
    }
}

fn output(command: &mut Command) -> (i32, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn flag_beats_environment_beats_file() {
    let dir = std::env::temp_dir().join(format!("heartwire-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("heartwire.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\nping-interval = \"7s\"\nping-timeout = \"8s\"\n",
    )
    .unwrap();

    let mut command = heartwire();
    command
        .args(["serve", "--config"])
        .arg(&file)
        .env("HEARTWIRE_PING_TIMEOUT", "9s");
    let server = Running::start(command);
    assert_eq!(hello(&server.addr).await, (7_000, 9_000));

    let mut command = heartwire();
    command
        .args(["serve", "--ping-timeout", "3s", "--config"])
        .arg(&file)
        .env("HEARTWIRE_PING_TIMEOUT", "9s");
    let server = Running::start(command);
    assert_eq!(hello(&server.addr).await, (7_000, 3_000));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_are_one_sentence_and_a_failing_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = output(heartwire().args(["serve", "--listen", &addr]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("heartwire: cannot listen on {addr}")),
        "{stderr}"
    );
    // The cause once, not twice.
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");

    let (code, stderr) =
        output(heartwire().args(["serve", "--config", "/nonexistent/heartwire.toml"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read config file /nonexistent/heartwire.toml"),
        "{stderr}"
    );

    let (code, stderr) = output(heartwire().args(["serve", "--ping-interval", "soon"]));
    assert_eq!(code, 2, "usage errors exit 2");
    assert!(stderr.contains("--ping-interval"), "{stderr}");

    let (code, stderr) = output(heartwire().args(["serve", "--redis", "localhost:6379"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("localhost:6379 is not a Redis URL; it starts with redis://"),
        "{stderr}"
    );
    let (code, stderr) = output(heartwire().args(["serve", "--redis", "ada:s3cret@db:6379"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a Redis URL"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let (code, stderr) = output(heartwire().args(["serve", "--ping-timeout", "0s"]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("ping-timeout must be greater than zero"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_variable_is_named_as_the_variable_unless_a_flag_overrides_it() {
    let (code, stderr) = output(
        heartwire()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("HEARTWIRE_PING_INTERVAL", "soon"),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("HEARTWIRE_PING_INTERVAL=soon: not a duration"),
        "{stderr}"
    );

    let mut command = heartwire();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--ping-interval", "5s"])
        .env("HEARTWIRE_PING_INTERVAL", "soon");
    let server = Running::start(command);
    assert_eq!(hello(&server.addr).await.0, 5_000);
}

#[test]
fn a_bad_value_in_the_file_is_named_with_the_file_and_the_key() {
    let dir = std::env::temp_dir().join(format!("heartwire-bad-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("heartwire.toml");
    std::fs::write(
        &file,
        "[redis]\nprefix = \"ws\"\n[ping]\ninterval = \"soon\"\n",
    )
    .unwrap();
    let (code, stderr) = output(heartwire().args(["serve", "--config"]).arg(&file));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "config file {}: ping.interval = \"soon\": not a duration",
            file.display()
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_explains_every_option() {
    let output = heartwire().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--config",
        "--ping-interval",
        "--ping-timeout",
        "--close-timeout",
        "--heartbeat-text",
        "--heartbeat-interval",
        "--heartbeat-reply",
        "--max-message-size",
        "--max-connections",
        "--persist-for",
        "--shutdown-spread",
        "--redis",
        "--redis-prefix",
        "--presence",
        "--max-subscriptions",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[tokio::test]
async fn sigterm_closes_clients_with_1012_and_exits_cleanly() {
    let mut command = heartwire();
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--shutdown-spread",
        "1s",
    ]);
    let mut server = Running::start(command);
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/echo", server.addr))
        .await
        .unwrap();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let close = loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1012);
    assert!(
        close.reason.starts_with("server restarting; retry after"),
        "{}",
        close.reason
    );
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, socket.next()).await {}
    assert!(server.wait().success());
}

#[tokio::test]
async fn listen_takes_a_bare_port_or_a_host_name() {
    for (listen, host) in [("0", "127.0.0.1:"), ("localhost:0", "")] {
        let mut command = heartwire();
        command.args(["serve", "--listen", listen]);
        let server = Running::start(command);
        assert!(server.addr.starts_with(host), "{listen}: {}", server.addr);
        hello(&server.addr).await;
    }
}

#[test]
fn the_server_keeps_transparent_huge_pages_out_of_its_memory() {
    let mut command = heartwire();
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let server = Running::start(command);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let thp = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .expect("the kernel says in /proc/PID/status whether a process may have huge pages");
    assert_eq!(thp.trim(), "0", "{status}");
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let comm = task.unwrap().path().join("comm");
            std::fs::read_to_string(comm).unwrap().trim().to_owned()
        })
        .collect()
}

/// How many worker threads the server `server` runs (tokio names them).
fn worker_threads(server: &Running) -> usize {
    thread_names(server.child.id())
        .iter()
        .filter(|name| name.starts_with("tokio-"))
        .count()
}

/// Waits until `server` runs `expected` worker threads. A new thread sets its own
/// name when it first runs, which on a busy machine can be after the server says
/// it listens.
fn wait_for_worker_threads(server: &Running, expected: usize) {
    wait_until(
        &format!("{expected} named worker threads"),
        PATIENCE,
        || worker_threads(server) == expected,
    );
}

#[test]
fn the_server_runs_as_many_worker_threads_as_asked_and_one_per_core_by_default() {
    for asked in ["1", "3"] {
        let mut command = heartwire();
        command.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--worker-threads",
            asked,
        ]);
        let server = Running::start(command);
        wait_for_worker_threads(&server, asked.parse().unwrap());
    }
    // tokio's own variable is not read, so a bad value of it cannot stop the server.
    let mut command = heartwire();
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TOKIO_WORKER_THREADS", "many");
    let server = Running::start(command);
    let cores = std::thread::available_parallelism().unwrap().get();
    wait_for_worker_threads(&server, cores);

    let (code, stderr) = output(heartwire().args(["serve", "--worker-threads", "0"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--worker-threads"), "{stderr}");
}
