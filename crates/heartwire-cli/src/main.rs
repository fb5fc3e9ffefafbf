//! `heartwire`: one command for the server, the client and the benchmarks.

use clap::{Parser, Subcommand};

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
    /// Run the server.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("heartwire: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
