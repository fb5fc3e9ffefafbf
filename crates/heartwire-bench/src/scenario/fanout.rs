//! Fan-out at a fixed rate: `--fanout-subscribers` subscribers and one publisher on a
//! fresh server, `--fanout-rate` publishes per second (a rate every server delivers in
//! full), and the server's CPU time per delivered message.
//!
//! The subscribers answer heartbeats all along, so the server's CPU is measured twice
//! over windows of the same length: first with the same connections idle, then while
//! publishing (and draining). The difference, divided by the deliveries, is the cost of
//! a delivery; the p99 is publish→receive over the publishing window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::RunArgs;
use super::broadcast::{self, Deliveries, SUBSCRIBER_SOURCES};
use crate::dialect::Role;
use crate::figures::{Better, Figures};
use crate::histogram::Histogram;
use crate::wire;

/// Time for the last messages to arrive after the publishing window.
const DRAIN: Duration = Duration::from_millis(500);

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    let count = args.fanout_subscribers;
    let server = args.start_server().await?;
    let deliveries = Arc::new(Deliveries {
        latency: Histogram::new(),
        received: AtomicU64::new(0),
    });
    let sockets =
        wire::open_many(args.target()?, Role::Subscriber, count, SUBSCRIBER_SOURCES).await;
    let subscribers = sockets.len();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            tokio::spawn(broadcast::subscribe(
                socket,
                args.dialect,
                deliveries.clone(),
            ))
        })
        .collect();
    let outcome = async {
        let mut publisher =
            wire::open(&args.target()?, Role::Publisher, SUBSCRIBER_SOURCES.nth(0)).await?;
        broadcast::keep_alive(&mut publisher, args.dialect, args.settle).await?;
        let window = args.fanout_window + DRAIN;
        let idle_start = server.cpu()?;
        let idle_started = Instant::now();
        broadcast::keep_alive(&mut publisher, args.dialect, window).await?;
        let idle_cpu = server.cpu()?.saturating_sub(idle_start).as_secs_f64()
            / idle_started.elapsed().as_secs_f64();
        deliveries.latency.reset();
        let before = deliveries.received.load(Ordering::Relaxed);
        let busy_start = server.cpu()?;
        let busy_started = Instant::now();
        let sent = broadcast::publish_for(
            args.dialect,
            &mut publisher,
            args.fanout_rate,
            args.fanout_size,
            args.fanout_window,
        )
        .await?;
        broadcast::keep_alive(&mut publisher, args.dialect, DRAIN).await?;
        let busy_secs = busy_started.elapsed().as_secs_f64();
        let busy_cpu = server.cpu()?.saturating_sub(busy_start).as_secs_f64();
        let got = deliveries.received.load(Ordering::Relaxed) - before;
        let delivery_cpu = busy_cpu - idle_cpu * busy_secs;
        anyhow::Ok((sent, got, delivery_cpu, deliveries.latency.quantile(0.99)))
    }
    .await;
    for reader in readers {
        reader.abort();
    }
    server.kill().await?;
    let (sent, got, delivery_cpu, p99) = outcome?;
    let expected = sent as f64 * subscribers as f64;
    figures.add(
        &format!("fanout_delivered_pct_{count}"),
        100.0 * got as f64 / expected.max(1.0),
        "%",
        Better::Higher,
    );
    if got == 0 {
        figures.missing(
            &format!("fanout_cpu_us_per_delivery_{count}"),
            "µs",
            Better::Lower,
            "nothing delivered",
        );
        return Ok(());
    }
    figures.add(
        &format!("fanout_cpu_us_per_delivery_{count}"),
        delivery_cpu.max(0.0) * 1e6 / got as f64,
        "µs",
        Better::Lower,
    );
    if let Some(p99) = p99 {
        figures.add(
            &format!("fanout_p99_ms_{count}"),
            p99.as_secs_f64() * 1e3,
            "ms",
            Better::Lower,
        );
    }
    Ok(())
}
