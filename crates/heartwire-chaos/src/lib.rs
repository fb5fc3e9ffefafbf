//! heartwire's fault kit: a TCP proxy whose faults are switched at run time, and a
//! check that runs a heartwire client through it against a server and prints
//! verdicts.
//!
//! - `heartwire chaos proxy --listen ADDR --upstream ADDR --control ADDR` runs a
//!   [`Proxy`] and its [control API](control) (`GET`/`POST /fault`);
//! - `heartwire chaos check URL` runs the scenarios of `check` against a server;
//! - tests use [`Proxy`] in-process, switching [`Fault`]s with [`Proxy::set`].
//!
//! Files: [`fault`] is the fault model and its JSON; `switch` holds the fault in force
//! and what each connection remembers of it; `shaping` decides, without a clock, when
//! bytes may leave (latency, bandwidth, idle cut); `pump` moves one flow of a
//! connection, `connection` runs both flows and ends the connection, `traffic` records
//! its bytes and silences, [`proxy`] accepts connections; [`control`] is the HTTP API;
//! `serve` is `heartwire chaos proxy`; `check` is `heartwire chaos check`.
//! docs/CHAOS.md describes all of it for users.

mod check;
mod connection;
pub mod control;
mod error;
pub mod fault;
pub mod proxy;
mod pump;
mod serve;
mod shaping;
mod switch;
mod traffic;

pub use error::Error;
pub use fault::{Direction, Fault, Flow};
pub use proxy::{Proxy, ProxyHandle};
pub use traffic::{ConnectionInfo, FlowInfo};

/// Options of `heartwire chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    command: ChaosCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ChaosCommand {
    /// A TCP proxy whose fault is switched at run time: POST /fault on the control
    /// address (blackhole, latency, bandwidth, reset, idle-cut, none).
    Proxy(serve::ProxyArgs),
    /// Run a scripted heartwire client through a fault proxy against a heartwire
    /// server, and print a verdict per scenario; the exit status is 1 when one failed.
    Check(check::CheckArgs),
}

/// Runs `heartwire chaos` with these arguments.
pub fn run(args: ChaosArgs) -> Result<(), Error> {
    match args.command {
        ChaosCommand::Proxy(args) => serve::run(args),
        ChaosCommand::Check(args) => check::run(args),
    }
}
