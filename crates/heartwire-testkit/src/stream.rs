//! Streams of numbered messages over many channels, and the ledger that judges what
//! subscribers received: the tool of the scale-out and fail-over tests.
//!
//! A [`Publisher`] sends `[channel, n]` on each of its channels at a set rate, each
//! publish with an id; a refused publish is sent again, with its id, until it is
//! acknowledged, so every message the stream holds was acknowledged once. A
//! [`Watcher`] subscribes to the channels on one node and records every
//! `subscribed` and `message` frame. [`judge`] then counts, per watcher and channel:
//!
//! - *gaps*: a `seq` past the next one with no `subscribed` frame in between; a
//!   silent loss;
//! - *repeats*: a `seq` at or below one already seen in the same epoch;
//! - *missing*: an acknowledged message that never arrived on a channel whose
//!   watcher was never told `recovered: false`; a silent loss too;
//! - *aliases*: one `(epoch, seq)` of a channel carrying two different messages,
//!   across every watcher: a new message taken for an old one.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{PATIENCE, Socket, connect};

/// What one publisher had acknowledged: per channel, the numbers.
pub type Acked = HashMap<String, Vec<u64>>;

/// A task publishing numbered messages until stopped.
#[derive(Debug)]
pub struct Publisher {
    stop: watch::Sender<bool>,
    task: JoinHandle<Acked>,
}

impl Publisher {
    /// Publishes on `channels` through the node at `url` (`ws://…/ws`), `rate`
    /// messages per second in all, round robin over the channels; `name` makes its
    /// publish ids unique.
    pub async fn start(url: &str, name: &str, channels: Vec<String>, rate: u32) -> Self {
        let socket = connect(url).await;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(publish(socket, name.to_owned(), channels, rate, stopped));
        Self { stop, task }
    }

    /// Stops sending new messages, waits until every one sent was acknowledged
    /// (sending refused ones again), and returns what was acknowledged.
    pub async fn finish(self) -> Acked {
        let _ = self.stop.send(true);
        tokio::time::timeout(PATIENCE * 6, self.task)
            .await
            .expect("every publish acknowledged in time")
            .expect("the publisher does not panic")
    }
}

/// How often the publisher sends a burst.
const TICK: Duration = Duration::from_millis(10);

/// How long a refused publish waits before it is sent again.
const RESEND_AFTER: Duration = Duration::from_millis(100);

/// Refused publishes sent again per tick at most, so that the publisher keeps
/// reading its answers.
const RESEND_PER_TICK: usize = 20;

async fn publish(
    socket: Socket,
    name: String,
    channels: Vec<String>,
    rate: u32,
    stopped: watch::Receiver<bool>,
) -> Acked {
    let (mut sink, mut stream) = socket.split();
    let mut next = vec![0u64; channels.len()];
    let mut turn = 0usize;
    // id → (channel index, n); refused ones wait in `resend`.
    let mut pending: HashMap<String, (usize, u64)> = HashMap::new();
    let mut resend: Vec<(Instant, String)> = Vec::new();
    let mut acked: Acked = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    let per_tick = (rate as f64 * TICK.as_secs_f64()).max(1.0);
    let mut owed = 0.0;
    let frame = |channel: &str, n: u64, id: &str| {
        Message::text(
            ClientFrame::Publish {
                channel: channel.to_owned(),
                data: json!([channel, n]),
                id: Some(id.to_owned()),
            }
            .encode(),
        )
    };
    loop {
        let stopping = *stopped.borrow();
        if stopping && pending.is_empty() {
            return acked;
        }
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let due: Vec<String> = {
                    resend.sort_by_key(|(at, _)| *at);
                    let ready = resend
                        .iter()
                        .take(RESEND_PER_TICK)
                        .take_while(|(at, _)| *at <= now)
                        .count();
                    resend.drain(..ready).map(|(_, id)| id).collect()
                };
                for id in due {
                    let (index, n) = pending[&id];
                    sink.send(frame(&channels[index], n, &id)).await.expect("the publisher's socket is open");
                }
                if stopping {
                    continue;
                }
                owed += per_tick;
                while owed >= 1.0 {
                    owed -= 1.0;
                    let index = turn % channels.len();
                    turn += 1;
                    next[index] += 1;
                    let id = format!("{name}-{index}-{}", next[index]);
                    pending.insert(id.clone(), (index, next[index]));
                    sink.send(frame(&channels[index], next[index], &id)).await.expect("the publisher's socket is open");
                }
            }
            message = stream.next() => {
                let Some(Ok(Message::Text(text))) = message else {
                    if matches!(message, Some(Ok(_))) {
                        continue;
                    }
                    panic!("the publisher's socket ended: {message:?}");
                };
                match ServerFrame::parse(text.as_str()) {
                    Ok(ServerFrame::Ack { id, .. }) => {
                        if let Some((index, n)) = pending.remove(&id) {
                            acked.entry(channels[index].clone()).or_default().push(n);
                        }
                    }
                    Ok(ServerFrame::Error { id: Some(id), .. }) if pending.contains_key(&id) => {
                        resend.push((Instant::now() + RESEND_AFTER, id));
                    }
                    _ => {}
                }
            }
            _ = async {
                let mut stopped = stopped.clone();
                let _ = stopped.wait_for(|stop| *stop).await;
            }, if !stopping => {}
        }
    }
}

/// One frame a watcher recorded on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// `subscribed`: the channel's epoch and latest `seq`, and `recovered`.
    Subscribed {
        /// The epoch.
        epoch: String,
        /// The latest `seq`.
        seq: u64,
        /// Whether missed messages follow (`None`: no position was asked).
        recovered: Option<bool>,
    },
    /// A message: its `seq` and number.
    Message {
        /// Its `seq`.
        seq: u64,
        /// The number the publisher gave it.
        n: u64,
    },
}

/// A subscriber that records everything it receives until stopped.
#[derive(Debug)]
pub struct Watcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<HashMap<String, Vec<Seen>>>,
}

impl Watcher {
    /// Subscribes to `channels` on the node at `url` (`ws://…/ws`); returns once every
    /// subscription is confirmed.
    pub async fn start(url: &str, channels: &[String]) -> Self {
        let mut socket = connect(url).await;
        for channel in channels {
            let subscribe = ClientFrame::Subscribe {
                channel: channel.clone(),
                since: None,
            };
            socket
                .send(Message::text(subscribe.encode()))
                .await
                .expect("the watcher's socket is open");
        }
        let mut seen: HashMap<String, Vec<Seen>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while seen.len() < channels.len() {
            let message = tokio::time::timeout_at(deadline, socket.next())
                .await
                .expect("every subscription confirmed in time");
            record(&mut seen, message);
        }
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(watch_until(socket, seen, stopped));
        Self { stop, task }
    }

    /// Reads on until nothing has come for a while, then returns what it saw.
    pub async fn finish(self) -> HashMap<String, Vec<Seen>> {
        let _ = self.stop.send(true);
        tokio::time::timeout(PATIENCE * 3, self.task)
            .await
            .expect("the watcher ends in time")
            .expect("the watcher does not panic")
    }
}

/// How long a stopped watcher keeps reading after the last frame.
const QUIET: Duration = Duration::from_millis(1500);

async fn watch_until(
    mut socket: Socket,
    mut seen: HashMap<String, Vec<Seen>>,
    mut stopped: watch::Receiver<bool>,
) -> HashMap<String, Vec<Seen>> {
    let mut stopping = false;
    loop {
        let wait = if stopping { QUIET } else { PATIENCE * 6 };
        tokio::select! {
            message = tokio::time::timeout(wait, socket.next()) => match message {
                Ok(message) => record(&mut seen, message),
                Err(_) if stopping => return seen,
                Err(_) => panic!("the watcher heard nothing for {wait:?}"),
            },
            _ = stopped.wait_for(|stop| *stop), if !stopping => stopping = true,
        }
    }
}

fn record(
    seen: &mut HashMap<String, Vec<Seen>>,
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) {
    let text = match message {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Close(frame))) => panic!("the watcher was closed: {frame:?}"),
        Some(Ok(_)) => return,
        other => panic!("the watcher's socket ended: {other:?}"),
    };
    match ServerFrame::parse(text.as_str()) {
        Ok(ServerFrame::Subscribed {
            channel,
            seq,
            epoch,
            recovered,
        }) => seen.entry(channel).or_default().push(Seen::Subscribed {
            epoch,
            seq,
            recovered,
        }),
        Ok(ServerFrame::Message { channel, seq, data }) => {
            let n = data[1].as_u64().expect("a numbered message");
            seen.entry(channel)
                .or_default()
                .push(Seen::Message { seq, n });
        }
        _ => {}
    }
}

/// What [`judge`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Messages every watcher received, in all.
    pub delivered: u64,
    /// `seq` gaps with no `subscribed` frame in between (silent losses).
    pub gaps: u64,
    /// Repeated `seq`s within one epoch.
    pub repeats: u64,
    /// Acknowledged messages missing on channels never reported `recovered: false`
    /// (silent losses).
    pub missing: u64,
    /// `(epoch, seq)` pairs of a channel that carried two different messages.
    pub aliases: u64,
    /// Channel-watcher pairs that were told `recovered: false`.
    pub told: u64,
}

impl Verdict {
    /// Silent losses: gaps and missing messages.
    pub fn silent_losses(&self) -> u64 {
        self.gaps + self.missing
    }
}

/// Judges what `watchers` saw against what the publishers had acknowledged. See the
/// [module docs](self).
pub fn judge(acked: &[Acked], watchers: &[HashMap<String, Vec<Seen>>]) -> Verdict {
    let mut all_acked: HashMap<&str, HashSet<u64>> = HashMap::new();
    for publisher in acked {
        for (channel, numbers) in publisher {
            all_acked
                .entry(channel)
                .or_default()
                .extend(numbers.iter().copied());
        }
    }
    let mut verdict = Verdict::default();
    let mut carried: HashMap<(String, String, u64), u64> = HashMap::new();
    for watcher in watchers {
        for (channel, frames) in watcher {
            let mut epoch = String::new();
            let mut next = 0u64;
            let mut told = false;
            let mut got: HashSet<u64> = HashSet::new();
            for frame in frames {
                match frame {
                    Seen::Subscribed {
                        epoch: new,
                        seq,
                        recovered,
                    } => {
                        epoch = new.clone();
                        next = seq + 1;
                        if *recovered == Some(false) {
                            told = true;
                        }
                    }
                    Seen::Message { seq, n } => {
                        verdict.delivered += 1;
                        if *seq > next {
                            verdict.gaps += 1;
                        }
                        if *seq < next {
                            verdict.repeats += 1;
                        }
                        next = next.max(seq + 1);
                        got.insert(*n);
                        let key = (channel.clone(), epoch.clone(), *seq);
                        match carried.get(&key) {
                            Some(known) if known != n => verdict.aliases += 1,
                            Some(_) => {}
                            None => {
                                carried.insert(key, *n);
                            }
                        }
                    }
                }
            }
            if told {
                verdict.told += 1;
            } else if let Some(expected) = all_acked.get(channel.as_str()) {
                verdict.missing += expected.difference(&got).count() as u64;
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(epoch: &str, seq: u64, recovered: Option<bool>) -> Seen {
        Seen::Subscribed {
            epoch: epoch.into(),
            seq,
            recovered,
        }
    }

    #[test]
    fn the_judge_counts_each_kind_of_fault() {
        let acked = vec![HashMap::from([
            ("a".to_owned(), vec![1, 2, 3]),
            ("b".to_owned(), vec![1, 2, 3]),
        ])];
        let clean = HashMap::from([(
            "a".to_owned(),
            vec![
                subscribed("e", 0, None),
                Seen::Message { seq: 1, n: 1 },
                Seen::Message { seq: 2, n: 2 },
                Seen::Message { seq: 3, n: 3 },
            ],
        )]);
        assert_eq!(
            judge(&acked, std::slice::from_ref(&clean)).silent_losses(),
            0
        );
        // A gap on b, silent; then an alias: seq 1 of e carried n 1 elsewhere.
        let faulty = HashMap::from([
            (
                "b".to_owned(),
                vec![
                    subscribed("e", 0, None),
                    Seen::Message { seq: 1, n: 1 },
                    Seen::Message { seq: 3, n: 3 },
                ],
            ),
            (
                "a".to_owned(),
                vec![subscribed("e", 0, None), Seen::Message { seq: 1, n: 2 }],
            ),
        ]);
        let verdict = judge(&acked, &[clean, faulty]);
        assert_eq!(
            (verdict.gaps, verdict.missing, verdict.aliases),
            (1, 3, 1),
            "{verdict:?}"
        );
        // Told recovered: false, the missing ones are no silent loss.
        let told = HashMap::from([(
            "b".to_owned(),
            vec![
                subscribed("e", 0, None),
                Seen::Message { seq: 1, n: 1 },
                subscribed("f", 0, Some(false)),
                Seen::Message { seq: 1, n: 3 },
            ],
        )]);
        let verdict = judge(&acked, &[told]);
        assert_eq!(
            (verdict.silent_losses(), verdict.told),
            (0, 1),
            "{verdict:?}"
        );
    }
}
