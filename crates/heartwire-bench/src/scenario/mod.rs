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
//! - [`storm`]: the server killed and restarted under heartwire clients;
//! - [`footprint`]: idle connections opened 500 at a time: user-space memory per
//!   connection and the kernel's memory per socket;
//! - [`heartbeat`]: the server's CPU per Ping round trip with a few thousand idle
//!   connections;
//! - [`fanout`]: one publisher, 10,000 subscribers, a fixed publish rate: the server's
//!   CPU per delivered message and the p99 latency;
//! - [`connect`]: connects per second anonymously and with each JWT given, on one
//!   server.

mod broadcast;
mod connect;
mod detect;
mod echo;
mod fanout;
mod footprint;
mod heartbeat;
mod idle;
mod storm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::dialect::Dialect;
use super::figures::{Better, Figures};
use super::kernel;
use super::server::ServerProcess;
use super::wire::{self, Target, Token};

/// The scenarios, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    Idle,
    Broadcast,
    Echo,
    Detect,
    Storm,
    Footprint,
    Heartbeat,
    Fanout,
    Connect,
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
    /// Every connection presents the JWT in this file (minted before the run)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Idle connection counts of the footprint scenario
    #[arg(long, value_delimiter = ',', default_value = "5000,19000")]
    footprint: Vec<usize>,
    /// Connections each generator process opens at a time in the footprint scenario
    #[arg(long, default_value_t = 500)]
    footprint_concurrency: usize,
    /// Idle connections of the heartbeat scenario
    #[arg(long, default_value_t = 3000)]
    heartbeat_connections: usize,
    /// Subscribers of the fan-out scenario
    #[arg(long, default_value_t = 10_000)]
    fanout_subscribers: usize,
    /// Publishes per second of the fan-out scenario (each goes to every subscriber)
    #[arg(long, default_value_t = 2.0)]
    fanout_rate: f64,
    /// Payload size of the fan-out scenario, in bytes
    #[arg(long, default_value_t = 64)]
    fanout_size: usize,
    /// How long the fan-out scenario publishes (and, before, how long it measures the
    /// server idle with the same subscribers)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "6s")]
    fanout_window: Duration,
    /// Connections the connect scenario opens, gets `hello` on and closes, per kind
    #[arg(long, default_value_t = 3000)]
    connect_connections: usize,
    /// A kind of credential for the connect scenario, NAME=FILE with a JWT in FILE;
    /// repeatable. Anonymous connects are measured too
    #[arg(long, value_name = "NAME=FILE")]
    connect_token: Vec<String>,
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
            token: self.token_file.as_deref().map(Token::read).transpose()?,
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
                Scenario::Footprint => footprint::measure(&args, &mut figures).await,
                Scenario::Heartbeat => heartbeat::measure(&args, &mut figures).await,
                Scenario::Fanout => fanout::measure(&args, &mut figures).await,
                Scenario::Connect => connect::measure(&args, &mut figures).await,
            };
            // The machine is shared: the load goes beside each scenario's figures.
            if let Ok(load) = kernel::load_average() {
                let name = format!("{scenario:?}").to_lowercase();
                figures.add(&format!("load_{name}"), load, "", Better::Lower);
            }
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
