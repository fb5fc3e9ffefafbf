//! The check's scripted client: a heartwire client (the `heartwire_client` library)
//! subscribed to a channel of its own, publishing a numbered stream on it when asked,
//! and a log of what happened: each number's publish time and receipts, and each
//! state change (open, down, gap) with its time.
//!
//! The stream is what `lost` and `duplicated` count: a number published and never
//! received is lost, one received twice is duplicated. A number's round trip runs from
//! its publish to its first receipt.

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use heartwire_client::{Client, ClientConfig, Event, Events, Incoming};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// A state change of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Open,
    /// The connection or an attempt ended, and why.
    Down(String),
    /// The server said some messages will not arrive.
    Gap,
}

/// What happened to the stream over a range of numbers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) published: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
}

#[derive(Debug, Default)]
struct Log {
    /// When each number was published; index 0 is unused, `None` when refused.
    published: Vec<Option<Instant>>,
    /// How often each number was received.
    received: Vec<u32>,
    /// Each number's round trip.
    round_trips: Vec<Option<Duration>>,
    changes: Vec<(Instant, Change)>,
}

/// A running scripted client.
#[derive(Debug)]
pub(crate) struct Scripted {
    client: Client,
    channel: String,
    every: Duration,
    log: Arc<Mutex<Log>>,
    changed: watch::Receiver<u64>,
    publisher: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Scripted {
    /// Connects with `config` (its subscriptions are replaced by `channel`) and
    /// publishes `rate` numbers a second while asked to.
    pub(crate) fn start(mut config: ClientConfig, channel: &str, rate: u32) -> Result<Self, Error> {
        config.subscriptions = vec![channel.to_owned()];
        let (client, events) = heartwire_client::connect(config)?;
        let log = Arc::new(Mutex::new(Log {
            published: vec![None],
            received: vec![0],
            round_trips: vec![None],
            changes: Vec::new(),
        }));
        let (notify, changed) = watch::channel(0);
        tokio::spawn(record(events, channel.to_owned(), Arc::clone(&log), notify));
        Ok(Self {
            client,
            channel: channel.to_owned(),
            every: Duration::from_secs(1) / rate.max(1),
            log,
            changed,
            publisher: None,
        })
    }

    /// The first change after `after` that `wanted` accepts, waiting up to `within`.
    pub(crate) async fn wait_for(
        &mut self,
        after: Instant,
        within: Duration,
        wanted: impl Fn(&Change) -> bool,
    ) -> Option<(Instant, Change)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.changed.borrow_and_update();
            let found = lock(&self.log)
                .changes
                .iter()
                .find(|(at, change)| *at >= after && wanted(change))
                .cloned();
            if found.is_some() {
                return found;
            }
            match tokio::time::timeout_at(deadline, self.changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Whether the latest state change left the client open.
    pub(crate) fn is_open(&self) -> bool {
        lock(&self.log)
            .changes
            .iter()
            .rev()
            .find(|(_, change)| *change != Change::Gap)
            .is_some_and(|(_, change)| *change == Change::Open)
    }

    /// Waits up to `within` for the client to be open.
    pub(crate) async fn wait_open(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.changed.borrow_and_update();
            if self.is_open() {
                return true;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, self.changed.changed()).await,
                Ok(Ok(()))
            ) {
                return false;
            }
        }
    }

    /// The changes since `after` that `wanted` accepts.
    pub(crate) fn count(&self, after: Instant, wanted: impl Fn(&Change) -> bool) -> usize {
        lock(&self.log)
            .changes
            .iter()
            .filter(|(at, change)| *at >= after && wanted(change))
            .count()
    }

    /// The reason of the latest `Down`, if any.
    pub(crate) fn last_down(&self) -> Option<String> {
        lock(&self.log)
            .changes
            .iter()
            .rev()
            .find_map(|(_, change)| match change {
                Change::Down(reason) => Some(reason.clone()),
                _ => None,
            })
    }

    /// Starts publishing the stream; returns the first number it will publish.
    pub(crate) fn start_publishing(&mut self) -> u64 {
        let first = lock(&self.log).published.len() as u64;
        let stop = CancellationToken::new();
        let task = tokio::spawn(publish(
            self.client.clone(),
            self.channel.clone(),
            self.every,
            Arc::clone(&self.log),
            stop.clone(),
        ));
        self.publisher = Some((stop, task));
        first
    }

    /// Stops publishing; returns the numbers published since `first`.
    pub(crate) async fn stop_publishing(&mut self, first: u64) -> RangeInclusive<u64> {
        if let Some((stop, task)) = self.publisher.take() {
            stop.cancel();
            let _ = task.await;
        }
        first..=lock(&self.log).published.len() as u64 - 1
    }

    /// Waits up to `within` for every published number of `numbers` to arrive.
    pub(crate) async fn settle(&mut self, numbers: &RangeInclusive<u64>, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.changed.borrow_and_update();
            if self.tally(numbers).lost == 0 {
                return;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, self.changed.changed()).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }

    /// Lost and duplicated numbers of `numbers`.
    pub(crate) fn tally(&self, numbers: &RangeInclusive<u64>) -> Tally {
        let log = lock(&self.log);
        let mut tally = Tally::default();
        for n in numbers.clone().map(|n| n as usize) {
            if log.published.get(n).is_some_and(Option::is_some) {
                tally.published += 1;
                match log.received[n] {
                    0 => tally.lost += 1,
                    times => tally.duplicated += u64::from(times - 1),
                }
            }
        }
        tally
    }

    /// The round trips of the numbers of `numbers` that arrived, shortest first.
    pub(crate) fn round_trips(&self, numbers: &RangeInclusive<u64>) -> Vec<Duration> {
        let log = lock(&self.log);
        let mut trips: Vec<Duration> = numbers
            .clone()
            .filter_map(|n| log.round_trips.get(n as usize).copied().flatten())
            .collect();
        trips.sort();
        trips
    }

    pub(crate) fn close(&self) {
        self.client.close();
    }
}

/// Publishes one number every `every` until stopped.
async fn publish(
    client: Client,
    channel: String,
    every: Duration,
    log: Arc<Mutex<Log>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let number = {
            let mut log = lock(&log);
            log.published.push(Some(Instant::now()));
            log.received.push(0);
            log.round_trips.push(None);
            log.published.len() - 1
        };
        if client.publish(&channel, json!(number)).is_err() {
            // The outbox is full or the client stopped: this number never went out.
            lock(&log).published[number] = None;
        }
    }
}

/// Records every event of the client until it closes.
async fn record(
    mut events: Events,
    channel: String,
    log: Arc<Mutex<Log>>,
    notify: watch::Sender<u64>,
) {
    while let Some(event) = events.next().await {
        let now = Instant::now();
        let change = match event {
            Event::Message(Incoming::Channel {
                channel: from,
                data,
                ..
            }) if from == channel => {
                let mut log = lock(&log);
                let number = data.as_u64().map(|n| n as usize);
                if let Some(n) = number.filter(|&n| n > 0 && n < log.received.len()) {
                    log.received[n] += 1;
                    if log.round_trips[n].is_none() {
                        log.round_trips[n] = log.published[n].map(|sent| now - sent);
                    }
                }
                None
            }
            Event::Open { .. } => Some(Change::Open),
            Event::Reconnecting { reason, .. } => Some(Change::Down(reason)),
            Event::Closed { reason } => Some(Change::Down(format!("closed: {reason}"))),
            Event::Gap { .. } => Some(Change::Gap),
            _ => None,
        };
        if let Some(change) = change {
            lock(&log).changes.push((now, change));
        }
        notify.send_modify(|count| *count += 1);
    }
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
