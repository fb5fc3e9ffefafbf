//! `heartwire`: one command for the server, the client, the benchmarks and the fault kit.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use heartwire_server::ServerConfig;

mod api;
mod connect;
mod logging;
mod memory;
mod serve;
mod sources;
mod token_command;

use sources::SourceError;

/// WebSocket connections that notice when they die.
#[derive(clap::Parser)]
#[command(name = "heartwire", version, about)]
struct Cli {
    /// How log lines look on stderr: text, or JSON lines for a log collector. Which
    /// lines: RUST_LOG (e.g. "debug", "info,heartwire_server=debug"; default info)
    #[arg(
        long,
        global = true,
        env = "HEARTWIRE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: logging::LogFormat,

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
    /// Publish a message through the server API (POST /api/publish).
    Publish(api::PublishArgs),
    /// Call the server API: publish, broadcast, history, presence, channels, info,
    /// disconnect, unsubscribe (docs/API.md).
    Api(api::ApiArgs),
    /// Load-test a server: scenarios, figures, RESULTS.md (bench/run drives it).
    Bench(heartwire_bench::BenchArgs),
    /// Faults on demand: a TCP fault proxy, and a check of a server through it.
    Chaos(heartwire_chaos::ChaosArgs),
}

impl Cli {
    /// Reads `argv` (program name first) with `command` (this CLI's, or a test's
    /// variant of it): `serve` also takes its options from the environment and from
    /// its config file.
    fn read(command: clap::Command, argv: &[OsString]) -> Result<Self, SourceError> {
        let (matches, server) = sources::parse::<ServerConfig>(command, "serve", argv)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        // The lists of tables of the file reach the server's config only through
        // `sources`, so its config replaces the one clap built from the flags alone.
        if let (Command::Serve(args), Some(server)) = (&mut cli.command, server) {
            args.server = server;
        }
        Ok(cli)
    }
}

fn main() -> ExitCode {
    memory::small_pages_only();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::read(Cli::command(), &argv) {
        Ok(cli) => cli,
        Err(SourceError::CommandLine(err)) => err.exit(),
        Err(err) => {
            let code = ExitCode::from(err.exit_code());
            eprintln!("heartwire: {:#}", anyhow::Error::new(err));
            return code;
        }
    };
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Connect(args) => connect::run(args),
        Command::Publish(args) => api::publish(args),
        Command::Api(args) => api::api(args),
        Command::Bench(args) => heartwire_bench::run(args),
        Command::Chaos(args) => heartwire_chaos::run(args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Said already, in the form the command was asked to speak.
        Err(err) if err.is::<connect::Reported>() => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("heartwire: {err:#}");
            ExitCode::FAILURE
        }
    }
}
