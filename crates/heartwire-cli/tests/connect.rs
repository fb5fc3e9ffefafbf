//! `heartwire connect` and the client library against `heartwire serve` processes:
//! a server killed and restarted on the same port (its channels start a new epoch, a
//! gap the client reports), the command as a tool for scripts (`--once`, lines read
//! before the open, stdin's end, attempts), and its answers to bad input.

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
    serve_with(addr, &[])
}

/// [`serve`] with more arguments.
fn serve_with(addr: SocketAddr, args: &[&str]) -> Child {
    let child = Command::new(HEARTWIRE)
        .args(["serve", "--listen", &addr.to_string()])
        .args(args)
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

/// Runs `heartwire connect` with stdin held open, until it exits on its own.
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
    // Said once, as the closed state.
    assert!(!stderr.contains("heartwire:"), "{stderr}");
    let closed: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(closed["state"], "closed");
    let reason = closed["reason"].as_str().unwrap();
    assert!(reason.starts_with("no server can work"), "{stderr}");
    assert!(reason.contains("HTTP 200"), "{stderr}");
}

#[test]
fn max_attempts_n_means_n_attempts_counted_from_1() {
    let addr = free_port();
    let args = [
        &format!("ws://{addr}/ws"),
        "--reconnect-min",
        "10ms",
        "--reconnect-max",
        "20ms",
        "--max-attempts",
        "3",
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let output = connect(&json_args);
    // A server that may come up is retried until the attempts run out.
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let states: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("only JSON lines"))
        .collect();
    let attempts = |state: &str| -> Vec<u64> {
        states
            .iter()
            .filter(|line| line["state"] == state)
            .map(|line| line["attempt"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(attempts("connecting"), [1, 2, 3], "{stderr}");
    assert_eq!(attempts("reconnecting"), [2, 3], "{stderr}");
    assert_eq!(states[0]["url"], format!("ws://{addr}/ws"));
    assert!(states[1]["delay_ms"].as_u64().unwrap() <= 10);
    assert!(
        states[1]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot reach")
    );
    // The end is said once: the closed state, last.
    assert_eq!(states.len(), 6, "{stderr}");
    let closed = states.last().unwrap();
    assert_eq!(closed["state"], "closed");
    assert!(
        closed["reason"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempts; the last failed: cannot reach"),
        "{stderr}"
    );

    let output = connect(&args);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let connecting: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("connecting to"))
        .collect();
    assert_eq!(connecting.len(), 3, "{stderr}");
    assert!(connecting[0].ends_with("(attempt 1)"), "{stderr}");
    assert!(connecting[2].ends_with("(attempt 3)"), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("heartwire: gave up after 3 attempts; the last failed"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("gave up").count(), 1, "{stderr}");
}

#[test]
fn an_unresolvable_host_is_one_sentence_at_once() {
    // .invalid never resolves (RFC 2606).
    let started = Instant::now();
    let output = connect(&["ws://host.invalid:8080/ws"]);
    let took = started.elapsed();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.matches("connecting to").count(), 1, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("heartwire: no server can work: cannot resolve the host of"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    // One lookup, no retry: well within the first attempt's resolver timeout.
    assert!(took < Duration::from_secs(5), "took {took:?}");
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
    interrupt(&child);
    assert!(child.wait().unwrap().success());
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Sends SIGINT (Ctrl-C) to `child`.
fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `heartwire connect ARGS` with its stdin, stdout and stderr piped; stdout and
/// stderr as lines read on threads.
fn spawn_connect(args: &[&str]) -> (Child, Lines, Lines) {
    let mut child = Command::new(HEARTWIRE)
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    (child, stdout, stderr)
}

type Lines = std::sync::mpsc::Receiver<String>;

/// Waits for `child` to exit, killing it and failing after [`WITHIN`].
fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            panic!("heartwire connect did not exit within {WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every line left in `lines` once the process that wrote them exited.
fn rest(lines: &Lines) -> Vec<String> {
    let mut rest = Vec::new();
    while let Ok(line) = lines.recv_timeout(WITHIN) {
        rest.push(line);
    }
    rest
}

#[test]
fn lines_read_before_the_open_are_published() {
    let addr = free_port();
    let (mut child, stdout, stderr) = spawn_connect(&[
        &format!("ws://{addr}/ws"),
        "--sub",
        "chat",
        "--json",
        "--reconnect-min",
        "10ms",
        "--reconnect-max",
        "50ms",
    ]);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "early").unwrap();
    // No server yet: the line was read while nothing was open.
    next_state(&stderr, "reconnecting");
    let mut server = serve(addr);
    next_state(&stderr, "published");
    assert_eq!(stdout.recv_timeout(WITHIN).unwrap(), "early");
    interrupt(&child);
    assert!(exit_of(&mut child).success());
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn listening_goes_on_after_stdin_ends_and_once_publishes_until_acknowledged() {
    let addr = free_port();
    let mut server = serve(addr);
    let url = format!("ws://{addr}/ws");
    let (mut listener, stdout, stderr) = spawn_connect(&[&url, "--sub", "chat", "--json"]);
    drop(listener.stdin.take());
    next_state(&stderr, "subscribed");

    // A one-shot publish from another process: exit 0 once acknowledged.
    let mut once = Command::new(HEARTWIRE)
        .args(["connect", &url, "--sub", "chat", "--once", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = once.stdin.take().unwrap();
    stdin.write_all(b"one\n{\"n\":2}\n").unwrap();
    drop(stdin);
    let once_stderr = lines(once.stderr.take().unwrap());
    let once_stdout = lines(once.stdout.take().unwrap());
    assert!(exit_of(&mut once).success());
    let states: Vec<Value> = rest(&once_stderr)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let published: Vec<&Value> = states
        .iter()
        .filter(|state| state["state"] == "published")
        .collect();
    assert_eq!(published.len(), 2, "{states:?}");
    assert!(published.iter().all(|state| state["channel"] == "chat"));
    assert_eq!(states.last().unwrap()["state"], "closed");
    assert!(
        rest(&once_stdout).is_empty(),
        "not subscribed: nothing printed"
    );

    // The listener, its stdin long closed, prints them.
    assert_eq!(stdout.recv_timeout(WITHIN).unwrap(), "one");
    assert_eq!(stdout.recv_timeout(WITHIN).unwrap(), r#"{"n":2}"#);
    assert!(listener.try_wait().unwrap().is_none());
    interrupt(&listener);
    next_state(&stderr, "closed");
    assert!(exit_of(&mut listener).success());
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_server_that_is_not_heartwire_gets_lines_as_text() {
    let addr = free_port();
    let mut server = serve(addr);
    // `/echo` sends no `hello`: a plain WebSocket server that echoes.
    let url = format!("ws://{addr}/echo");
    let (mut listener, stdout, _stderr) = spawn_connect(&[&url, "--sub", "chat"]);
    // Read before the connection is known to be plain: it waits, then goes as text.
    writeln!(listener.stdin.take().unwrap(), "as it is").unwrap();
    assert_eq!(stdout.recv_timeout(WITHIN).unwrap(), "as it is");
    interrupt(&listener);
    assert!(exit_of(&mut listener).success());

    // Nothing acknowledges text: --once ends once the lines are sent.
    let (mut once, _stdout, stderr) = spawn_connect(&[&url, "--sub", "chat", "--once"]);
    writeln!(once.stdin.take().unwrap(), "sent").unwrap();
    assert!(exit_of(&mut once).success());
    assert_eq!(
        rest(&stderr).last().unwrap(),
        "closed: closed by the caller"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_refused_publish_goes_to_stderr_and_fails_a_one_shot() {
    let addr = free_port();
    let rules = std::env::temp_dir().join(format!("heartwire-connect-{}.toml", addr.port()));
    std::fs::write(
        &rules,
        "[[channels]]\npattern = \"news\"\nsubscribe = \"anyone\"\npublish = \"server\"\n",
    )
    .unwrap();
    let mut server = serve_with(addr, &["--config", rules.to_str().unwrap()]);
    let url = format!("ws://{addr}/ws");

    let output = Command::new(HEARTWIRE)
        .args(["connect", &url, "--sub", "news", "--once"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"hi\n")?;
            exit_of(&mut child);
            child.wait_with_output()
        })
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("heartwire: the server refused publish ")
            && last.contains(" on news (forbidden): "),
        "{stderr}"
    );
    assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");

    // Listening, the refusal is a state on stderr; stdout carries channel data only.
    let (mut listener, stdout, stderr) = spawn_connect(&[&url, "--sub", "news", "--json"]);
    writeln!(listener.stdin.take().unwrap(), "hi").unwrap();
    let refused = next_state(&stderr, "refused");
    assert_eq!(refused["channel"], "news", "{refused}");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    interrupt(&listener);
    assert!(exit_of(&mut listener).success());
    assert!(rest(&stdout).is_empty());
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_file(rules);
}

#[test]
fn a_one_shot_publish_that_is_not_acknowledged_in_time_fails() {
    let addr = free_port();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (mut child, stdout, stderr) = spawn_connect(&[
        &format!("ws://{addr}/ws"),
        "--sub",
        "chat",
        "--once",
        "--timeout",
        "300ms",
    ]);
    writeln!(child.stdin.take().unwrap(), "lost").unwrap();
    assert!(!exit_of(&mut child).success());
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + WITHIN / 2,
        "took {took:?}"
    );
    let stderr = rest(&stderr);
    // On a busy machine the deadline may pass before the line was even read.
    let last = stderr.last().unwrap();
    assert!(
        last.starts_with("heartwire: timed out after 300 ms: 0 of ")
            && last.ends_with(" publishes acknowledged, no connection opened"),
        "{stderr:?}"
    );
    assert_eq!(
        stderr
            .iter()
            .filter(|line| line.contains("timed out"))
            .count(),
        1
    );
    assert!(rest(&stdout).is_empty());
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
    interrupt(&child);
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
        "--once",
        "--timeout",
        "--token",
        "--token-command",
        "--token-in",
        "--reconnect-fixed",
        "--outbox",
        "--ca",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn reconnect_fixed_waits_the_same_delay_every_time() {
    let addr = free_port();
    let output = connect(&[
        &format!("ws://{addr}/ws"),
        "--reconnect-fixed",
        "30ms",
        "--max-attempts",
        "3",
        "--json",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let delays: Vec<u64> = stderr
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("only JSON lines"))
        .filter(|line| line["state"] == "reconnecting")
        .map(|line| line["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(delays, [30, 30], "{stderr}");
}

#[test]
fn token_in_puts_the_token_where_it_is_asked() {
    use std::io::{BufRead, BufReader};
    for (place, in_query, in_header) in [
        ("query", true, false),
        ("header", false, true),
        ("both", true, true),
    ] {
        // A TCP server that reads the handshake request and answers 403, so the
        // client stops at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            let mut lines = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if lines.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                request.push_str(&line);
            }
            use std::io::Write;
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
            request
        });
        let output = connect(&[
            &format!("ws://{addr}/ws"),
            "--token",
            "tok-123",
            "--token-in",
            place,
        ]);
        assert!(!output.status.success());
        let request = reader.join().unwrap();
        let first = request.lines().next().unwrap_or_default().to_owned();
        assert_eq!(
            first.contains("token=tok-123"),
            in_query,
            "{place}: {request}"
        );
        assert_eq!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer tok-123"),
            in_header,
            "{place}: {request}"
        );
    }
}

#[test]
fn past_the_outbox_a_line_is_refused_with_a_sentence() {
    use std::io::Write;
    // Nothing listens: lines wait for a connection that does not come.
    let addr = free_port();
    let (mut child, _stdout, stderr) = spawn_connect(&[
        &format!("ws://{addr}/ws"),
        "--sub",
        "room",
        "--reconnect-fixed",
        "1s",
        "--outbox",
        "2",
    ]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\nthree\n").unwrap();
    let status = exit_of(&mut child);
    assert!(!status.success());
    let said = rest(&stderr).join("\n");
    assert!(
        said.contains("the outbox is full (2 messages wait for a connection)"),
        "{said}"
    );
}
