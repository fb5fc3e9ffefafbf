//! What the upgrade tests share: `heartwire serve` commands with an upgrade socket,
//! clients that record what they see, and [`Traffic`]: subscribers receiving what a
//! publisher sends every 10 ms, checked for closes, gaps and repeats.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heartwire_client::{ClientConfig, Event, Incoming};

use crate::common::{PATIENCE, heartwire};

/// What one client saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) opens: usize,
    /// Events that a client sees only when its connection is disturbed.
    disturbances: Vec<String>,
    seqs: Vec<u64>,
    last_message: Option<Instant>,
    longest_silence: Duration,
    acks: usize,
}

/// What a client saw, read by the test while the client runs.
pub(crate) type Shared = Arc<Mutex<Seen>>;

const CHANNEL: &str = "ticks";
/// The server's ping interval and timeout: a client would call the server dead after
/// their sum of silence.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn serve(socket: &Path, take_over: bool) -> Command {
    serve_with(socket, take_over, &[])
}

/// [`serve`] with more options.
pub(crate) fn serve_with(socket: &Path, take_over: bool, options: &[&str]) -> Command {
    serve_of(heartwire(), socket, take_over, options)
}

/// `command` (a `heartwire` binary) made a `heartwire serve` with the upgrade socket at
/// `socket`, taking over from it with `take_over`, and more `options`.
pub(crate) fn serve_of(
    mut command: Command,
    socket: &Path,
    take_over: bool,
    options: &[&str],
) -> Command {
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
pub(crate) fn client(addr: &str, subscribe: bool) -> (heartwire_client::Client, Shared) {
    client_of(
        ClientConfig::new([format!("ws://{addr}/ws")]).unwrap(),
        subscribe,
    )
}

/// [`client`] with `config`.
pub(crate) fn client_of(
    mut config: ClientConfig,
    subscribe: bool,
) -> (heartwire_client::Client, Shared) {
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
pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
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

pub(crate) fn socket_path(name: &str) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new(name);
    let path = dir.path().join("upgrade.sock");
    (dir, path)
}

pub(crate) mod tempdir {
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

/// Starts `count` subscribers and a publisher on `addr`, and waits for the first
/// messages.
pub(crate) async fn traffic(addr: &str, count: usize) -> Traffic {
    traffic_of(count, || {
        ClientConfig::new([format!("ws://{addr}/ws")]).unwrap()
    })
    .await
}

/// [`traffic`] of clients made with `config`.
pub(crate) async fn traffic_of(count: usize, config: impl Fn() -> ClientConfig) -> Traffic {
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
pub(crate) struct Traffic {
    subscribers: Vec<(heartwire_client::Client, Shared)>,
    published: Shared,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ticks: tokio::task::JoinHandle<usize>,
}

impl Traffic {
    pub(crate) fn received(&self, at_least: usize) -> bool {
        self.subscribers
            .iter()
            .all(|(_, seen)| seen.lock().unwrap().seqs.len() >= at_least)
    }

    fn received_so_far(&self) -> usize {
        self.subscribers[0].1.lock().unwrap().seqs.len()
    }

    /// Waits until twenty more messages than so far reached every subscriber: `what`
    /// names them in a timeout.
    pub(crate) async fn twenty_more(&self, what: &str) {
        let so_far = self.received_so_far();
        until(what, || self.received(so_far + 20)).await;
    }

    /// Stops publishing, waits for every message, and checks that no client saw
    /// anything but its messages, each once and in order, on its first connection.
    pub(crate) async fn check(self) {
        self.check_opens(1).await;
    }

    /// For clients closed once with 1012: waits until each has come back and twenty
    /// more messages reached every subscriber, then [`check_opens`](Self::check_opens)
    /// with two connections each.
    pub(crate) async fn check_back_after_1012(self) {
        for (_, seen) in &self.subscribers {
            until("the subscribers to come back", || {
                seen.lock().unwrap().opens == 2
            })
            .await;
        }
        self.twenty_more("messages after the fallback").await;
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
