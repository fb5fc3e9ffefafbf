//! `heartwire bench soak` (`scripts/soak`): thousands of connections churn against one
//! server for a while — connect, subscribe, publish, vanish without a close, resume
//! from their last position ([`churn`]) — while the server's resident memory, open
//! file descriptors and alive tasks are sampled from its `/metrics` ([`watch`]).
//!
//! It fails, with a sentence and a non-zero exit, when a figure keeps growing after
//! its first plateau ([`growth`]: docs/RELIABILITY.md, "Soak"), when a resumed
//! connection missed a message or received one twice, or when no session opened at
//! all. Without `--url` it starts `heartwire serve` itself, on a free port, with the
//! per-address and accept-rate limits off (the fleet is one machine) and a history of
//! 100 messages per channel (enough for a resume after a second away, and a plateau
//! within a minute).

mod churn;
mod growth;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::server::ServerProcess;
use churn::{Plan, Tally};
use watch::Sample;

/// Growth allowed between the middle and last thirds, over the relative part: resident
/// memory (allocator slack), file descriptors and tasks (a few more connections open
/// at one sample than at another).
const RSS_ALLOWANCE: f64 = 16.0 * 1024.0 * 1024.0;
const FDS_ALLOWANCE: f64 = 32.0;
const TASKS_ALLOWANCE: f64 = 64.0;

/// A figure judged for growth: its name, how it is read from a sample, its absolute
/// allowance and the unit it is shown in.
type Figure = (&'static str, fn(&Sample) -> f64, f64, f64);

/// Options of `heartwire bench soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Connections churning at once
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// How long the soak runs
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    duration: Duration,
    /// The server to soak, as ws://HOST:PORT (its /metrics is read); without it, a
    /// `heartwire serve` is started on a free port of 127.0.0.1
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A connection's average lifetime: each session draws from half to one and a
    /// half times it, then vanishes
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    lifetime: Duration,
    /// The longest a vanished connection stays away before it resumes
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    away: Duration,
    /// How often each connection publishes on its channel
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    publish_every: Duration,
    /// Connections that share a channel
    #[arg(long, default_value_t = 10)]
    per_channel: usize,
    /// How often the server's figures are sampled
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    sample_every: Duration,
    /// Growth allowed from the middle third's highest sample to the last third's, in
    /// percent (plus a small absolute allowance per figure)
    #[arg(long, default_value_t = 10.0)]
    growth_percent: f64,
}

pub(crate) fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(
        !args.sample_every.is_zero() && !args.lifetime.is_zero() && !args.publish_every.is_zero(),
        "--sample-every, --lifetime and --publish-every must be longer than zero"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(soak(&args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn soak(args: &SoakArgs) -> anyhow::Result<()> {
    let (server, _process) = match &args.url {
        Some(url) => (address_of(url).await?, None),
        None => {
            let (address, process) = start_server().await?;
            (address, Some(process))
        }
    };
    let started = Instant::now();
    let plan = Arc::new(Plan {
        server,
        lifetime: args.lifetime,
        away: args.away,
        publish_every: args.publish_every,
        per_channel: args.per_channel,
        deadline: started + args.duration,
    });
    let tally = Arc::new(Tally::default());
    eprintln!(
        "soak: {} connections churning against {server} for {}",
        args.connections,
        humantime::format_duration(args.duration)
    );
    let fleet: Vec<_> = (0..args.connections)
        .map(|index| tokio::spawn(churn::churn(index, plan.clone(), tally.clone())))
        .collect();
    let mut samples = Vec::new();
    let mut next = started + args.sample_every;
    while next < plan.deadline {
        tokio::time::sleep_until(next).await;
        let sample = watch::sample(server, &tally, started.elapsed()).await?;
        eprintln!(
            "soak: {:>4}s open {:>5} sessions {:>7} RSS {:.0} MiB fds {:.0} tasks {:.0}",
            sample.at.as_secs(),
            sample.open,
            sample.sessions,
            sample.rss_bytes / (1024.0 * 1024.0),
            sample.open_fds,
            sample.tasks
        );
        samples.push(sample);
        next += args.sample_every;
    }
    for connection in fleet {
        connection.await?;
    }
    println!("{}", watch::minutes(&samples));
    verdict(args, &samples, &tally)
}

/// The soak's outcome: an error naming what failed, or `Ok` with a summary printed.
fn verdict(args: &SoakArgs, samples: &[Sample], tally: &Tally) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let sessions = tally.sessions.load(Relaxed);
    let resumed = tally.resumed.load(Relaxed);
    let (missing, unrecovered, repeated) = (
        tally.missing.load(Relaxed),
        tally.unrecovered.load(Relaxed),
        tally.repeated.load(Relaxed),
    );
    println!(
        "soak: {sessions} sessions ({resumed} resumed), {} published, {} received, {} refused, {} failed",
        tally.published.load(Relaxed),
        tally.received.load(Relaxed),
        tally.refused.load(Relaxed),
        tally.failed.load(Relaxed),
    );
    anyhow::ensure!(sessions > 0, "soak failed: no connection opened at all");
    anyhow::ensure!(
        missing + unrecovered + repeated == 0,
        "soak failed: resumed connections lost messages: {missing} skipped, {unrecovered} resumes \
         not recovered, {repeated} received twice"
    );
    let figures: [Figure; 3] = [
        (
            "resident memory (MiB)",
            |s| s.rss_bytes,
            RSS_ALLOWANCE,
            1024.0 * 1024.0,
        ),
        ("open file descriptors", |s| s.open_fds, FDS_ALLOWANCE, 1.0),
        ("alive tasks", |s| s.tasks, TASKS_ALLOWANCE, 1.0),
    ];
    let mut growing = Vec::new();
    for (name, figure, allowance, unit) in figures {
        let values: Vec<f64> = samples.iter().map(figure).collect();
        if let Some(growth) = growth::keeps_growing(&values, args.growth_percent, allowance) {
            growing.push(format!(
                "{name} kept growing: the last third's highest sample {:.0} is over the middle \
                 third's {:.0} by more than {}% + {:.0}",
                growth.last / unit,
                growth.middle / unit,
                args.growth_percent,
                allowance / unit
            ));
        }
    }
    anyhow::ensure!(growing.is_empty(), "soak failed: {}", growing.join("; "));
    println!(
        "soak: passed: no message lost on {resumed} resumes; memory, file descriptors and tasks \
         stayed on their plateau ({} samples)",
        samples.len()
    );
    Ok(())
}

/// The address of `ws://HOST:PORT`.
async fn address_of(url: &str) -> anyhow::Result<SocketAddr> {
    let authority = url
        .strip_prefix("ws://")
        .with_context(|| format!("--url must be ws://HOST:PORT, not {url:?}"))?
        .trim_end_matches('/');
    tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("cannot resolve {authority}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{authority} has no IPv4 address"))
}

/// Starts this program's `serve` on a free port of 127.0.0.1; its log goes to a file in
/// the temporary directory.
async fn start_server() -> anyhow::Result<(SocketAddr, ServerProcess)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let program = std::env::current_exe().context("cannot find this program")?;
    let command = format!(
        "'{}' serve --listen 127.0.0.1:{port} --max-connections 1000000 \
         --max-connections-per-ip 0 --accept-rate 0/s --history-size 100",
        program.display()
    );
    let log = std::env::temp_dir().join(format!("heartwire-soak-{port}.log"));
    eprintln!("soak: starting {command} (log: {})", log.display());
    let process = ServerProcess::start(&command, port, &log).await?;
    Ok((SocketAddr::from(([127, 0, 0, 1], port)), process))
}
