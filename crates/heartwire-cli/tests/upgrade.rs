//! Live upgrade (`--upgrade-socket`, `--take-over`): while messages flow to
//! subscribers and clients publish, a new `heartwire serve` takes over the listening
//! socket and every connection of the running one. No client sees a close, a
//! reconnect or a gap; every message arrives once and in order; the server's
//! liveness goes on. A new process that dies before confirming changes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PATIENCE, Running, heartwire};
use heartwire_client::{ClientConfig, Event, Incoming};

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
    command
}

/// Starts a client of `/ws` that records what it sees; `subscribe` to the channel.
fn client(addr: &str, subscribe: bool) -> (heartwire_client::Client, Shared) {
    let mut config = ClientConfig::new([format!("ws://{addr}/ws")]).unwrap();
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

    let subscribers: Vec<_> = (0..3).map(|_| client(&addr, true)).collect();
    for (_, seen) in &subscribers {
        until("the subscribers to open", || {
            seen.lock().unwrap().opens == 1
        })
        .await;
    }
    // The subscriptions are confirmed before the first tick: the client subscribes on open.
    tokio::time::sleep(Duration::from_millis(0)).await;
    let (publisher, published) = client(&addr, false);
    until("the publisher to open", || {
        published.lock().unwrap().opens == 1
    })
    .await;
    let (stop, ticks) = publish_ticks(publisher);
    let received = |at_least: usize| {
        subscribers
            .iter()
            .all(|(_, seen)| seen.lock().unwrap().seqs.len() >= at_least)
    };
    until("the first messages", || received(20)).await;

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
        let so_far = subscribers[0].1.lock().unwrap().seqs.len();
        until("messages after the upgrade", || received(so_far + 20)).await;
        // A new client is accepted by the new process.
        let (_late, late) = client(&addr, true);
        until("a client of the new process", || {
            late.lock().unwrap().opens == 1
        })
        .await;
        eprintln!("upgrade {round}: done");
    }

    stop.store(true, std::sync::atomic::Ordering::Release);
    let sent = ticks.await.unwrap();
    until("every publish to be acknowledged", || {
        published.lock().unwrap().acks == sent
    })
    .await;
    for (_, seen) in &subscribers {
        until("every message", || seen.lock().unwrap().seqs.len() >= sent).await;
    }
    let bound = (PING_INTERVAL + PING_TIMEOUT) / 2;
    for (index, (_, seen)) in subscribers.iter().enumerate() {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.opens, 1, "subscriber {index} reconnected");
        assert!(
            seen.disturbances.is_empty(),
            "subscriber {index}: {:?}",
            seen.disturbances
        );
        let expected: Vec<u64> = (1..=sent as u64).collect();
        assert_eq!(
            seen.seqs, expected,
            "subscriber {index}: lost, repeated or out of order"
        );
        assert!(
            seen.longest_silence < bound,
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
    assert_eq!(published.opens, 1, "the publisher reconnected");
    assert!(
        published.disturbances.is_empty(),
        "{:?}",
        published.disturbances
    );
}
