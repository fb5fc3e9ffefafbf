//! Half-open connections for real: `heartwire serve` in one network namespace, three
//! clients in another (the Rust client as `heartwire connect --json`, Python
//! `websockets` with its own RFC 6455 keepalive, heartwire.js in Chromium), the veth
//! path between them dropped silently by nftables in one direction or both, or one
//! side frozen with SIGSTOP. The server must reap every connection, and every client
//! must declare the server dead, within `ping_interval + ping_timeout` plus a slack of
//! two more such bounds for a shared two-core machine. Every test prints what it
//! measured (`cargo nextest` shows it: see `.config/nextest.toml`).
//!
//! The namespaces are the test's own (`heartwire_testkit::netns`), deleted even when
//! the test fails; without root the tests fail with a sentence saying so.

use std::time::{Duration, Instant};

use heartwire_testkit::netns::{Direction, Namespaces, SERVER_IP};
use heartwire_testkit::peer::repo_root;
use heartwire_testkit::timed::{Stream, Watched};
use serde_json::Value;

const HEARTWIRE: &str = env!("CARGO_BIN_EXE_heartwire");
const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(300);
const PORT: u16 = 8080;
/// The detection bound the server and every client promise.
const BOUND: Duration = PING_INTERVAL.saturating_add(PING_TIMEOUT);
/// How long Python `websockets` waits for the server's close frame after its
/// keepalive failed, before it reports the connection closed.
const PYTHON_CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
/// On top of the bound: scheduling on a shared two-core machine (two more bounds).
const SLACK: Duration = BOUND.saturating_mul(2);
/// How long starting a process and connecting may take (Chromium on a busy machine).
const START_WITHIN: Duration = Duration::from_secs(40);
/// How long the test waits for a detection before it fails (the bound is checked after).
const WATCH_FOR: Duration = Duration::from_secs(10);

/// One client process, which reports its states as JSON lines.
struct Client {
    name: &'static str,
    /// Its detection bound.
    bound: Duration,
    process: Watched,
    /// Its process group, when it must be frozen as a group (Chromium and its helpers).
    group: Option<u32>,
}

/// The `state` of a client's JSON line, if the line is one.
fn state(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    value.get("state")?.as_str().map(str::to_owned)
}

/// Whether a state says the client no longer takes the server for alive.
fn declares_dead(state: &str) -> bool {
    matches!(state, "reconnecting" | "closed" | "connecting")
}

/// The server in the server's namespace, its debug log (stdout and stderr) watched.
fn serve(namespaces: &Namespaces) -> Watched {
    let mut command = namespaces.in_server("sh");
    command
        .args(["-c", "exec \"$0\" \"$@\" 2>&1", HEARTWIRE, "serve"])
        .args(["--listen", &format!("{SERVER_IP}:{PORT}")])
        .args(["--ping-interval", "300ms", "--ping-timeout", "300ms"])
        .env("RUST_LOG", "heartwire_server=debug")
        .env("HEARTWIRE_LOG_FORMAT", "json")
        .env_remove("HEARTWIRE_LOG")
        .env_remove("HEARTWIRE_REDIS");
    let mut server = Watched::start("heartwire serve", command, Stream::Stdout);
    server
        .lines
        .wait_for("its address", Instant::now() + START_WITHIN, |line| {
            line.starts_with("heartwire listening on")
        });
    server
}

/// Starts the three clients in the clients' namespace and waits until each is open.
fn clients(namespaces: &Namespaces) -> Vec<Client> {
    let url = format!("ws://{SERVER_IP}:{PORT}/ws");
    let root = repo_root();

    let mut rust = namespaces.in_client(HEARTWIRE);
    rust.args(["connect", &url, "--json"])
        .args(["--reconnect-min", "100ms", "--reconnect-max", "300ms"])
        .env_remove("RUST_LOG")
        .env_remove("HEARTWIRE_LOG");
    let mut python = namespaces.in_client("python3");
    python
        .arg(root.join("tests/peers/keepalive_client.py"))
        .arg(&url)
        .args(["--ping-interval", "0.3", "--ping-timeout", "0.3"])
        .args(["--close-timeout", "0.3"]);
    let mut node = namespaces.in_client("node");
    node.arg(root.join("tests/browser/netns_client.mjs"))
        .arg(format!("http://{SERVER_IP}:{PORT}"))
        .env("HEARTWIRE_BIN", HEARTWIRE);

    let mut clients = vec![
        Client {
            name: "Rust client",
            bound: BOUND,
            process: Watched::start("heartwire connect", rust, Stream::Stderr),
            group: None,
        },
        // `websockets` reports the end once its close handshake has timed out too.
        Client {
            name: "Python websockets",
            bound: BOUND + PYTHON_CLOSE_TIMEOUT,
            process: Watched::start("keepalive_client.py", python, Stream::Stdout),
            group: None,
        },
        Client {
            name: "heartwire.js in Chromium",
            bound: BOUND,
            // Ended by closing its stdin: it closes Chromium, even one that has not yet
            // said which process group it is.
            process: Watched::start("netns_client.mjs", node, Stream::Stdout)
                .with_grace(Duration::from_secs(5)),
            group: None,
        },
    ];
    let deadline = Instant::now() + START_WITHIN;
    for client in &mut clients {
        if client.name.contains("Chromium") {
            let (_, line) =
                client
                    .process
                    .lines
                    .wait_for("Chromium's process group", deadline, |line| {
                        state(line).as_deref() == Some("browser")
                    });
            let pgid = serde_json::from_str::<Value>(&line).unwrap()["pgid"]
                .as_u64()
                .and_then(|pgid| u32::try_from(pgid).ok())
                .expect("a process group id");
            client.process.also_kill_group(pgid);
            client.group = Some(pgid);
        }
        client.process.lines.wait_for("open", deadline, |line| {
            state(line).as_deref() == Some("open")
        });
    }
    clients
}

/// One end's detection: who, how long after the fault, and the bound it promises.
struct Measured {
    who: String,
    after: Duration,
    bound: Duration,
}

/// When each client declared the server dead, measured from `since`.
fn detections(clients: &mut [Client], since: Instant) -> Vec<Measured> {
    clients
        .iter_mut()
        .map(|client| {
            let (at, _) =
                client
                    .process
                    .lines
                    .wait_for("declared death", since + WATCH_FOR, |line| {
                        state(line).as_deref().is_some_and(declares_dead)
                    });
            Measured {
                who: format!("{} declared the server dead", client.name),
                after: at.saturating_duration_since(since),
                bound: client.bound,
            }
        })
        .collect()
}

/// When the server ended each of `count` connections, measured from `since`, with
/// the reasons it logged; `bound` is the promise.
fn reaps(server: &mut Watched, count: usize, since: Instant, bound: Duration) -> Vec<Measured> {
    (0..count)
        .map(|_| {
            let (at, line) =
                server
                    .lines
                    .wait_for("a connection's end", since + WATCH_FOR, |line| {
                        line.contains("connection ended")
                    });
            let logged: Value = serde_json::from_str(&line).unwrap_or_default();
            let reason = logged["reason"].as_str().unwrap_or("no reason logged");
            Measured {
                who: format!("server ended a connection ({reason})"),
                after: at.saturating_duration_since(since),
                bound,
            }
        })
        .collect()
}

/// Prints every measured time and fails when one passed its bound plus the slack.
fn judge(what: &str, measured: &[Measured]) {
    println!(
        "{what} (ping_interval {} ms, ping_timeout {} ms, slack {} ms):",
        PING_INTERVAL.as_millis(),
        PING_TIMEOUT.as_millis(),
        SLACK.as_millis()
    );
    for one in measured {
        println!(
            "  {:<65} after {:>5} ms (bound {} ms)",
            one.who,
            one.after.as_millis(),
            one.bound.as_millis()
        );
    }
    let late: Vec<String> = measured
        .iter()
        .filter(|one| one.after > one.bound + SLACK)
        .map(|one| {
            format!(
                "{} after {} ms, allowed {} ms",
                one.who,
                one.after.as_millis(),
                (one.bound + SLACK).as_millis()
            )
        })
        .collect();
    assert!(late.is_empty(), "{what}: too late: {}", late.join("; "));
}

/// Drops the path `direction`, then measures the server's reaps and the clients'
/// detections.
fn dropped(tag: &str, direction: Direction) {
    let namespaces = Namespaces::create(tag);
    let mut server = serve(&namespaces);
    let mut clients = clients(&namespaces);
    namespaces.drop_path(direction);
    // From the moment the rules are in place (nft has committed them and exited).
    let since = Instant::now();
    let mut measured = detections(&mut clients, since);
    // The server still hears the clients when only its own packets are lost: it hears
    // their close frames, or, from a client that gave up in silence (its FIN stuck
    // behind data whose acknowledgements are lost), the start of the silence its own
    // bound counts from, which is at most the client's detection.
    let server_bound = match direction {
        Direction::Down => BOUND * 2,
        Direction::Up | Direction::Both => BOUND,
    };
    measured.extend(reaps(&mut server, clients.len(), since, server_bound));
    judge(&format!("path dropped {}", direction.label()), &measured);
}

#[test]
fn a_path_dropped_from_the_clients_to_the_server_is_found_by_both_ends() {
    dropped("up", Direction::Up);
}

#[test]
fn a_path_dropped_from_the_server_to_the_clients_is_found_by_both_ends() {
    dropped("down", Direction::Down);
}

#[test]
fn a_path_dropped_both_ways_is_found_by_both_ends() {
    dropped("both", Direction::Both);
}

#[test]
fn a_frozen_server_is_found_dead_by_every_client() {
    let namespaces = Namespaces::create("stopsrv");
    let server = serve(&namespaces);
    let mut clients = clients(&namespaces);
    server.signal("STOP");
    let since = Instant::now();
    let detected = detections(&mut clients, since);
    judge("server frozen with SIGSTOP", &detected);
}

#[test]
fn frozen_clients_are_reaped_by_the_server() {
    let namespaces = Namespaces::create("stopcli");
    let mut server = serve(&namespaces);
    let clients = clients(&namespaces);
    for client in &clients {
        match client.group {
            Some(pgid) => Watched::signal_group("STOP", pgid),
            None => client.process.signal("STOP"),
        }
    }
    let since = Instant::now();
    let reaped = reaps(&mut server, clients.len(), since, BOUND);
    judge("clients frozen with SIGSTOP", &reaped);
    // Chromium, running again, closes at once when its driver asks; the others are
    // killed, stopped or not.
    for pgid in clients.iter().filter_map(|client| client.group) {
        Watched::signal_group("CONT", pgid);
    }
}
