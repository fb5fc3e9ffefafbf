//! The scale-out scenario's load: subscriber connections spread over the nodes, each
//! on every channel, and one publisher per node sending stamped messages with ids at
//! a rate the scenario sets. Subscribers record publish→receive latency; publishers
//! record publish→ack latency; both count.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::histogram::Histogram;
use crate::payload;

/// How often a publisher sends its share.
const TICK: Duration = Duration::from_millis(10);

/// What the subscribers and publishers have counted since the last reset.
pub(crate) struct Counts {
    /// publish→receive latency of every delivery.
    pub(crate) delivery: Histogram,
    /// publish→ack latency of every publish.
    pub(crate) ack: Histogram,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    /// Messages per second each publisher sends.
    rate: AtomicU64,
    /// Channels being watched for recovery, and the time they are watched from (µs
    /// since the epoch): each subscriber notes the first message of each sent after.
    watch: Mutex<(HashSet<String>, u64)>,
    /// (subscriber, channel) pairs that received such a message.
    recovered: AtomicU64,
    closed: AtomicBool,
}

impl Counts {
    /// Forgets what was counted.
    pub(crate) fn reset(&self) {
        self.delivery.reset();
        self.ack.reset();
        self.published.store(0, Ordering::Relaxed);
        self.received.store(0, Ordering::Relaxed);
    }

    /// Sets each publisher's rate.
    pub(crate) fn set_rate(&self, per_publisher: u64) {
        self.rate.store(per_publisher, Ordering::Relaxed);
    }

    /// Starts watching `channels` for messages sent from now on.
    pub(crate) fn watch(&self, channels: HashSet<String>) {
        self.recovered.store(0, Ordering::Relaxed);
        *self.watch.lock().expect("the watch lock") = (channels, payload::now_micros());
    }

    /// (subscriber, channel) pairs that got a message sent after [`watch`](Self::watch).
    pub(crate) fn recovered(&self) -> u64 {
        self.recovered.load(Ordering::Relaxed)
    }
}

/// The running load.
pub(crate) struct Load {
    pub(crate) counts: Arc<Counts>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Opens `per_node` subscribers on each node (each subscribed to every channel)
    /// and one publisher per node, idle until a rate is set.
    pub(crate) async fn start(
        ports: &[u16],
        channels: &[String],
        per_node: usize,
        size: usize,
    ) -> anyhow::Result<Self> {
        let counts = Arc::new(Counts {
            delivery: Histogram::new(),
            ack: Histogram::new(),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            rate: AtomicU64::new(0),
            watch: Mutex::new((HashSet::new(), u64::MAX)),
            recovered: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let mut tasks = Vec::new();
        for port in ports {
            for _ in 0..per_node {
                let socket = subscriber(*port, channels).await?;
                tasks.push(tokio::spawn(receive(socket, counts.clone())));
            }
        }
        for (index, port) in ports.iter().enumerate() {
            let socket = open(*port).await?;
            let channels = channels.to_vec();
            let name = format!("p{index}");
            tasks.push(tokio::spawn(publish(
                socket,
                name,
                channels,
                size,
                counts.clone(),
            )));
        }
        Ok(Self { counts, tasks })
    }

    /// Whether a connection of the load was closed (a slow consumer, a dead node).
    pub(crate) fn lost_a_connection(&self) -> bool {
        self.counts.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(port: u16) -> anyhow::Result<Socket> {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("cannot open a connection to a node")?;
    // The hello.
    socket.next().await.context("no hello")??;
    Ok(socket)
}

/// A connection subscribed to every channel.
async fn subscriber(port: u16, channels: &[String]) -> anyhow::Result<Socket> {
    let mut socket = open(port).await?;
    for channel in channels {
        let frame = format!(r#"{{"op":"subscribe","channel":"{channel}"}}"#);
        socket.send(Message::text(frame)).await?;
    }
    let mut confirmed = 0;
    while confirmed < channels.len() {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .context("subscriptions not confirmed in time")?
            .context("closed while subscribing")??;
        if let Message::Text(text) = message {
            if text.contains(r#""op":"subscribed""#) {
                confirmed += 1;
            }
        }
    }
    Ok(socket)
}

/// The channel a `message` frame is on, without parsing the whole frame.
fn channel_of(frame: &str) -> Option<&str> {
    let start = frame.find(r#""channel":""#)? + r#""channel":""#.len();
    let end = frame[start..].find('"')?;
    Some(&frame[start..start + end])
}

async fn receive(mut socket: Socket, counts: Arc<Counts>) {
    let mut recovered: HashSet<String> = HashSet::new();
    let mut watched_from = u64::MAX;
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let text = text.as_str();
        if !text.starts_with(r#"{"op":"message""#) {
            continue;
        }
        if let Some(age) = payload::age(text) {
            counts.delivery.record(age);
        }
        counts.received.fetch_add(1, Ordering::Relaxed);
        let (watching, from) = {
            let watch = counts.watch.lock().expect("the watch lock");
            match channel_of(text) {
                Some(channel) if watch.0.contains(channel) => (Some(channel.to_owned()), watch.1),
                _ => (None, watch.1),
            }
        };
        if from != watched_from {
            watched_from = from;
            recovered.clear();
        }
        if let (Some(channel), Some(sent)) = (watching, payload::stamp(text)) {
            if sent > from && recovered.insert(channel) {
                counts.recovered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    counts.closed.store(true, Ordering::Relaxed);
}

async fn publish(
    socket: Socket,
    name: String,
    channels: Vec<String>,
    size: usize,
    counts: Arc<Counts>,
) {
    let (mut sink, mut stream) = socket.split();
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let acks = {
        let (sent, counts) = (sent.clone(), counts.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Some(number) = ack_number(text.as_str()) else {
                    continue;
                };
                let at = sent.lock().expect("the sent lock").remove(&number);
                if let Some(at) = at {
                    counts.ack.record(at.elapsed());
                }
            }
            counts.closed.store(true, Ordering::Relaxed);
        })
    };
    let mut tick = tokio::time::interval(TICK);
    let mut owed = 0.0;
    let mut next = 0u64;
    loop {
        tick.tick().await;
        let rate = counts.rate.load(Ordering::Relaxed) as f64;
        owed += rate * TICK.as_secs_f64();
        while owed >= 1.0 {
            owed -= 1.0;
            next += 1;
            let channel = &channels[next as usize % channels.len()];
            let frame = format!(
                r#"{{"op":"publish","channel":"{channel}","data":"{}","id":"{name}-{next}"}}"#,
                payload::stamped(size)
            );
            sent.lock()
                .expect("the sent lock")
                .insert(next, Instant::now());
            if sink.send(Message::text(frame)).await.is_err() {
                counts.closed.store(true, Ordering::Relaxed);
                acks.abort();
                return;
            }
            counts.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The number at the end of an `ack`'s id (`p0-17` → 17).
fn ack_number(frame: &str) -> Option<u64> {
    if !frame.starts_with(r#"{"op":"ack""#) {
        return None;
    }
    let start = frame.find(r#""id":""#)? + r#""id":""#.len();
    let end = frame[start..].find('"')?;
    frame[start..start + end].rsplit('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_without_parsing_them_whole() {
        let message = r#"{"op":"message","channel":"s:3","seq":9,"data":"~0000000000000001x"}"#;
        assert_eq!(channel_of(message), Some("s:3"));
        assert_eq!(payload::stamp(message), Some(1));
        assert_eq!(ack_number(r#"{"op":"ack","id":"p2-17","seq":4}"#), Some(17));
        assert_eq!(ack_number(message), None);
    }
}
