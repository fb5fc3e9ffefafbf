//! Live upgrade (`--upgrade-socket`, `--take-over`): while messages flow to
//! subscribers and clients publish, a new `heartwire serve` takes over the listening
//! socket and every connection of the running one. No client sees a close, a
//! reconnect or a gap; every message arrives once and in order; the server's
//! liveness goes on. A new process that dies before confirming changes nothing.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PATIENCE, Running, heartwire};
use heartwire_client::{ClientConfig, Event, Incoming};
use tokio::io::AsyncBufReadExt;

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    opens: usize,
    /// Events that a client sees only when its connection is disturbed.
    disturbances: Vec<String>,
    seqs: Vec<u64>,
    last_message: Option<Instant>,
    longest_silence: Duration,
    acks: usize,
}

/// What a client saw, read by the test while the client runs.
type Shared = Arc<Mutex<Seen>>;

const CHANNEL: &str = "ticks";
/// The server's ping interval and timeout: a client would call the server dead after
/// their sum of silence.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

fn serve(socket: &Path, take_over: bool) -> Command {
    serve_with(socket, take_over, &[])
}

/// [`serve`] with more options.
fn serve_with(socket: &Path, take_over: bool, options: &[&str]) -> Command {
    let mut command = heartwire();
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ping-interval",
        "1s",
        "--ping-timeout",
        "2s",
    ]);
    command.arg("--upgrade-socket").arg(socket);
    if take_over {
        command.arg("--take-over").arg(socket);
    }
    command.args(options);
    command
}

/// Starts a client of `/ws` that records what it sees; `subscribe` to the channel.
fn client(addr: &str, subscribe: bool) -> (heartwire_client::Client, Shared) {
    client_of(
        ClientConfig::new([format!("ws://{addr}/ws")]).unwrap(),
        subscribe,
    )
}

/// [`client`] with `config`.
fn client_of(mut config: ClientConfig, subscribe: bool) -> (heartwire_client::Client, Shared) {
    config.report_acks = true;
    if subscribe {
        config.subscriptions = vec![CHANNEL.to_owned()];
    }
    let (client, mut events) = heartwire_client::connect(config).unwrap();
    let seen = Shared::default();
    let recorder = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let mut seen = recorder.lock().unwrap();
            match event {
                Event::Connecting { .. } | Event::Subscribed { .. } => {}
                Event::Open { .. } => seen.opens += 1,
                Event::Published { .. } => seen.acks += 1,
                Event::Message(Incoming::Channel { seq, .. }) => {
                    let now = Instant::now();
                    if let Some(last) = seen.last_message {
                        seen.longest_silence = seen.longest_silence.max(now - last);
                    }
                    seen.last_message = Some(now);
                    seen.seqs.push(seq);
                }
                other => seen.disturbances.push(format!("{other:?}")),
            }
        }
    });
    (client, seen)
}

/// Waits until `done` holds, failing after [`PATIENCE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes on the channel every 10 ms until stopped; returns how many it sent.
fn publish_ticks(
    publisher: heartwire_client::Client,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<usize>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut sent = 0;
        while !stopped.load(std::sync::atomic::Ordering::Acquire) {
            publisher
                .publish(CHANNEL, serde_json::json!({ "tick": sent }))
                .unwrap();
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    });
    (stop, task)
}

fn socket_path(name: &str) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new(name);
    let path = dir.path().join("upgrade.sock");
    (dir, path)
}

mod tempdir {
    //! A directory removed when dropped.
    use std::path::{Path, PathBuf};

    pub(crate) struct Dir(PathBuf);

    impl Dir {
        pub(crate) fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("heartwire-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

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
        let so_far = traffic.received_so_far();
        until("messages after the upgrade", || {
            traffic.received(so_far + 20)
        })
        .await;
        // A new client is accepted by the new process.
        let (_late, late) = client(&addr, true);
        until("a client of the new process", || {
            late.lock().unwrap().opens == 1
        })
        .await;
        eprintln!("upgrade {round}: done");
    }

    traffic.check().await;
    drop(old);
}

/// Starts `count` subscribers and a publisher on `addr`, and waits for the first
/// messages.
async fn traffic(addr: &str, count: usize) -> Traffic {
    traffic_of(count, || {
        ClientConfig::new([format!("ws://{addr}/ws")]).unwrap()
    })
    .await
}

/// [`traffic`] of clients made with `config`.
async fn traffic_of(count: usize, config: impl Fn() -> ClientConfig) -> Traffic {
    let subscribers: Vec<_> = (0..count).map(|_| client_of(config(), true)).collect();
    for (_, seen) in &subscribers {
        until("the subscribers to open", || {
            seen.lock().unwrap().opens == 1
        })
        .await;
    }
    let (publisher, published) = client_of(config(), false);
    until("the publisher to open", || {
        published.lock().unwrap().opens == 1
    })
    .await;
    let (stop, ticks) = publish_ticks(publisher);
    let traffic = Traffic {
        subscribers,
        published,
        stop,
        ticks,
    };
    until("the first messages", || traffic.received(20)).await;
    traffic
}

/// Subscribers receiving what a publisher sends every 10 ms.
struct Traffic {
    subscribers: Vec<(heartwire_client::Client, Shared)>,
    published: Shared,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ticks: tokio::task::JoinHandle<usize>,
}

impl Traffic {
    fn received(&self, at_least: usize) -> bool {
        self.subscribers
            .iter()
            .all(|(_, seen)| seen.lock().unwrap().seqs.len() >= at_least)
    }

    fn received_so_far(&self) -> usize {
        self.subscribers[0].1.lock().unwrap().seqs.len()
    }

    /// Stops publishing, waits for every message, and checks that no client saw
    /// anything but its messages, each once and in order, on its first connection.
    async fn check(self) {
        self.check_opens(1).await;
    }

    /// For clients closed once with 1012: waits until each has come back and twenty
    /// more messages reached every subscriber, then [`check_opens`](Self::check_opens)
    /// with two connections each.
    async fn check_back_after_1012(self) {
        for (_, seen) in &self.subscribers {
            until("the subscribers to come back", || {
                seen.lock().unwrap().opens == 2
            })
            .await;
        }
        let so_far = self.received_so_far();
        until("messages after the fallback", || self.received(so_far + 20)).await;
        self.check_opens(2).await;
    }

    /// [`check`](Self::check) for clients that each opened `opens` connections (those
    /// after the first closed with 1012 and a reconnect hint).
    async fn check_opens(mut self, opens: usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let sent = (&mut self.ticks).await.unwrap();
        let published = &self.published;
        until("every publish to be acknowledged", || {
            published.lock().unwrap().acks == sent
        })
        .await;
        let deadline = Instant::now() + PATIENCE;
        while !self.received(sent) {
            if Instant::now() > deadline {
                let missing: Vec<Vec<u64>> = self
                    .subscribers
                    .iter()
                    .map(|(_, seen)| {
                        let seen = seen.lock().unwrap();
                        (1..=sent as u64)
                            .filter(|seq| !seen.seqs.contains(seq))
                            .collect()
                    })
                    .collect();
                let disturbances: Vec<Vec<String>> = self
                    .subscribers
                    .iter()
                    .map(|(_, seen)| seen.lock().unwrap().disturbances.clone())
                    .collect();
                panic!(
                    "of {sent} messages, the subscribers miss {missing:?}; they saw {disturbances:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let bound = (PING_INTERVAL + PING_TIMEOUT) / 2;
        for (index, (_, seen)) in self.subscribers.iter().enumerate() {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.opens, opens, "subscriber {index}: connections");
            assert!(
                seen.disturbances
                    .iter()
                    .all(|seen| seen.starts_with("Reconnecting")),
                "subscriber {index}: {:?}",
                seen.disturbances
            );
            let expected: Vec<u64> = (1..=sent as u64).collect();
            assert_eq!(
                seen.seqs, expected,
                "subscriber {index}: lost, repeated or out of order"
            );
            assert!(
                opens > 1 || seen.longest_silence < bound,
                "subscriber {index} was silent for {:?}",
                seen.longest_silence
            );
            eprintln!(
                "subscriber {index}: {} messages, longest silence {:?}",
                seen.seqs.len(),
                seen.longest_silence
            );
        }
        let published = published.lock().unwrap();
        assert_eq!(published.opens, opens, "the publisher's connections");
        assert!(
            published
                .disturbances
                .iter()
                .all(|seen| seen.starts_with("Reconnecting")),
            "{:?}",
            published.disturbances
        );
    }
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

    let so_far = traffic.received_so_far();
    until("messages after the failed upgrade", || {
        traffic.received(so_far + 20)
    })
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
    assert!(old.wait().success());
    old = new;
    let so_far = traffic.received_so_far();
    until("messages after the upgrade", || {
        traffic.received(so_far + 20)
    })
    .await;
    traffic.check().await;
    drop(old);
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
    let mut old = Running::start(serve_with(&socket, false, &options));
    let traffic = traffic(&old.addr, 2).await;
    let new = Running::start(serve_with(&socket, true, &options));
    assert!(old.wait().success());
    old = new;
    let so_far = traffic.received_so_far();
    until("messages after the upgrade", || {
        traffic.received(so_far + 20)
    })
    .await;
    traffic.check().await;
    drop(old);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_new_process_does_not_know_falls_back_to_1012_and_resume() {
    let redis = heartwire_testkit::redis::TestRedis::start();
    let url = redis.url();
    let options = ["--redis", url.as_str(), "--shutdown-spread", "100ms"];
    let (dir, socket) = socket_path("upgrade-version");
    let mut old = Running::start(serve_with(&socket, false, &options));
    let traffic = traffic(&old.addr, 2).await;

    // The new process reaches the old one through a relay that claims version 9999.
    let relayed = dir.path().join("relay.sock");
    let script = heartwire_testkit::peer::repo_root().join("tests/peers/handover_relay.py");
    let mut relay = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&relayed)
        .arg(&socket)
        .args(["--version", "9999"])
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
    let new = Running::start(new_process);
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
