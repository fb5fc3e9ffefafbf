//! `heartwire`: one command for the server, the client, the benchmarks and the fault kit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod connect;
mod serve;

/// WebSocket connections that notice when they die.
#[derive(Parser)]
#[command(name = "heartwire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the demo page at /, WebSockets at /ws, /ws/{facility} and /echo.
    Serve(Box<serve::ServeArgs>),
    /// Connect to a WebSocket server, reconnecting by itself: stdin lines go out,
    /// received messages are printed, state changes go to stderr.
    Connect(connect::ConnectArgs),
    /// Load-test a server: scenarios, figures, RESULTS.md (bench/run drives it).
    Bench(heartwire_bench::BenchArgs),
    /// Faults on demand: a TCP fault proxy, and a check of a server through it.
    Chaos(heartwire_chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; HEARTWIRE_LOG takes tracing's filter syntax, e.g. "debug".
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HEARTWIRE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Connect(args) => connect::run(args),
        Command::Bench(args) => heartwire_bench::run(args),
        Command::Chaos(args) => heartwire_chaos::run(args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("heartwire: {err:#}");
            ExitCode::FAILURE
        }
    }
}
