//! The server's figures through a soak, read from its `/metrics` every few seconds:
//! resident memory, open file descriptors and alive tasks, beside the fleet's counts,
//! and the per-minute table made of them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::churn::Tally;

/// The longest a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One reading of the server and of the fleet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    /// Since the soak started.
    pub(super) at: Duration,
    pub(super) rss_bytes: f64,
    pub(super) open_fds: f64,
    pub(super) tasks: f64,
    pub(super) open: i64,
    pub(super) sessions: u64,
    pub(super) published: u64,
    pub(super) received: u64,
    pub(super) refused: u64,
    pub(super) failed: u64,
    pub(super) gaps: u64,
}

/// Reads the server's /metrics and the fleet's tally.
pub(super) async fn sample(
    server: SocketAddr,
    tally: &Tally,
    at: Duration,
) -> anyhow::Result<Sample> {
    let scrape = tokio::time::timeout(SCRAPE_TIMEOUT, scrape(server))
        .await
        .context("the scrape of /metrics timed out")??;
    let value = |family: &str| {
        scrape
            .lines()
            .find_map(|line| line.strip_prefix(family)?.strip_prefix(' ')?.parse().ok())
            .with_context(|| format!("no {family} in the server's /metrics"))
    };
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    Ok(Sample {
        at,
        rss_bytes: value("process_resident_memory_bytes")?,
        open_fds: value("process_open_fds")?,
        tasks: value("heartwire_runtime_alive_tasks")?,
        open: tally.open.load(Ordering::Relaxed),
        sessions: count(&tally.sessions),
        published: count(&tally.published),
        received: count(&tally.received),
        refused: count(&tally.refused),
        failed: count(&tally.failed),
        gaps: count(&tally.missing) + count(&tally.unrecovered) + count(&tally.repeated),
    })
}

async fn scrape(server: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(server).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// The per-minute table (Markdown): each minute's sessions, messages and refusals, and
/// the highest server figures sampled in it.
pub(super) fn minutes(samples: &[Sample]) -> String {
    let mut table = String::from(
        "| minute | open | sessions | published | received | refused | failed | gaps | RSS MiB | fds | tasks |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut before: Option<&Sample> = None;
    let last_minute = samples.last().map_or(0, |s| s.at.as_secs().div_ceil(60));
    for minute in 1..=last_minute {
        let rows: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at > minute_end(minute - 1) && s.at <= minute_end(minute))
            .collect();
        let Some(&end) = rows.last() else {
            continue;
        };
        let delta = |f: fn(&Sample) -> u64| f(end) - before.map_or(0, f);
        let highest = |f: fn(&Sample) -> f64| rows.iter().map(|s| f(s)).fold(0.0, f64::max);
        let _ = writeln!(
            table,
            "| {minute} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            end.open,
            delta(|s| s.sessions),
            delta(|s| s.published),
            delta(|s| s.received),
            delta(|s| s.refused),
            delta(|s| s.failed),
            delta(|s| s.gaps),
            highest(|s| s.rss_bytes) / (1024.0 * 1024.0),
            highest(|s| s.open_fds),
            highest(|s| s.tasks),
        );
        before = Some(end);
    }
    table
}

fn minute_end(minute: u64) -> Duration {
    Duration::from_secs(60 * minute)
}
