//! Scenario 3: one publisher, many subscribers. The publisher raises its rate step by
//! step (doubling); a step passes when 99% of the deliveries arrive and their p99
//! publish→receive latency is at most 100 ms. The figure is the delivery rate of the
//! last step that passed. Each (subscribers, size) pair gets a fresh server and fresh
//! subscribers: a failed step may have made the server drop slow consumers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::RunArgs;
use crate::dialect::{Dialect, Inbound, Role};
use crate::figures::{Better, Figures};
use crate::histogram::Histogram;
use crate::payload;
use crate::wire::{self, Socket, Sources};

const LATENCY_LIMIT: Duration = Duration::from_millis(100);
/// Share of the expected deliveries a step must see.
const DELIVERED_ENOUGH: f64 = 0.99;
/// The first step's delivery rate.
const FIRST_RATE: f64 = 10_000.0;
/// Time for the last messages of a step to arrive.
const DRAIN: Duration = Duration::from_millis(500);
/// How often the publisher sends its share of messages.
const TICK: Duration = Duration::from_millis(10);
pub(super) const SUBSCRIBER_SOURCES: Sources = Sources {
    first: 40,
    count: 4,
};

/// What the subscribers have seen.
pub(super) struct Deliveries {
    pub(super) latency: Histogram,
    pub(super) received: AtomicU64,
}

/// How the last step went.
struct Step {
    target_rate: f64,
    delivered_share: f64,
    p99: Option<Duration>,
}

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    for &subscribers in &args.subscribers {
        for &size in &args.sizes {
            let name = format!("broadcast_deliveries_per_sec_{subscribers}_{size}B");
            let server = args.start_server().await?;
            let outcome = measure_one(args, subscribers, size).await;
            server.kill().await?;
            match outcome? {
                (Some((rate, p99)), _) => {
                    figures.add(&name, rate, "1/s", Better::Higher);
                    let p99_ms = p99.as_secs_f64() * 1e3;
                    figures.add(&format!("{name}_p99_ms"), p99_ms, "ms", Better::Lower);
                }
                (None, failed) => {
                    let p99 = failed.p99.map_or_else(
                        || "none".to_owned(),
                        |p| format!("{:.0} ms", p.as_secs_f64() * 1e3),
                    );
                    let why = format!(
                        "the first step ({:.0} deliveries/s) failed: {:.1}% delivered, p99 {p99}",
                        failed.target_rate,
                        failed.delivered_share * 100.0
                    );
                    figures.missing(&name, "1/s", Better::Higher, &why);
                }
            }
        }
    }
    Ok(())
}

/// One (subscribers, size) pair against a fresh server: the best passing rate and its
/// p99, and the step that failed.
async fn measure_one(
    args: &RunArgs,
    subscribers: usize,
    size: usize,
) -> anyhow::Result<(Option<(f64, Duration)>, Step)> {
    let deliveries = Arc::new(Deliveries {
        latency: Histogram::new(),
        received: AtomicU64::new(0),
    });
    let sockets = wire::open_many(
        args.target()?,
        Role::Subscriber,
        subscribers,
        SUBSCRIBER_SOURCES,
    )
    .await;
    let listening = sockets.len();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(subscribe(socket, args.dialect, deliveries.clone())))
        .collect();
    let mut publisher =
        wire::open(&args.target()?, Role::Publisher, SUBSCRIBER_SOURCES.nth(0)).await?;
    keep_alive(&mut publisher, args.dialect, args.settle).await?;
    let outcome = find_best_rate(args, &mut publisher, listening, size, &deliveries).await;
    for reader in readers {
        reader.abort();
    }
    outcome
}

/// Raises the rate until a step fails; returns the best passing rate and its p99.
async fn find_best_rate(
    args: &RunArgs,
    publisher: &mut Socket,
    subscribers: usize,
    size: usize,
    deliveries: &Deliveries,
) -> anyhow::Result<(Option<(f64, Duration)>, Step)> {
    let bar = crate::progress::bar(
        u64::from(args.broadcast_steps),
        &format!("broadcast {subscribers}×{size}B"),
    );
    let mut best = None;
    let mut target_rate = FIRST_RATE;
    let mut step = Step {
        target_rate,
        delivered_share: 0.0,
        p99: None,
    };
    for _ in 0..args.broadcast_steps {
        bar.inc(1);
        let publishes_per_sec = (target_rate / subscribers.max(1) as f64).max(1.0);
        deliveries.latency.reset();
        let before = deliveries.received.load(Ordering::Relaxed);
        let started = Instant::now();
        let sent = publish_for(
            args.dialect,
            publisher,
            publishes_per_sec,
            size,
            args.broadcast_step,
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        keep_alive(publisher, args.dialect, DRAIN).await?;
        let got = deliveries.received.load(Ordering::Relaxed) - before;
        let expected = sent as f64 * subscribers as f64;
        let p99 = deliveries.latency.quantile(0.99);
        step = Step {
            target_rate,
            delivered_share: got as f64 / expected.max(1.0),
            p99,
        };
        let passed =
            step.delivered_share >= DELIVERED_ENOUGH && p99.is_some_and(|p99| p99 <= LATENCY_LIMIT);
        match p99 {
            Some(p99) if passed => best = Some((got as f64 / secs, p99)),
            _ => break,
        }
        target_rate *= 2.0;
    }
    bar.finish_and_clear();
    Ok((best, step))
}

/// Publishes at `rate` per second for `period`; returns how many were sent.
pub(super) async fn publish_for(
    dialect: Dialect,
    publisher: &mut Socket,
    rate: f64,
    size: usize,
    period: Duration,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    let mut sent = 0u64;
    while started.elapsed() < period {
        tokio::select! {
            _ = ticks.tick() => {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                while sent < due {
                    let frame = dialect.publish(&payload::stamped(size));
                    publisher.feed(Message::text(frame)).await?;
                    sent += 1;
                }
                publisher.flush().await?;
            }
            frame = publisher.next() => answer_heartbeat(publisher, dialect, frame).await?,
        }
    }
    Ok(sent)
}

/// Reads the publisher's connection for `period`, answering heartbeats, so that a
/// server does not drop it as silent between steps.
pub(super) async fn keep_alive(
    socket: &mut Socket,
    dialect: Dialect,
    period: Duration,
) -> anyhow::Result<()> {
    let until = tokio::time::sleep(period);
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return Ok(()),
            frame = socket.next() => answer_heartbeat(socket, dialect, frame).await?,
        }
    }
}

async fn answer_heartbeat(
    socket: &mut Socket,
    dialect: Dialect,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> anyhow::Result<()> {
    match frame {
        Some(Ok(Message::Text(text))) if dialect.inbound(&text) == Inbound::Heartbeat => {
            socket
                .send(Message::text(dialect.heartbeat_answer()))
                .await?;
        }
        Some(Ok(Message::Ping(_))) => socket.flush().await?,
        Some(Ok(_)) => {}
        Some(Err(err)) => return Err(err.into()),
        None => anyhow::bail!("the publisher's connection closed"),
    }
    Ok(())
}

/// Reads one subscriber's deliveries until its connection ends.
pub(super) async fn subscribe(mut socket: Socket, dialect: Dialect, deliveries: Arc<Deliveries>) {
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) => match dialect.inbound(&text) {
                Inbound::Heartbeat => {
                    if socket
                        .send(Message::text(dialect.heartbeat_answer()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Inbound::Data(frame) => {
                    if let Some(age) = payload::age(frame) {
                        deliveries.latency.record(age);
                        deliveries.received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            Message::Ping(_) if socket.flush().await.is_err() => return,
            _ => {}
        }
    }
}
