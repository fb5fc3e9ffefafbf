//! One churning connection of the soak, on `/ws`: it connects, subscribes (with its
//! last position after the first time), publishes now and then, and after its lifetime
//! vanishes (drops its TCP socket, no close frame), stays away a moment and resumes.
//! Every message it receives is checked against its position: a `seq` skipped, a
//! `seq` seen twice and a resume the server could not fill are each counted.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::wire::Sources;

/// The longest a connection may take to open and subscribe.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The loopback sources connections come from, so that no one address holds too many.
const SOURCES: Sources = Sources { first: 1, count: 8 };

/// What every churning connection does.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) server: SocketAddr,
    /// Average lifetime; each session draws from half to one and a half times it.
    pub(super) lifetime: Duration,
    /// Longest pause between vanishing and resuming.
    pub(super) away: Duration,
    pub(super) publish_every: Duration,
    pub(super) per_channel: usize,
    pub(super) deadline: Instant,
}

/// What the fleet has done so far.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) sessions: AtomicU64,
    pub(super) open: AtomicI64,
    /// Upgrades answered HTTP 503 (the server full or overloaded).
    pub(super) refused: AtomicU64,
    /// Sessions that failed otherwise (a timeout, a reset).
    pub(super) failed: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) resumed: AtomicU64,
    /// Messages skipped: a `seq` past the next one expected.
    pub(super) missing: AtomicU64,
    /// Resumes answered `recovered: false`: the server could not fill the gap.
    pub(super) unrecovered: AtomicU64,
    /// Messages whose `seq` was not past the last one received.
    pub(super) repeated: AtomicU64,
}

/// A channel's epoch and the last `seq` received on it.
struct Position {
    epoch: String,
    seq: u64,
}

/// Runs connection `index` until the plan's deadline.
pub(super) async fn churn(index: usize, plan: Arc<Plan>, tally: Arc<Tally>) {
    let channel = format!("soak:{}", index / plan.per_channel.max(1));
    let source = SOURCES.nth(index);
    let mut position = None;
    // The first sessions are cut short at random, so that the fleet churns evenly
    // from the start rather than all at once after one lifetime.
    let mut life = plan.lifetime.mul_f64(rand::rng().random_range(0.0..1.5));
    while Instant::now() < plan.deadline {
        let outcome = session(&plan, &tally, source, &channel, &mut position, life).await;
        match outcome {
            Ok(()) => {}
            Err(err) if refused(&err) => {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let away = plan.away.mul_f64(rand::rng().random_range(0.0..1.0));
        tokio::time::sleep(away).await;
        life = plan.lifetime.mul_f64(rand::rng().random_range(0.5..1.5));
    }
}

/// Whether the upgrade was answered 503.
fn refused(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Http(response)) if response.status() == 503
    )
}

/// Counts an open connection while it lives.
struct Open<'a>(&'a Tally);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One session: open, subscribe from `position`, live for `life` receiving and
/// publishing, then vanish.
async fn session(
    plan: &Plan,
    tally: &Tally,
    source: Ipv4Addr,
    channel: &str,
    position: &mut Option<Position>,
    life: Duration,
) -> anyhow::Result<()> {
    let mut ws = tokio::time::timeout(
        OPEN_TIMEOUT,
        open(plan.server, tally, source, channel, position),
    )
    .await
    .context("opening timed out")??;
    tally.sessions.fetch_add(1, Ordering::Relaxed);
    tally.open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(tally);
    let end = Instant::now() + life.min(plan.deadline.saturating_duration_since(Instant::now()));
    let mut publish_at = Instant::now() + plan.publish_every.mul_f64(rand::rng().random());
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            () = tokio::time::sleep_until(publish_at) => {
                publish_at += plan.publish_every;
                let frame = json!({"op": "publish", "channel": channel, "data": {"from": source.to_string()}});
                ws.send(Message::text(frame.to_string())).await?;
                tally.published.fetch_add(1, Ordering::Relaxed);
            }
            frame = ws.next() => {
                let Some(seq) = message_seq(frame)? else { continue };
                tally.received.fetch_add(1, Ordering::Relaxed);
                if let Some(position) = position.as_mut() {
                    follow(tally, &mut position.seq, seq);
                }
            }
        }
    }
    // Vanish: the socket is dropped without a close frame.
    drop(ws);
    Ok(())
}

/// Connects from `source`, reads `hello`, subscribes from `position` and reads up to
/// `subscribed`, after which `position` is where the messages that follow start.
async fn open(
    server: SocketAddr,
    tally: &Tally,
    source: Ipv4Addr,
    channel: &str,
    position: &mut Option<Position>,
) -> anyhow::Result<crate::wire::Socket> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{server}/ws");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    let hello = next_json(&mut ws).await?;
    anyhow::ensure!(hello["op"] == "hello", "no hello first: {hello}");
    let mut subscribe = json!({"op": "subscribe", "channel": channel});
    if let Some(Position { epoch, seq }) = position.as_ref() {
        subscribe["since"] = json!({"epoch": epoch, "seq": seq});
    }
    ws.send(Message::text(subscribe.to_string())).await?;
    let subscribed = loop {
        let frame = next_json(&mut ws).await?;
        if frame["op"] == "subscribed" {
            break frame;
        }
    };
    let epoch = subscribed["epoch"].as_str().context("no epoch")?.to_owned();
    let latest = subscribed["seq"].as_u64().context("no seq")?;
    let last = match position.take() {
        Some(since) => {
            tally.resumed.fetch_add(1, Ordering::Relaxed);
            if subscribed["recovered"] == true && since.epoch == epoch {
                since.seq
            } else {
                tally.unrecovered.fetch_add(1, Ordering::Relaxed);
                latest
            }
        }
        None => latest,
    };
    *position = Some(Position { epoch, seq: last });
    Ok(ws)
}

/// Checks `seq` against the last one received, and moves the position on.
fn follow(tally: &Tally, last: &mut u64, seq: u64) {
    if seq <= *last {
        tally.repeated.fetch_add(1, Ordering::Relaxed);
        return;
    }
    tally.missing.fetch_add(seq - *last - 1, Ordering::Relaxed);
    *last = seq;
}

/// The `seq` of a `message` frame; `None` for other frames.
fn message_seq(frame: Option<Result<Message, tungstenite::Error>>) -> anyhow::Result<Option<u64>> {
    let text = match frame.context("the server closed the connection")?? {
        Message::Text(text) => text,
        Message::Close(close) => anyhow::bail!("closed by the server: {close:?}"),
        _ => return Ok(None),
    };
    let frame: Value = serde_json::from_str(&text)?;
    Ok(if frame["op"] == "message" {
        frame["seq"].as_u64()
    } else {
        None
    })
}

/// The next text frame, as JSON.
async fn next_json(ws: &mut crate::wire::Socket) -> anyhow::Result<Value> {
    loop {
        match ws.next().await.context("closed while opening")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(close) => anyhow::bail!("closed while opening: {close:?}"),
            _ => {}
        }
    }
}
