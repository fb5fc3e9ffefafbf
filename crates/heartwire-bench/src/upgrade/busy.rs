//! The busy clients of the upgrade scenario: heartwire clients (the crate's own, which
//! resume from their position after a close), publishers each sending on its own
//! channel at a fixed rate and subscribers spread over those channels.
//!
//! Every message carries its publisher, its number in that publisher's stream, the
//! time it was published and the phase it was published in, so that each subscriber
//! counts what it lost (a number skipped) and what it saw twice (a number not past the
//! last one), and records the publish→receive latency in the histogram of the steady
//! window or of the swap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use heartwire_client::{self as client, ClientConfig, Event, Incoming};
use serde_json::json;

use crate::histogram::Histogram;

/// The phase a message was published in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// Before the steady window: clients still settling.
    Warmup = 0,
    /// The steady state before the swap.
    Steady = 1,
    /// From the swap's start until its end (the old process gone and the new one
    /// accepting, and for a restart every busy client back).
    Swap = 2,
    /// After the swap.
    After = 3,
}

/// What the busy clients saw, summed over them.
pub(super) struct Tally {
    epoch: Instant,
    phase: AtomicU8,
    /// Latencies of the messages of the steady window and of those on their way
    /// during the swap ([`Tally::record`]).
    pub(super) steady: Histogram,
    pub(super) swap: Histogram,
    pub(super) opens: AtomicU64,
    /// Open connections that ended (`Reconnecting` or `Closed` after an `Open`).
    pub(super) closes: AtomicU64,
    pub(super) received: AtomicU64,
    /// Numbers a subscriber skipped (messages lost).
    pub(super) lost: AtomicU64,
    /// Messages whose number was not past the last one a subscriber received.
    pub(super) repeated: AtomicU64,
    /// `Gap` events: the server told a subscriber it cannot fill a hole.
    pub(super) gaps: AtomicU64,
    pub(super) acks: AtomicU64,
}

impl Tally {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Warmup as u8),
            steady: Histogram::new(),
            swap: Histogram::new(),
            opens: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            repeated: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            acks: AtomicU64::new(0),
        }
    }

    pub(super) fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records the latency of a message published at `published_at` in phase
    /// `published_in`, received now: in the steady window's histogram when it was
    /// published and received in it, in the swap's when any of its way overlapped the
    /// swap (published or received during it, or published before and received after).
    fn record(&self, published_in: u64, published_at: u64) {
        let latency = Duration::from_micros(self.micros().saturating_sub(published_at));
        let received_in = u64::from(self.phase.load(Ordering::Acquire));
        let (steady, swap) = (Phase::Steady as u64, Phase::Swap as u64);
        if published_in == steady && received_in == steady {
            self.steady.record(latency);
        } else if published_in <= swap && received_in >= swap && published_in >= steady {
            self.swap.record(latency);
        }
    }
}

/// How the busy clients are made up.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub(super) port: u16,
    pub(super) publishers: usize,
    pub(super) subscribers: usize,
    /// Publishes per second of each publisher.
    pub(super) rate: f64,
}

/// What the busy clients saw, once they are closed.
pub(super) struct Finished {
    pub(super) tally: Arc<Tally>,
    /// Connections that ended before this bench closed the clients.
    pub(super) closes: u64,
}

/// The running busy clients.
pub(super) struct Busy {
    pub(super) tally: Arc<Tally>,
    subscribers: Vec<(client::Client, Arc<Follower>)>,
    publishers: Vec<client::Client>,
    stop: Arc<AtomicBool>,
    streams: Vec<tokio::task::JoinHandle<u64>>,
    followers: Vec<tokio::task::JoinHandle<()>>,
}

/// The number of the last message a subscriber received from its channel's publisher.
struct Follower {
    publisher: usize,
    last: AtomicU64,
}

fn channel(publisher: usize) -> String {
    format!("upgrade-{publisher}")
}

impl Busy {
    /// Connects every client, waits (within `patience`) for all to open, and starts
    /// publishing.
    pub(super) async fn start(plan: Plan, patience: Duration) -> anyhow::Result<Self> {
        let url = format!("ws://127.0.0.1:{}/ws", plan.port);
        let tally = Arc::new(Tally::new());
        let mut followers = Vec::new();
        let mut subscribers = Vec::new();
        for index in 0..plan.subscribers {
            let publisher = index % plan.publishers.max(1);
            let mut config = ClientConfig::new([url.as_str()])?;
            config.subscriptions = vec![channel(publisher)];
            let (client, events) = client::connect(config)?;
            let follower = Arc::new(Follower {
                publisher,
                last: AtomicU64::new(0),
            });
            followers.push(tokio::spawn(follow(
                events,
                tally.clone(),
                Some(follower.clone()),
            )));
            subscribers.push((client, follower));
        }
        let mut publishers = Vec::new();
        for _ in 0..plan.publishers {
            let mut config = ClientConfig::new([url.as_str()])?;
            config.report_acks = true;
            // Publishes wait in the client while it is away (a restart): room for
            // minutes of them at the bench's rates.
            config.outbox_capacity = config.outbox_capacity.max(4096);
            let (client, events) = client::connect(config)?;
            followers.push(tokio::spawn(follow(events, tally.clone(), None)));
            publishers.push(client);
        }
        let total = u64::try_from(plan.subscribers + plan.publishers)?;
        wait_until(patience, "the busy clients to open", || {
            tally.opens.load(Ordering::Relaxed) >= total
        })
        .await?;
        // A subscription is confirmed after the open: one message must reach every
        // subscriber before the figures count.
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(1.0 / plan.rate.max(0.001));
        let count = plan.publishers.max(1) as f64;
        let streams = publishers
            .iter()
            .enumerate()
            .map(|(index, publisher)| {
                // Spread over the period, so that some message is always on its way
                // (in step, a short swap could fall between two rounds).
                let first = tokio::time::Instant::now() + period.mul_f64(index as f64 / count);
                tokio::spawn(publish(
                    publisher.clone(),
                    index,
                    tokio::time::interval_at(first, period),
                    tally.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let busy = Self {
            tally,
            subscribers,
            publishers,
            stop,
            streams,
            followers,
        };
        wait_until(patience, "every subscriber's first message", || {
            busy.subscribers
                .iter()
                .all(|(_, follower)| follower.last.load(Ordering::Relaxed) > 0)
        })
        .await?;
        Ok(busy)
    }

    /// Stops publishing, waits (within `patience`) until every publish is
    /// acknowledged and every subscriber has received up to its publisher's last, and
    /// counts what each still misses as lost.
    pub(super) async fn finish(self, patience: Duration) -> anyhow::Result<Finished> {
        self.stop.store(true, Ordering::Release);
        let mut sent = Vec::with_capacity(self.streams.len());
        for stream in self.streams {
            sent.push(stream.await?);
        }
        let total: u64 = sent.iter().sum();
        let tally = self.tally.clone();
        let acked = wait_until(patience, "every publish to be acknowledged", || {
            tally.acks.load(Ordering::Relaxed) >= total
        })
        .await;
        let subscribers = &self.subscribers;
        let received = wait_until(patience, "every message to arrive", || {
            subscribers
                .iter()
                .all(|(_, f)| f.last.load(Ordering::Relaxed) >= sent[f.publisher])
        })
        .await;
        for (_, follower) in subscribers {
            let last = follower.last.load(Ordering::Relaxed);
            tally.lost.fetch_add(
                sent[follower.publisher].saturating_sub(last),
                Ordering::Relaxed,
            );
        }
        // The closes this bench asks for below are not closes the clients saw.
        let closes = tally.closes.load(Ordering::Relaxed);
        for (client, _) in subscribers {
            client.close();
        }
        for client in &self.publishers {
            client.close();
        }
        for follower in self.followers {
            follower.abort();
        }
        if let Err(err) = acked.and(received) {
            eprintln!("bench: upgrade: {err:#}");
        }
        Ok(Finished { tally, closes })
    }
}

/// Publishes on `index`'s channel at every tick until stopped; returns how many.
async fn publish(
    publisher: client::Client,
    index: usize,
    mut ticks: tokio::time::Interval,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let channel = channel(index);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0;
    while !stop.load(Ordering::Acquire) {
        ticks.tick().await;
        let message = json!({
            "n": sent + 1,
            "t": tally.micros(),
            "ph": tally.phase.load(Ordering::Acquire),
        });
        if publisher.publish(&channel, message).is_err() {
            // The outbox is full or the client ended: it is not counted as sent.
            continue;
        }
        sent += 1;
    }
    sent
}

/// Counts one client's events; a subscriber checks each message's number.
async fn follow(mut events: client::Events, tally: Arc<Tally>, follower: Option<Arc<Follower>>) {
    // A failed attempt to connect again is no new close: only the end of an open
    // connection counts.
    let mut open = false;
    while let Some(event) = events.next().await {
        match event {
            Event::Open { .. } => {
                open = true;
                tally.opens.fetch_add(1, Ordering::Relaxed);
            }
            Event::Reconnecting { .. } | Event::Closed { .. } if open => {
                open = false;
                tally.closes.fetch_add(1, Ordering::Relaxed);
            }
            Event::Gap {
                channel,
                from_seq,
                to_seq,
                reason,
            } => {
                // Never expected: said on stderr, so that a run that counts one shows why.
                eprintln!("bench: upgrade: gap on {channel}: {from_seq}..={to_seq} ({reason:?})");
                tally.gaps.fetch_add(1, Ordering::Relaxed);
            }
            Event::Published { .. } => {
                tally.acks.fetch_add(1, Ordering::Relaxed);
            }
            Event::Message(Incoming::Channel { data, .. }) => {
                let Some(follower) = &follower else { continue };
                let field = |name: &str| data.get(name).and_then(serde_json::Value::as_u64);
                let (Some(number), Some(at), Some(phase)) = (field("n"), field("t"), field("ph"))
                else {
                    continue;
                };
                tally.received.fetch_add(1, Ordering::Relaxed);
                let last = follower.last.load(Ordering::Relaxed);
                if number <= last {
                    tally.repeated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // The first message a subscriber sees sets its start.
                if last > 0 && number > last + 1 {
                    eprintln!("bench: upgrade: a subscriber got message {number} after {last}");
                    tally.lost.fetch_add(number - last - 1, Ordering::Relaxed);
                }
                follower.last.store(number, Ordering::Relaxed);
                tally.record(phase, at);
            }
            _ => {}
        }
    }
}

/// Waits until `done` holds, checking every 10 ms, for at most `patience`.
pub(super) async fn wait_until(
    patience: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {patience:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
