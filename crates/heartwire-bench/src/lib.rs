//! heartwire's load generator: `heartwire bench`, which `bench/run` drives.
//!
//! - `heartwire bench run` starts one server, runs the scenarios against it and appends
//!   its figures to a JSON-lines file;
//! - `heartwire bench report` turns the figures of every server into `RESULTS.md` and a
//!   chart, with ratios against heartwire;
//! - `heartwire bench hold` is a generator process that `run` starts: it holds up to
//!   ~19,900 connections (one process's file cap) and takes orders on stdin;
//! - `heartwire bench soak` churns thousands of connections against one server for a
//!   while and fails when its memory, file descriptors or tasks keep growing, or a
//!   resumed connection lost a message (`scripts/soak`);
//! - `heartwire bench overload` measures established connections under a flood of
//!   new ones, with overload admission off and on;
//! - `heartwire bench scale-out` runs three heartwire processes on each Redis topology
//!   (one server, a cluster, three sharded servers) and appends their figures;
//! - `heartwire bench upgrade` swaps a loaded server for a new process, live
//!   (`--take-over`) and by a restart, and appends what clients saw of each.
//!
//! Files: [`dialect`] speaks each server's protocol, [`wire`] opens connections from
//! several 127.0.0.x sources, [`fleet`] and [`hold`] are the two ends of a generator
//! process, [`server`] starts and watches the server, [`scenario`] holds the scenarios,
//! [`kernel`] reads the kernel's socket memory and the load, [`figures`], [`histogram`],
//! [`results`] and [`chart`] keep and show the figures.

mod chart;
mod dialect;
mod figures;
mod fleet;
mod histogram;
mod hold;
mod kernel;
mod overload;
mod payload;
mod progress;
mod results;
mod scaleout;
mod scenario;
mod server;
mod soak;
mod upgrade;
mod wire;

/// Options of `heartwire bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Start a server, run scenarios against it, append its figures to a file.
    Run(Box<scenario::RunArgs>),
    /// Write RESULTS.md and a chart from the figures of every server.
    Report(results::ReportArgs),
    /// Hold connections for `run` (a generator process; orders come on stdin).
    #[command(hide = true)]
    Hold(hold::HoldArgs),
    /// Three heartwire processes on one Redis, a Redis Cluster and sharded Redis servers:
    /// delivery rate, p99 and a master's fail-over, appended to a file.
    ScaleOut(scaleout::ScaleOutArgs),
    /// Thousands of connections churning (connect, subscribe, publish, vanish, resume)
    /// against one server, whose memory, file descriptors and tasks must stay flat.
    Soak(soak::SoakArgs),
    /// The round trip of established connections while a flood of clients connects,
    /// with overload admission off and on.
    Overload(overload::OverloadArgs),
    /// A live upgrade (`--take-over`) of a server holding thousands of connections
    /// under a publish stream, beside a restart: closes, messages lost and repeated,
    /// latency and the swap's duration, appended to a file.
    Upgrade(upgrade::UpgradeArgs),
}

/// Runs `heartwire bench` with these arguments.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Run(args) => scenario::run(*args),
        BenchCommand::Report(args) => results::write(args),
        BenchCommand::Hold(args) => hold::run(args),
        BenchCommand::ScaleOut(args) => scaleout::run(args),
        BenchCommand::Soak(args) => soak::run(args),
        BenchCommand::Overload(args) => overload::run(args),
        BenchCommand::Upgrade(args) => upgrade::run(args),
    }
}
