//! `heartwire connect` and the client library against `heartwire serve` processes:
//! a server killed and restarted on the same port (its channels start a new epoch, a
//! gap the client reports), and the command's answers to bad input.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heartwire_client::{self as client, ClientConfig, Event, Events, GapReason, Incoming};
use heartwire_core::{BackoffConfig, Delay};
use serde_json::{Value, json};

const HEARTWIRE: &str = env!("CARGO_BIN_EXE_heartwire");
const WITHIN: Duration = Duration::from_secs(10);
const CAP: Duration = Duration::from_millis(300);
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(500);

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `heartwire serve` on `addr` and waits until it accepts connections.
fn serve(addr: SocketAddr) -> Child {
    let child = Command::new(HEARTWIRE)
        .args(["serve", "--listen", &addr.to_string()])
        .args(["--ping-interval", "200ms", "--ping-timeout", "200ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WITHIN;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "heartwire serve did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

async fn wait_for(
    events: &mut Events,
    what: &str,
    matches: impl Fn(&Event) -> bool,
) -> (Event, Instant) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) if matches(&event) => return (event, Instant::now()),
            Ok(Some(event)) => seen.push(event),
            _ => panic!("no {what}; seen: {seen:#?}"),
        }
    }
}

#[tokio::test]
async fn killed_server_restarted_on_the_same_port() {
    let addr = free_port();
    let mut server = serve(addr);
    let mut config = ClientConfig::new([format!("ws://{addr}/ws")]).unwrap();
    config.backoff = BackoffConfig {
        delay: Delay::Exponential {
            base: Duration::from_millis(50),
            cap: CAP,
        },
        ..BackoffConfig::default()
    };
    config.subscriptions = vec!["room".into()];
    config.jitter_seed = Some(5);
    let (client, mut events) = client::connect(config).unwrap();
    wait_for(&mut events, "subscribed", |event| {
        matches!(event, Event::Subscribed { .. })
    })
    .await;
    // A message from another client: the subscription is in place and its position
    // known. (Not its own: the ack of its own could be lost with the server, and the
    // restarted server, which remembers no ids, would publish it again.)
    let (other, mut other_events) =
        client::connect(ClientConfig::new([format!("ws://{addr}/ws")]).unwrap()).unwrap();
    wait_for(&mut other_events, "the other open", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    other.publish("room", json!(0)).unwrap();
    wait_for(&mut events, "the other's message", |event| {
        matches!(event, Event::Message(_))
    })
    .await;
    other.close();

    server.kill().unwrap();
    server.wait().unwrap();
    wait_for(&mut events, "reconnecting", |event| {
        matches!(event, Event::Reconnecting { .. })
    })
    .await;
    // Sent while no server runs: they wait in the outbox.
    for n in 1..=5 {
        client.publish("room", json!(n)).unwrap();
    }
    assert_eq!(client.queued(), 5);

    let mut restarted = serve(addr);
    let listening_at = Instant::now();
    let (_, open_at) = wait_for(&mut events, "open again", |event| {
        matches!(event, Event::Open { .. })
    })
    .await;
    // The fresh process started the channel in a new epoch: what the client may have
    // missed of the old one is gone, and it says so.
    let (gap, _) = wait_for(&mut events, "the gap", |event| {
        matches!(event, Event::Gap { .. })
    })
    .await;
    assert!(
        matches!(&gap, Event::Gap { channel, reason: GapReason::EpochChanged, .. } if channel == "room"),
        "{gap:?}"
    );
    let back_after = open_at - listening_at;
    assert!(
        back_after <= CAP + SLACK,
        "back after {back_after:?}, bound {:?}",
        CAP + SLACK
    );
    // The fresh process knows no subscriptions: receiving them proves the client
    // subscribed again, and the order proves the outbox kept it.
    let mut received = Vec::new();
    while received.len() < 5 {
        let (event, _) = wait_for(&mut events, "a queued message", |event| {
            matches!(event, Event::Message(_))
        })
        .await;
        if let Event::Message(Incoming::Channel { channel, data, .. }) = event {
            assert_eq!(channel, "room");
            received.push(data);
        }
    }
    assert_eq!(received, (1..=5).map(Value::from).collect::<Vec<_>>());
    client.close();
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

/// Runs `heartwire connect` with stdin held open (EOF would close the client), until
/// it exits on its own.
fn connect(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(HEARTWIRE)
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let deadline = Instant::now() + WITHIN;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            child.kill().unwrap();
            panic!("heartwire connect {args:?} did not exit within {WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn malformed_url_is_one_sentence_and_fails() {
    let output = connect(&["http://127.0.0.1:1/"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("expected `ws` or `wss`"), "{stderr}");
}

#[test]
fn a_server_that_is_not_websocket_fails() {
    // Answers every request with plain HTTP 200, as a web server would.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
        }
    });
    let output = connect(&[&format!("ws://{addr}/"), "--json"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("heartwire: no server can work"),
        "{stderr}"
    );
    assert!(last.contains("HTTP 200"), "{stderr}");
    let closed: Value = serde_json::from_str(stderr.lines().rev().nth(1).unwrap()).unwrap();
    assert_eq!(closed["state"], "closed");
}

#[test]
fn unreachable_server_is_retried_with_json_states() {
    let addr = free_port();
    let output = connect(&[
        &format!("ws://{addr}/ws"),
        "--json",
        "--reconnect-min",
        "10ms",
        "--reconnect-max",
        "20ms",
        "--max-attempts",
        "2",
    ]);
    // A server that may come up is retried until the attempts run out.
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let states: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert_eq!(states[0]["state"], "connecting", "{stderr}");
    assert_eq!(states[0]["url"], format!("ws://{addr}/ws"));
    assert_eq!(states[1]["state"], "reconnecting", "{stderr}");
    assert_eq!(states[1]["attempt"], 1);
    assert!(states[1]["delay_ms"].as_u64().unwrap() <= 10);
    assert!(
        states[1]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot reach")
    );
    let closed = states.last().unwrap();
    assert_eq!(closed["state"], "closed");
    assert!(
        closed["reason"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 2 attempts")
    );
    assert_eq!(
        states.len(),
        6,
        "connecting and reconnecting twice, connecting, closed: {stderr}"
    );
}

#[test]
fn lines_are_published_and_messages_printed() {
    let addr = free_port();
    let mut server = serve(addr);
    let mut child = Command::new(HEARTWIRE)
        .args([
            "connect",
            &format!("ws://{addr}/ws"),
            "--sub",
            "chat",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // Wait for "open" so the line is published, not sent raw.
    let mut line = String::new();
    let deadline = Instant::now() + WITHIN;
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no open state");
        assert!(Instant::now() < deadline);
        let state: Value = serde_json::from_str(&line).unwrap();
        if state["state"] == "open" {
            assert!(state["session"].is_string());
            break;
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "hello there").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    stdout.read_line(&mut printed).unwrap();
    assert_eq!(printed, "hello there\n");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    server.kill().unwrap();
    server.wait().unwrap();
}

/// The lines of a child's output, read on a thread so every wait on them is bounded.
fn lines(output: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The next JSON line of `stderr` whose state is `state`, failing after [`WITHIN`].
fn next_state(stderr: &std::sync::mpsc::Receiver<String>, state: &str) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) => {
                if let Ok(parsed) = serde_json::from_str::<Value>(&line) {
                    if parsed["state"] == state {
                        return parsed;
                    }
                }
            }
            Err(err) => panic!("no {state} state within {WITHIN:?}: {err}"),
        }
    }
}

#[test]
fn a_gap_is_a_json_state_line() {
    let addr = free_port();
    let mut server = serve(addr);
    let mut child = Command::new(HEARTWIRE)
        .args([
            "connect",
            &format!("ws://{addr}/ws"),
            "--sub",
            "chat",
            "--json",
        ])
        .args(["--reconnect-min", "10ms", "--reconnect-max", "50ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let states = lines(child.stderr.take().unwrap());
    next_state(&states, "open");
    // Its own line back: the subscription is in place and its position known.
    writeln!(stdin, "before").unwrap();
    let printed = lines(child.stdout.take().unwrap());
    assert_eq!(printed.recv_timeout(WITHIN).unwrap(), "before");
    server.kill().unwrap();
    server.wait().unwrap();
    next_state(&states, "reconnecting");
    // A new process: the channel starts a new epoch.
    let mut restarted = serve(addr);
    let gap = next_state(&states, "gap");
    assert_eq!(gap["channel"], "chat", "{gap}");
    assert_eq!(gap["reason"], "epoch_changed", "{gap}");
    assert!(gap["from_seq"].is_u64() && gap["to_seq"].is_u64(), "{gap}");
    drop(stdin);
    next_state(&states, "closed");
    assert!(child.wait().unwrap().success());
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

#[test]
fn help_explains_the_flags() {
    let output = Command::new(HEARTWIRE)
        .args(["connect", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--backup",
        "--sub",
        "--json",
        "--ping-interval",
        "--ping-timeout",
        "--reconnect-min",
        "--reconnect-max",
        "--max-attempts",
        "--token",
        "--token-command",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
