//! `heartwire publish` and `heartwire api` against a `heartwire serve` process: a
//! message reaches a WebSocket subscriber, the calls print the server's JSON, and a
//! wrong key or an unknown call exits 1 with a sentence. The key never shows in
//! `--help`.

mod common;

use std::process::Command;

use common::{PATIENCE, Running, heartwire};
use futures_util::{SinkExt, StreamExt};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "cli-api-key-0123456789abcdef";

/// Runs `command`; returns its exit code, stdout and stderr.
fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `heartwire` with `args` against the server at `addr`, with the key in a file.
fn call(addr: &str, key_file: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut command = heartwire();
    command
        .args(args)
        .arg("--server")
        .arg(format!("http://{addr}"))
        .arg("--api-key-file")
        .arg(key_file);
    run(&mut command)
}

async fn next_frame(
    socket: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> ServerFrame {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => return ServerFrame::parse(&text).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_api_calls_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("heartwire-cli-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut command = heartwire();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--api-key-file"])
        .arg(&key_file);
    let server = Running::start(command);
    let addr = server.addr.clone();

    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    next_frame(&mut socket).await; // hello
    let subscribe = ClientFrame::Subscribe {
        channel: "room:cli".into(),
        since: None,
    };
    socket
        .send(Message::text(serde_json::to_string(&subscribe).unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Subscribed { .. }
    ));

    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (addr, key_file) = (addr.clone(), key_file.clone());
        move || {
            call(
                &addr,
                &key_file,
                &["publish", "room:cli", "hello there", "--id", "p1"],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["seq"], 1);
    match next_frame(&mut socket).await {
        ServerFrame::Message { data, .. } => assert_eq!(data, json!("hello there")),
        other => panic!("{other:?}"),
    }

    let key_file_ = key_file.clone();
    let addr_ = addr.clone();
    let results = tokio::task::spawn_blocking(move || {
        [
            call(
                &addr_,
                &key_file_,
                &["api", "publish", "channel=room:cli", r#"data={"n":2}"#],
            ),
            call(
                &addr_,
                &key_file_,
                &["api", "history", "channel=room:cli", "reverse=true"],
            ),
            call(&addr_, &key_file_, &["api", "info"]),
            call(&addr_, &key_file_, &["api", "channels", "pattern=room:*"]),
        ]
    })
    .await
    .unwrap();
    for (code, _, stderr) in &results {
        assert_eq!(*code, 0, "{stderr}");
    }
    let parsed: Vec<Value> = results
        .iter()
        .map(|(_, stdout, _)| serde_json::from_str(stdout.trim()).unwrap())
        .collect();
    assert_eq!(parsed[0]["seq"], 2);
    assert_eq!(
        parsed[1]["publications"],
        json!([{"seq": 2, "data": {"n": 2}}, {"seq": 1, "data": "hello there"}])
    );
    assert_eq!(parsed[2]["connections"], 1);
    assert_eq!(
        parsed[3]["channels"],
        json!([{"channel": "room:cli", "subscribers": 1}])
    );
    match next_frame(&mut socket).await {
        ServerFrame::Message { data, .. } => assert_eq!(data, json!({"n": 2})),
        other => panic!("{other:?}"),
    }

    let wrong = dir.join("wrong-key");
    std::fs::write(&wrong, "not-the-key-0123456789").unwrap();
    let addr_ = addr.clone();
    let (bad_key, unknown) = tokio::task::spawn_blocking(move || {
        (
            call(&addr_, &wrong, &["api", "info"]),
            call(&addr_, &key_file, &["api", "explode"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(bad_key.0, 1);
    assert!(
        bad_key.2.contains("401") && bad_key.2.contains("X-API-Key"),
        "{}",
        bad_key.2
    );
    assert_eq!(unknown.0, 1);
    assert!(
        unknown.2.contains("unknown call \"explode\""),
        "{}",
        unknown.2
    );
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_key_stays_out_of_help() {
    for args in [["serve", "--help"], ["api", "--help"]] {
        let (code, stdout, _) = run(heartwire().args(args).env("HEARTWIRE_API_KEY", KEY));
        assert_eq!(code, 0);
        assert!(stdout.contains("--api-key"), "{stdout}");
        assert!(!stdout.contains(KEY), "{stdout}");
    }
}
