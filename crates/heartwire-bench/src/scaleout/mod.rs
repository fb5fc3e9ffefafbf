//! `heartwire bench scale-out`: three `heartwire serve` processes sharing channels
//! through Redis, measured in one run on each topology: one Redis, a Redis Cluster of
//! three masters (one replica each), three independent Redis servers, and the
//! cluster again with `--redis-wait-replicas 1`.
//!
//! Subscribers are spread over the three processes, each on every channel; one
//! publisher per process raises the rate step by step (doubling). A step passes when
//! 99% of the deliveries arrive and their p99 publish→receive latency is at most
//! 100 ms; the figures are the deliveries per second of the last step that passed,
//! its p99, and its p99 publish→ack. On 2 cores every process shares the same CPUs,
//! so the ratio between topologies is the figure, not the absolute rate. On the
//! cluster, a master is then killed under load, and the time until every subscriber
//! receives again on every channel of its shard is the recovery time.
//!
//! The topologies are measured one after the other, `--rounds` times over: a
//! topology's figures are those of its best round (the highest rate), and the
//! recovery time is the slowest round's, so that a moment when other work took the
//! machine's cores weighs on no topology more than another.

mod load;
pub(crate) mod redis;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::figures::{Better, Figures};
use load::Load;
use redis::{Servers, Topology};

/// The p99 a passing step stays within.
const LATENCY_LIMIT: Duration = Duration::from_millis(100);
/// Share of the expected deliveries a step must see.
const DELIVERED_ENOUGH: f64 = 0.99;
/// Time for the last messages of a step to arrive.
const DRAIN: Duration = Duration::from_millis(700);
/// The longest a recovery may take before it counts as failed.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// Options of `heartwire bench scale-out`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScaleOutArgs {
    /// Append the figures (server name `heartwire`) to this JSON-lines file
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The heartwire binary the three nodes run (default: this one)
    #[arg(long, value_name = "PATH")]
    heartwire: Option<PathBuf>,
    /// Channels of the load
    #[arg(long, default_value_t = 30)]
    channels: usize,
    /// Subscriber connections per node, each on every channel
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// The first step's publish rate, in messages per second over the three nodes
    #[arg(long, default_value_t = 300)]
    first_rate: u64,
    /// Steps at most, the rate doubling at each
    #[arg(long, default_value_t = 8)]
    steps: u32,
    /// How long each rate is held
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    step: Duration,
    /// Payload size in bytes
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The first of the three nodes' ports on 127.0.0.1
    #[arg(long, default_value_t = 9200)]
    port: u16,
    /// Times every topology is measured; the best round counts
    #[arg(long, default_value_t = 2)]
    rounds: u32,
}

/// What one round measured of one topology: the best passing step's deliveries per
/// second, p99 and ack p99, and the recovery time.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    best: Option<(f64, Duration, Duration)>,
    recovery: Option<Duration>,
}

/// One configuration measured.
#[derive(Clone, Copy, Debug)]
struct Variant {
    topology: Topology,
    wait_replicas: bool,
}

impl Variant {
    fn label(self) -> String {
        if self.wait_replicas {
            format!("{}_wait1", self.topology.label())
        } else {
            self.topology.label().to_owned()
        }
    }
}

const VARIANTS: [Variant; 4] = [
    Variant {
        topology: Topology::Single,
        wait_replicas: false,
    },
    Variant {
        topology: Topology::Cluster,
        wait_replicas: false,
    },
    Variant {
        topology: Topology::Sharded,
        wait_replicas: false,
    },
    Variant {
        topology: Topology::Cluster,
        wait_replicas: true,
    },
];

pub(crate) fn run(args: ScaleOutArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut figures = Figures::new("heartwire", &args.out);
    let heartwire = match &args.heartwire {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this program")?,
    };
    runtime.block_on(async {
        let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); VARIANTS.len()];
        for round in 0..args.rounds {
            for (index, variant) in VARIANTS.iter().enumerate() {
                eprintln!("bench: scale-out round {} — {}", round + 1, variant.label());
                match measure(&args, &heartwire, *variant).await {
                    Ok(measured) => rounds[index].push(measured),
                    Err(err) => eprintln!("bench: scale-out {} failed: {err:#}", variant.label()),
                }
            }
        }
        for (variant, measured) in VARIANTS.iter().zip(&rounds) {
            record(*variant, measured, &mut figures);
        }
    });
    eprint!("{}", figures.table());
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Three heartwire processes; killed when dropped.
struct Nodes {
    children: Vec<Child>,
    ports: Vec<u16>,
}

impl Nodes {
    async fn start(
        heartwire: &PathBuf,
        servers: &Servers,
        first_port: u16,
        wait_replicas: bool,
    ) -> anyhow::Result<Self> {
        let mut nodes = Self {
            children: Vec::new(),
            ports: Vec::new(),
        };
        for index in 0..3u16 {
            let port = first_port + index;
            let mut command = Command::new(heartwire);
            command
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(servers.serve_options())
                .args(["--outbound-queue", "100000", "--history-size", "100000"])
                // The benchmark floods on purpose, from one address.
                .args(["--message-rate", "0/s", "--accept-rate", "0/s"])
                .args(["--max-connections-per-ip", "0"])
                .env("HEARTWIRE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            if wait_replicas {
                command.args(["--redis-wait-replicas", "1"]);
            }
            nodes
                .children
                .push(command.spawn().context("cannot start heartwire serve")?);
            nodes.ports.push(port);
        }
        nodes.wait_healthy(Duration::from_secs(30)).await?;
        Ok(nodes)
    }

    /// Waits until every node's `/healthz` says ok; returns how long it took.
    async fn wait_healthy(&self, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let mut ok = true;
            for port in &self.ports {
                ok &= healthz(*port)
                    .await
                    .is_some_and(|body| body.contains(r#""status":"ok""#));
            }
            if ok {
                return Ok(start.elapsed());
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "the nodes are not ok within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `/healthz` of the node on `port`.
async fn healthz(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    Some(response)
}

/// Appends a topology's figures: its best round's rate, and its slowest recovery.
fn record(variant: Variant, rounds: &[Round], figures: &mut Figures) {
    let label = variant.label();
    let name = format!("scaleout_{label}_deliveries_per_sec");
    let best = rounds
        .iter()
        .filter_map(|round| round.best)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((deliveries, p99, ack_p99)) => {
            figures.add(&name, deliveries, "1/s", Better::Higher);
            figures.add(
                &format!("scaleout_{label}_p99_ms"),
                millis(p99),
                "ms",
                Better::Lower,
            );
            figures.add(
                &format!("scaleout_{label}_ack_p99_ms"),
                millis(ack_p99),
                "ms",
                Better::Lower,
            );
        }
        None => figures.missing(
            &name,
            "1/s",
            Better::Higher,
            "the first step failed in every round",
        ),
    }
    if variant.topology == Topology::Cluster && !variant.wait_replicas {
        let name = "scaleout_cluster3_recovery_secs";
        let recoveries: Vec<Duration> = rounds.iter().filter_map(|round| round.recovery).collect();
        match recoveries.iter().max() {
            Some(slowest) if recoveries.len() == rounds.len() => {
                figures.add(name, slowest.as_secs_f64(), "s", Better::Lower);
            }
            _ => figures.missing(
                name,
                "s",
                Better::Lower,
                &format!("not recovered within {RECOVERY_LIMIT:?} in a round"),
            ),
        }
    }
}

async fn measure(
    args: &ScaleOutArgs,
    heartwire: &PathBuf,
    variant: Variant,
) -> anyhow::Result<Round> {
    let label = variant.label();
    let mut servers = tokio::task::block_in_place(|| Servers::start(variant.topology))?;
    let nodes = Nodes::start(heartwire, &servers, args.port, variant.wait_replicas).await?;
    let channels: Vec<String> = (0..args.channels).map(|n| format!("s:{n}")).collect();
    let load = Load::start(&nodes.ports, &channels, args.subscribers, args.size).await?;
    let subscribers = (args.subscribers * nodes.ports.len()) as f64;
    let mut round = Round::default();
    for step in 0..args.steps {
        let rate = args.first_rate << step;
        let counts = &load.counts;
        counts.reset();
        counts.set_rate(rate / nodes.ports.len() as u64);
        tokio::time::sleep(args.step).await;
        counts.set_rate(0);
        tokio::time::sleep(DRAIN).await;
        let published = counts.published.load(Ordering::Relaxed) as f64;
        let received = counts.received.load(Ordering::Relaxed) as f64;
        let share = received / (published * subscribers).max(1.0);
        let p99 = counts.delivery.quantile(0.99);
        let ack_p99 = counts.ack.quantile(0.99);
        let deliveries = received / args.step.as_secs_f64();
        eprintln!(
            "bench: {label} {rate} msg/s: {deliveries:.0} deliveries/s, {:.1}% delivered, p99 {p99:?}, ack p99 {ack_p99:?}",
            share * 100.0
        );
        let passed = share >= DELIVERED_ENOUGH
            && p99.is_some_and(|p99| p99 <= LATENCY_LIMIT)
            && !load.lost_a_connection();
        if !passed {
            break;
        }
        round.best = Some((
            deliveries,
            p99.unwrap_or_default(),
            ack_p99.unwrap_or_default(),
        ));
    }
    if variant.topology == Topology::Cluster && !variant.wait_replicas {
        round.recovery = recovery(args, &mut servers, &nodes, &load, &channels).await?;
    }
    Ok(round)
}

/// Kills the master of the first channel's shard under the first step's load, and
/// measures how long until every subscriber receives, on every channel of that
/// shard, a message sent after the kill (`None`: not within [`RECOVERY_LIMIT`]).
async fn recovery(
    args: &ScaleOutArgs,
    servers: &mut Servers,
    nodes: &Nodes,
    load: &Load,
    channels: &[String],
) -> anyhow::Result<Option<Duration>> {
    let tag = |channel: &String| format!("hw:{{{channel}}}#live");
    let victim = tokio::task::block_in_place(|| servers.master_of(&tag(&channels[0])))?;
    let mut affected = HashSet::new();
    for channel in channels {
        if tokio::task::block_in_place(|| servers.master_of(&tag(channel)))? == victim {
            affected.insert(channel.clone());
        }
    }
    let pairs = (affected.len() * args.subscribers * nodes.ports.len()) as u64;
    let counts = &load.counts;
    counts.set_rate(args.first_rate / nodes.ports.len() as u64);
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| servers.kill(victim));
    counts.watch(affected);
    let killed = Instant::now();
    while counts.recovered() < pairs && killed.elapsed() < RECOVERY_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flowing = killed.elapsed();
    counts.set_rate(0);
    let recovered = counts.recovered() >= pairs;
    eprintln!(
        "bench: cluster3 master killed: every subscriber receives again on its shard's channels: {recovered} after {flowing:?}"
    );
    nodes.wait_healthy(RECOVERY_LIMIT).await?;
    Ok(recovered.then_some(flowing))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
