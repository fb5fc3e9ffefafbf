//! Scenario 5: dead-peer detection under load. Of N heartbeating connections, 1% sit
//! in a generator process of their own. That process sends a Ping on each of them
//! (the server's last sign of life from them) and is frozen with SIGSTOP at once; its
//! kernel keeps ACKing, as a hung peer's does. heartwire's /metrics counter of ping
//! timeouts is polled every few milliseconds: each rise is that many detections at
//! that moment. The figures are detection time minus the configured bound (p50, p99,
//! max) and the live connections dropped meanwhile (false positives).
//!
//! Only heartwire exposes when it dropped a peer, so the other servers are not
//! measured here.

use std::time::{Duration, Instant};

use tokio::process::Command;

use super::RunArgs;
use crate::dialect::Dialect;
use crate::figures::{Better, Figures};
use crate::fleet::Fleet;
use crate::wire::OPEN_CONCURRENCY;

const PING_TIMEOUTS: &str = r#"heartwire_disconnects_total{reason="ping_timeout"}"#;
const POLL_EVERY: Duration = Duration::from_millis(5);
/// How long past the bound detections are waited for.
const PATIENCE: Duration = Duration::from_secs(5);
const LIVE_SOURCE: u8 = 60;
const FROZEN_SOURCE: u8 = 80;

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    if args.dialect != Dialect::Heartwire {
        for figure in [
            "detect_over_bound_p50_ms",
            "detect_over_bound_p99_ms",
            "detect_over_bound_max_ms",
        ] {
            figures.missing(
                figure,
                "ms",
                Better::Lower,
                "needs the server's drop times (heartwire's /metrics)",
            );
        }
        return Ok(());
    }
    let server = args.start_server().await?;
    let frozen_count = (args.detect_connections / 100).max(1);
    let live_count = args.detect_connections - frozen_count;
    let (mut live, _) = Fleet::open(
        args.target()?,
        live_count,
        args.per_process,
        LIVE_SOURCE,
        OPEN_CONCURRENCY,
    )
    .await?;
    let (mut frozen, opened) = Fleet::open(
        args.target()?,
        frozen_count,
        args.per_process,
        FROZEN_SOURCE,
        OPEN_CONCURRENCY,
    )
    .await?;
    tokio::time::sleep(args.settle).await;
    let live_lost_before = live.counters().await?.disconnects;
    let timeouts_before = server.metric(PING_TIMEOUTS).await?;

    frozen.ping_all().await?;
    let frozen_at = Instant::now();
    signal(&frozen.pids(), "-STOP").await?;
    let mut over_bound = Vec::new();
    let mut seen = timeouts_before;
    let give_up = frozen_at + args.detection_bound + PATIENCE;
    while (over_bound.len() as u64) < opened.connected && Instant::now() < give_up {
        tokio::time::sleep(POLL_EVERY).await;
        let now = server.metric(PING_TIMEOUTS).await?;
        let late = frozen_at.elapsed().as_secs_f64() - args.detection_bound.as_secs_f64();
        for _ in 0..(now - seen) as u64 {
            over_bound.push(late * 1e3);
        }
        seen = now;
    }
    let live_lost = live.counters().await?.disconnects - live_lost_before;
    signal(&frozen.pids(), "-CONT").await?;

    let detected = over_bound.len() as u64;
    let false_positives = live_lost.max(detected.saturating_sub(opened.connected));
    over_bound.truncate(usize::try_from(opened.connected)?);
    over_bound.sort_by(f64::total_cmp);
    let undetected = opened.connected - over_bound.len() as u64;
    if let Some(&max) = over_bound.last() {
        let at = |q: f64| {
            over_bound
                [((over_bound.len() as f64 * q).ceil() as usize).clamp(1, over_bound.len()) - 1]
        };
        figures.add("detect_over_bound_p50_ms", at(0.5), "ms", Better::Lower);
        figures.add("detect_over_bound_p99_ms", at(0.99), "ms", Better::Lower);
        figures.add("detect_over_bound_max_ms", max, "ms", Better::Lower);
    }
    figures.add(
        "detect_false_positives",
        false_positives as f64,
        "",
        Better::Lower,
    );
    figures.add("detect_undetected", undetected as f64, "", Better::Lower);
    live.close().await;
    frozen.close().await;
    server.kill().await?;
    Ok(())
}

/// Sends a signal (`-STOP`, `-CONT`) to each process.
async fn signal(pids: &[u32], which: &str) -> anyhow::Result<()> {
    for pid in pids {
        let status = Command::new("kill")
            .arg(which)
            .arg(pid.to_string())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill {which} {pid} failed");
    }
    Ok(())
}
