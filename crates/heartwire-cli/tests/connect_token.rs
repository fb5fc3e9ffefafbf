//! `heartwire connect --token-command` against `heartwire serve` verifying JWTs: the
//! command (PyJWT) is run for the connection and again before the token expires, so
//! the connection outlives its first token; a refused token ends the command with one
//! sentence.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

const HEARTWIRE: &str = env!("CARGO_BIN_EXE_heartwire");
const WITHIN: Duration = Duration::from_secs(15);
const SECRET: &str = "a shared secret of at least thirty-two bytes";

/// A shell command that prints a token for `ada` living `seconds`, signed by PyJWT,
/// and appends a line to `calls` each time it runs.
fn mint_command(seconds: u64, secret: &str, calls: &std::path::Path) -> String {
    format!(
        "echo run >> '{}'; python3 -c \"import jwt, time; \
         print(jwt.encode({{'sub': 'ada', 'exp': int(time.time()) + {seconds}}}, '{secret}', algorithm='HS256'))\"",
        calls.display()
    )
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `heartwire serve` verifying HS256 tokens, with a short grace after expiry.
fn serve(addr: SocketAddr) -> Child {
    let child = Command::new(HEARTWIRE)
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--token-grace",
            "500ms",
        ])
        .env("HEARTWIRE_JWT_SECRET", SECRET)
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

fn lines(output: impl std::io::Read + Send + 'static) -> Receiver<String> {
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

/// The JSON state lines of `stderr` until `state` (included), failing after `WITHIN`.
fn states_until(stderr: &Receiver<String>, state: &str) -> Vec<Value> {
    let deadline = Instant::now() + WITHIN;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stderr
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {state} state; seen {seen:#?}"));
        if let Ok(parsed) = serde_json::from_str::<Value>(&line) {
            let done = parsed["state"] == state;
            seen.push(parsed);
            if done {
                return seen;
            }
        }
    }
}

#[test]
fn the_token_command_is_run_again_before_the_token_expires() {
    let dir = std::env::temp_dir().join(format!("heartwire-token-command-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calls = dir.join("calls");
    let addr = free_port();
    let mut server = serve(addr);
    let mut child = Command::new(HEARTWIRE)
        .args(["connect", &format!("ws://{addr}/ws"), "--json"])
        .args(["--token-command", &mint_command(4, SECRET, &calls)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let opened = Instant::now();
    let mut seen = states_until(&stderr, "open");
    // A 4 s token (3 to 4 s left at hello) is refreshed at half its life, twice
    // before the first one's end plus the grace has long passed.
    seen.extend(states_until(&stderr, "refreshed"));
    seen.extend(states_until(&stderr, "refreshed"));
    assert!(opened.elapsed() > Duration::from_secs(3));
    assert!(
        !seen.iter().any(|state| state["state"] == "reconnecting"),
        "{seen:#?}"
    );
    let runs = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert_eq!(runs, 3, "one run to connect, one per refresh");
    // The end of stdin ends nothing; Ctrl-C closes.
    drop(stdin);
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    states_until(&stderr, "closed");
    assert!(child.wait().unwrap().success());
    server.kill().unwrap();
    server.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_token_ends_the_command_with_one_sentence() {
    let dir = std::env::temp_dir().join(format!("heartwire-token-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calls = dir.join("calls");
    let addr = free_port();
    let mut server = serve(addr);
    let mut child = Command::new(HEARTWIRE)
        .args(["connect", &format!("ws://{addr}/ws")])
        .args([
            "--token-command",
            &mint_command(60, "another secret of at least thirty-two bytes", &calls),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stdin stays open: the command ends on the refusal, not on its input's end.
    let _stdin = child.stdin.take();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("heartwire: the server refused the credentials: ")
            && last.ends_with("(close 4401)"),
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|line| line.starts_with("closed:")),
        "the end is said once: {stderr}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
