//! What `heartwire serve` writes to stderr: lines chosen by `RUST_LOG`, text without
//! colours when stderr is not a terminal, or JSON lines with `--log-format json`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::{PATIENCE, heartwire};

/// Runs `heartwire serve` with `args` and `env`, opens one connection to `/echo` and
/// closes it, stops the server with SIGTERM, and returns its stderr.
async fn stderr_of_a_short_run(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = heartwire();
    command
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
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
    let (mut socket, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(format!("ws://{addr}/echo")),
    )
    .await
    .expect("connects in time")
    .unwrap();
    socket.close(None).await.unwrap();
    use futures_util::StreamExt;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, socket.next()).await {}
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    stderr
}

#[tokio::test]
async fn json_lines_with_log_format_json() {
    let stderr = stderr_of_a_short_run(&["--log-format", "json"], &[]).await;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "heartwire listening" && line["level"] == "INFO"),
        "{stderr}"
    );
    // One line when the connection opened and one when it ended, at info level.
    let find = |message: &str| {
        lines
            .iter()
            .find(|line| line["message"] == message && line["level"] == "INFO")
            .unwrap_or_else(|| panic!("no {message:?} line in {stderr}"))
    };
    let opened = find("connection opened");
    let ended = find("connection ended");
    for line in [opened, ended] {
        assert_eq!(line["endpoint"], "echo", "{line}");
        assert_eq!(line["address"], "127.0.0.1", "{line}");
        assert_eq!(line["user"], "-", "{line}");
    }
    assert_eq!(opened["session"], ended["session"]);
    assert_eq!(
        opened["session"].as_str().map(str::len),
        Some(16),
        "{opened}"
    );
    assert!(
        ended["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{ended}"
    );
    assert!(ended["seconds"].as_f64().is_some(), "{ended}");
}

#[tokio::test]
async fn text_without_colours_when_stderr_is_not_a_terminal() {
    let stderr = stderr_of_a_short_run(&[], &[]).await;
    assert!(stderr.contains("heartwire listening"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in {stderr:?}");
}

#[tokio::test]
async fn rust_log_chooses_the_lines() {
    let quiet = stderr_of_a_short_run(&[], &[("RUST_LOG", "warn")]).await;
    assert!(!quiet.contains("heartwire listening"), "{quiet}");
    let targeted =
        stderr_of_a_short_run(&[], &[("RUST_LOG", "warn,heartwire_server::slot=info")]).await;
    assert!(targeted.contains("connection opened"), "{targeted}");
    assert!(!targeted.contains("heartwire listening"), "{targeted}");
    let wrong = stderr_of_a_short_run(&[], &[("RUST_LOG", "info,=[")]).await;
    assert!(
        wrong.contains("RUST_LOG=") && wrong.contains("is not a log filter"),
        "{wrong}"
    );
}
