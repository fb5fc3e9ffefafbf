//! `heartwire bench upgrade`: a live upgrade under load, beside today's restart.
//!
//! One pass each, on a fresh Redis (so that the restart's clients can resume without a
//! gap) and a fresh server: `heartwire serve --upgrade-socket` (this executable)
//! holds `--idle` idle connections (generator processes, [`crate::fleet`]) and the
//! [`busy`] clients (publishers at a fixed rate, subscribers), measures a steady
//! window, then swaps processes:
//! - `live`: a second `heartwire serve --take-over` of the same binary takes the
//!   listening socket and every connection;
//! - `restart`: SIGTERM (close 1012 with a spread reconnect hint), then a new process
//!   starts once the old one is gone; the busy clients come back and resume from
//!   their position (the idle ones count their close and stay away).
//!
//! Figures, each named `upgrade_{idle}_{live,restart}_…`: the closes clients saw, the messages
//! lost and repeated, the p99 publish→receive of the messages of the steady window and
//! of those on their way at any time during the swap, and the swap's duration from its
//! start to the new process accepting, to the old one gone, and (restart) to every busy
//! client back.

mod busy;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use busy::{Busy, Phase, Plan};
use serve::Serve;

use crate::dialect::Dialect;
use crate::figures::{Better, Figures};
use crate::fleet::Fleet;
use crate::kernel;
use crate::scaleout::redis::{Servers, Topology};
use crate::wire::Target;

/// The longest the connections may take to open, and the clients to come back.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);
/// The longest a swap may take: the new process waits up to 10 s for Redis and the
/// old one up to 10 s for its confirmation, with room for a loaded machine.
const SWAP_PATIENCE: Duration = Duration::from_secs(60);
/// The first 127.0.0.x the idle generator processes connect from (the busy clients
/// use 127.0.0.1).
const IDLE_FIRST_SOURCE: u8 = 10;

/// Options of `heartwire bench upgrade`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpgradeArgs {
    /// The port the servers listen on, on 127.0.0.1
    #[arg(long, default_value_t = 9110)]
    port: u16,
    /// Idle connections, held by generator processes: one pair of passes (live,
    /// restart) for each count
    #[arg(long, value_delimiter = ',', default_value = "18000,8000")]
    idle: Vec<usize>,
    /// Idle connections per generator process
    #[arg(long, default_value_t = 10_000)]
    per_process: usize,
    /// Publishers, each on a channel of its own
    #[arg(long, default_value_t = 50)]
    publishers: usize,
    /// Subscribers, spread evenly over the publishers' channels
    #[arg(long, default_value_t = 950)]
    subscribers: usize,
    /// Publishes per second of each publisher
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// How long the steady state is measured before the swap
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    steady: Duration,
    /// How long messages flow after the swap, before publishing stops
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    after: Duration,
    /// The spread of the reconnect hints at a restart (`--shutdown-spread`)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    restart_spread: Duration,
    /// Append the figures to this JSON-lines file (the servers' stderr goes beside
    /// it, with `.server.log` after its name)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// How the old process gives way to the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Swap {
    /// `--take-over`: every connection moves.
    Live,
    /// SIGTERM, then a new process.
    Restart,
}

impl Swap {
    fn label(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Restart => "restart",
        }
    }
}

pub(crate) fn run(args: UpgradeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut figures = Figures::new("heartwire", &args.out);
    runtime.block_on(async {
        let passes = args
            .idle
            .iter()
            .flat_map(|idle| [Swap::Live, Swap::Restart].map(|swap| Pass { idle: *idle, swap }));
        for pass in passes {
            let Pass { idle, swap } = pass;
            eprintln!("bench: upgrade — {} idle, {}", idle, swap.label());
            let redis = match Servers::start(Topology::Single) {
                Ok(redis) => redis,
                Err(err) => {
                    eprintln!("bench: upgrade: cannot start Redis: {err:#}");
                    return;
                }
            };
            let dir = std::env::temp_dir()
                .join(format!("heartwire-bench-upgrade-{}", std::process::id()));
            let outcome = match std::fs::create_dir_all(&dir) {
                Ok(()) => {
                    let socket = dir.join("upgrade.sock");
                    measure(&args, pass, &socket, &redis.serve_options(), &mut figures).await
                }
                Err(err) => Err(err.into()),
            };
            let _ = std::fs::remove_dir_all(&dir);
            if let Ok(load) = kernel::load_average() {
                figures.add(&pass.figure("load"), load, "", Better::Lower);
            }
            if let Err(err) = outcome {
                eprintln!("bench: upgrade {} failed: {err:#}", swap.label());
            }
        }
    });
    eprint!("{}", figures.table());
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// One measured swap.
#[derive(Clone, Copy, Debug)]
struct Pass {
    idle: usize,
    swap: Swap,
}

impl Pass {
    /// The name of one of its figures: `upgrade_{idle}_{live,restart}_{figure}`.
    fn figure(self, figure: &str) -> String {
        format!("upgrade_{}_{}_{figure}", self.idle, self.swap.label())
    }
}

/// When each step of a swap ended, counted from its start.
struct Timings {
    accepting: Duration,
    old_gone: Duration,
    /// Every busy client open again (a restart).
    clients_back: Option<Duration>,
}

async fn measure(
    args: &UpgradeArgs,
    Pass { idle, swap }: Pass,
    socket: &Path,
    redis: &[String],
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let mut log = args.out.clone().into_os_string();
    log.push(".server.log");
    let log = PathBuf::from(log);
    let mut options: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{}", args.port),
        "--max-connections",
        "30000",
        "--message-rate",
        "0/s",
        "--accept-rate",
        "0/s",
        "--max-connections-per-ip",
        "0",
        "--shutdown-spread",
        &humantime::format_duration(args.restart_spread).to_string(),
        "--upgrade-socket",
        &socket.to_string_lossy(),
    ]
    .map(str::to_owned)
    .into();
    options.extend_from_slice(redis);
    let mut old = Serve::start(&options, &log, SWAP_PATIENCE).await?;
    let target = Target {
        port: args.port,
        dialect: Dialect::Heartwire,
        tls: None,
        token: None,
    };
    let (mut fleet, opened) =
        Fleet::open(target, idle, args.per_process, IDLE_FIRST_SOURCE, 256).await?;
    let plan = Plan {
        port: args.port,
        publishers: args.publishers,
        subscribers: args.subscribers,
        rate: args.rate,
    };
    let busy = Busy::start(plan, CONNECT_PATIENCE).await?;
    let tally = busy.tally.clone();
    let clients = u64::try_from(args.publishers + args.subscribers)?;

    tally.enter(Phase::Steady);
    tokio::time::sleep(args.steady).await;
    let idle_before = fleet.counters().await?.disconnects;
    tally.enter(Phase::Swap);
    let started = Instant::now();
    let (new, timings) = match swap {
        Swap::Live => {
            let mut take_over = options.clone();
            take_over.extend(["--take-over".to_owned(), socket.to_string_lossy().into()]);
            let new = Serve::start(&take_over, &log, SWAP_PATIENCE).await?;
            let accepting = started.elapsed();
            old.exited(SWAP_PATIENCE).await?;
            let old_gone = started.elapsed();
            let timings = Timings {
                accepting,
                old_gone,
                clients_back: None,
            };
            (new, timings)
        }
        Swap::Restart => {
            old.terminate().await?;
            old.exited(SWAP_PATIENCE).await?;
            let old_gone = started.elapsed();
            let new = Serve::start(&options, &log, SWAP_PATIENCE).await?;
            let accepting = started.elapsed();
            busy::wait_until(CONNECT_PATIENCE, "the busy clients to come back", || {
                tally.opens.load(Ordering::Relaxed) >= 2 * clients
            })
            .await?;
            let timings = Timings {
                accepting,
                old_gone,
                clients_back: Some(started.elapsed()),
            };
            (new, timings)
        }
    };
    tally.enter(Phase::After);
    tokio::time::sleep(args.after).await;
    let idle_closes = fleet.counters().await?.disconnects - idle_before;
    let finished = busy.finish(CONNECT_PATIENCE).await?;
    let tally = finished.tally;
    fleet.close().await;
    new.kill().await;

    let name = |figure: &str| Pass { idle, swap }.figure(figure);
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
    figures.add(
        &name("idle_connected"),
        opened.connected as f64,
        "",
        Better::Higher,
    );
    figures.add(&name("busy_clients"), clients as f64, "", Better::Higher);
    figures.add(
        &name("closes_seen"),
        (idle_closes + finished.closes) as f64,
        "",
        Better::Lower,
    );
    figures.add(
        &name("messages_received"),
        count(&tally.received),
        "",
        Better::Higher,
    );
    figures.add(
        &name("messages_lost"),
        count(&tally.lost),
        "",
        Better::Lower,
    );
    figures.add(
        &name("messages_repeated"),
        count(&tally.repeated),
        "",
        Better::Lower,
    );
    figures.add(&name("gaps_told"), count(&tally.gaps), "", Better::Lower);
    for (figure, histogram) in [("steady", &tally.steady), ("swap", &tally.swap)] {
        let figure = name(&format!("p99_{figure}_ms"));
        match histogram.quantile(0.99) {
            Some(p99) => figures.add(&figure, p99.as_secs_f64() * 1e3, "ms", Better::Lower),
            None => figures.missing(&figure, "ms", Better::Lower, "no message in the window"),
        }
    }
    if let Some(max) = tally.swap.quantile(1.0) {
        figures.add(
            &name("max_swap_ms"),
            max.as_secs_f64() * 1e3,
            "ms",
            Better::Lower,
        );
    }
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    figures.add(
        &name("accepting_ms"),
        ms(timings.accepting),
        "ms",
        Better::Lower,
    );
    figures.add(
        &name("old_gone_ms"),
        ms(timings.old_gone),
        "ms",
        Better::Lower,
    );
    if let Some(back) = timings.clients_back {
        figures.add(&name("clients_back_ms"), ms(back), "ms", Better::Lower);
    }
    Ok(())
}
