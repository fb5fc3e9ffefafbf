//! Scenario 6: reconnect storm. N heartwire clients (the crate's own client, with its
//! default full-jitter backoff) connect; the server is killed with SIGKILL and started
//! again at once. Figures: connect attempts per client after the kill, the time from
//! the kill until 99% and 100% are connected again, and the kernel's listen-queue
//! overflow counter (`nstat -az TcpExtListenOverflows`, machine-wide) across it.
//!
//! socket.io speaks Engine.IO, which the heartwire client does not, so it is left out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use heartwire_client::{self as client, ClientConfig, Event};
use tokio::sync::Mutex;

use super::RunArgs;
use crate::dialect::{Dialect, Role};
use crate::figures::{Better, Figures};

/// The longest the clients may take to connect, first and again.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// What the clients have done.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    attempts_after_kill: AtomicU64,
    reconnect_times: Mutex<Vec<Duration>>,
}

pub(super) async fn measure(args: &RunArgs, figures: &mut Figures) -> anyhow::Result<()> {
    if args.dialect == Dialect::Socketio {
        figures.missing(
            "storm_attempts_per_client",
            "",
            Better::Lower,
            "the heartwire client does not speak Engine.IO",
        );
        return Ok(());
    }
    let server = args.start_server().await?;
    let url = format!(
        "ws://127.0.0.1:{}{}",
        args.port,
        args.dialect.path(Role::Idle)
    );
    let tally = Arc::new(Tally::default());
    let killed_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut clients = Vec::with_capacity(args.storm_clients);
    for _ in 0..args.storm_clients {
        let (client, events) = client::connect(ClientConfig::new([url.as_str()])?)?;
        clients.push(client);
        tokio::spawn(follow(events, tally.clone(), killed_at.clone()));
    }
    let total = args.storm_clients as u64;
    let bar = crate::progress::bar(total, "storm: connecting");
    wait_for(&tally.opened, total, &bar).await;
    bar.finish_and_clear();
    tokio::time::sleep(args.settle).await;

    let overflows_before = listen_overflows().await;
    tally.opened.store(0, Ordering::Relaxed);
    let _ = killed_at.set(Instant::now());
    server.kill().await?;
    let server = args.start_server().await?;
    let bar = crate::progress::bar(total, "storm: reconnecting");
    wait_for(&tally.opened, total, &bar).await;
    bar.finish_and_clear();
    let overflows_after = listen_overflows().await;

    let attempts = tally.attempts_after_kill.load(Ordering::Relaxed);
    figures.add(
        "storm_attempts_per_client",
        attempts as f64 / total as f64,
        "",
        Better::Lower,
    );
    let mut times = tally.reconnect_times.lock().await.clone();
    times.sort();
    let reached = |share: f64| {
        let needed = (total as f64 * share).ceil() as usize;
        times
            .get(needed.saturating_sub(1))
            .map(Duration::as_secs_f64)
    };
    for (figure, share) in [("storm_99pct_secs", 0.99), ("storm_100pct_secs", 1.0)] {
        match reached(share) {
            Some(secs) => figures.add(figure, secs, "s", Better::Lower),
            None => figures.missing(
                figure,
                "s",
                Better::Lower,
                &format!("only {} of {total} reconnected", times.len()),
            ),
        }
    }
    match (overflows_before, overflows_after) {
        (Some(before), Some(after)) => {
            figures.add(
                "storm_listen_overflows",
                after.saturating_sub(before) as f64,
                "",
                Better::Lower,
            );
        }
        _ => figures.missing(
            "storm_listen_overflows",
            "",
            Better::Lower,
            "nstat (iproute2) unavailable",
        ),
    }
    for client in &clients {
        client.close();
    }
    server.kill().await?;
    Ok(())
}

/// Counts one client's opens and, after the kill, its attempts and reconnect time.
async fn follow(
    mut events: client::Events,
    tally: Arc<Tally>,
    killed_at: Arc<std::sync::OnceLock<Instant>>,
) {
    while let Some(event) = events.next().await {
        match event {
            Event::Connecting { .. } if killed_at.get().is_some() => {
                tally.attempts_after_kill.fetch_add(1, Ordering::Relaxed);
            }
            Event::Open { .. } => {
                if let Some(killed) = killed_at.get() {
                    tally.reconnect_times.lock().await.push(killed.elapsed());
                }
                tally.opened.fetch_add(1, Ordering::Relaxed);
            }
            Event::Closed { .. } => return,
            _ => {}
        }
    }
}

async fn wait_for(counter: &AtomicU64, total: u64, bar: &indicatif::ProgressBar) {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    while counter.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        bar.set_position(counter.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The kernel's count of connections dropped because a listen queue was full.
async fn listen_overflows() -> Option<u64> {
    let output = tokio::process::Command::new("nstat")
        .args(["-az", "TcpExtListenOverflows"])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("TcpExtListenOverflows"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
}
