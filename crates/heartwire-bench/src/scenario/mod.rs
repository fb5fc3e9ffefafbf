//! `heartwire bench run`: the scenarios, run one after the other against one server,
//! each with a fresh server process (so memory baselines are clean).
//!
//! - [`idle`]: idle connections with heartbeats on (memory per connection, connects
//!   per second) and, on the largest count, the CPU cost of a heartbeat;
//! - [`broadcast`]: one publisher, many subscribers, the highest delivery rate with
//!   p99 publish→receive within 100 ms;
//! - [`echo`]: messages per second through an echo endpoint;
//! - [`detect`]: how long after the bound frozen peers are dropped, and whether
//!   live ones are dropped by mistake (heartwire only: it reads /metrics);
//! - [`storm`]: the server killed and restarted under heartwire clients.

mod broadcast;
mod detect;
mod echo;
mod idle;
mod storm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::dialect::Dialect;
use super::figures::Figures;
use super::server::ServerProcess;
use super::wire::{self, Target};

/// The scenarios, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    Idle,
    Broadcast,
    Echo,
    Detect,
    Storm,
}

/// Options of `heartwire bench run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The server's name in the results, e.g. heartwire, node-ws
    #[arg(long)]
    name: String,
    /// The shell command that starts the server (run with `exec`, so its process is
    /// the one measured)
    #[arg(long, value_name = "COMMAND")]
    server: String,
    /// The port the server listens on, on 127.0.0.1
    #[arg(long)]
    port: u16,
    #[arg(long, value_enum)]
    dialect: Dialect,
    /// The scenarios to run
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "idle,broadcast,echo,detect,storm"
    )]
    scenarios: Vec<Scenario>,
    /// Append the figures to this JSON-lines file
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Idle connection counts to measure memory at; the heartbeat cost is taken at the
    /// last one
    #[arg(long, value_delimiter = ',', default_value = "10000,19000")]
    idle: Vec<usize>,
    /// How long the heartbeat cost is measured over
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    heartbeat_window: Duration,
    /// Subscriber counts of the broadcast scenario
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    subscribers: Vec<usize>,
    /// Payload sizes of the broadcast scenario, in bytes
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    sizes: Vec<usize>,
    /// How long each publish rate is held
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    broadcast_step: Duration,
    /// Publish rates tried at most: 10,000 deliveries per second, doubled at each step
    #[arg(long, default_value_t = 9)]
    broadcast_steps: u32,
    /// Connections of the echo scenario
    #[arg(long, default_value_t = 100)]
    echo_connections: usize,
    /// How long the echo scenario runs
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    echo_window: Duration,
    /// Connections of the detection scenario, 1% of them frozen
    #[arg(long, default_value_t = 10_000)]
    detect_connections: usize,
    /// The server's detection bound (ping interval + ping timeout) as its command sets it
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    detection_bound: Duration,
    /// Clients of the reconnect storm
    #[arg(long, default_value_t = 10_000)]
    storm_clients: usize,
    /// Connections per generator process (each process holds at most ~19,900 sockets)
    #[arg(long, default_value_t = 10_000)]
    per_process: usize,
    /// Pause after connections open, before measuring (a few heartbeats pass)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    settle: Duration,
    /// The server speaks TLS with a certificate for localhost: connect with wss://,
    /// trusting only the CA in this PEM file
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

impl RunArgs {
    /// Starts the server; its stderr goes to the figures file's name with
    /// `.server.log` after it.
    async fn start_server(&self) -> anyhow::Result<ServerProcess> {
        let mut log = self.out.clone().into_os_string();
        log.push(".server.log");
        ServerProcess::start(&self.server, self.port, Path::new(&log)).await
    }

    fn target(&self) -> anyhow::Result<Target> {
        Ok(Target {
            port: self.port,
            dialect: self.dialect,
            tls: self
                .tls_ca
                .as_deref()
                .map(wire::Tls::trusting)
                .transpose()?,
        })
    }
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut figures = Figures::new(&args.name, &args.out);
    runtime.block_on(async {
        for scenario in &args.scenarios {
            eprintln!("bench: {} — {scenario:?}", args.name);
            let outcome = match scenario {
                Scenario::Idle => idle::measure(&args, &mut figures).await,
                Scenario::Broadcast => broadcast::measure(&args, &mut figures).await,
                Scenario::Echo => echo::measure(&args, &mut figures).await,
                Scenario::Detect => detect::measure(&args, &mut figures).await,
                Scenario::Storm => storm::measure(&args, &mut figures).await,
            };
            // One scenario failing must not lose the others' figures.
            if let Err(err) = outcome {
                eprintln!("bench: {} {scenario:?} failed: {err:#}", args.name);
            }
        }
    });
    eprint!("{}", figures.table());
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
