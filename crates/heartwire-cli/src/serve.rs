//! `heartwire serve`: a server whose config comes from flags, the environment and a
//! config file.
//!
//! The options themselves are the fields of [`ServerConfig`], declared once in
//! `heartwire-server` with their help, flag, variable and default; `sources` reads the
//! environment and the file for them. docs/CONFIG.md describes the file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use heartwire_server::{RedisBroker, Server, ServerConfig};

/// Options of `heartwire serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the options below: a key is a flag without its dashes
    /// (ping-interval = "5s"), and a table puts its name in front of its keys ([redis]
    /// prefix = "x" is --redis-prefix x); see docs/CONFIG.md
    #[arg(long, env = "HEARTWIRE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Threads that serve connections (one per core unless given); one costs a
    /// little less per connection and serves at most one core's worth (docs/DEPLOY.md)
    #[arg(
        long,
        env = "HEARTWIRE_WORKER_THREADS",
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub(crate) worker_threads: Option<u16>,

    /// The server's options.
    #[command(flatten)]
    pub(crate) server: ServerConfig,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.server;
    config.validate()?;
    // Always given, so tokio never reads (and panics on a bad) TOKIO_WORKER_THREADS.
    let worker_threads = args.worker_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        usize::from,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .on_thread_park(crate::memory::give_back_when_idle)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let server = match config.broker.redis_config()? {
            Some(redis) => {
                let broker = RedisBroker::start(&redis, config.retention, config.holdings)?;
                Server::bind_with_broker(config, Arc::new(broker)).await?
            }
            None => Server::bind(config).await?,
        };
        if !server.is_tls() {
            // Listening from now on, before anyone is told the server is up.
            let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot listen for SIGHUP")?;
            tokio::spawn(hangup_logged(hangup));
        }
        let scheme = if server.is_tls() { "https" } else { "http" };
        println!("heartwire listening on {scheme}://{}/", server.local_addr());
        server.run(shutdown).await?;
        Ok(())
    })
}

/// Without TLS, SIGHUP has nothing to reload: it is logged rather than fatal, as
/// service managers send it on reload whatever the options (with TLS, the server
/// reloads its certificate on it).
async fn hangup_logged(mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: nothing to reload without --tls-cert");
    }
}

/// Listens for Ctrl-C and SIGTERM from now on, and completes when either comes.
/// Called before the server accepts anyone: a signal that came before its handler
/// was in place would end the process at once, without closing its connections.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(test)]
mod docs;

#[cfg(test)]
pub(crate) mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use clap::CommandFactory;
    use heartwire_server::HeartbeatReply;

    use super::*;
    use crate::Cli;
    use crate::sources::{SourceError, TempFile};

    /// The `heartwire` command with no environment variables, so that a test sees
    /// only what it gives.
    pub(crate) fn command_without_env() -> clap::Command {
        Cli::command().mut_subcommand("serve", |serve| serve.mut_args(|arg| arg.env(None)))
    }

    /// The `serve` options of `heartwire serve ARGV`, reading a config file that holds
    /// `file` unless it is empty.
    pub(crate) fn read(argv: &[&str], file: &str) -> Result<ServeArgs, SourceError> {
        let file = (!file.is_empty()).then(|| TempFile::new(file));
        let mut args: Vec<OsString> = vec!["heartwire".into(), "serve".into()];
        if let Some(file) = &file {
            args.extend(["--config".into(), file.0.clone().into()]);
        }
        args.extend(argv.iter().map(OsString::from));
        match Cli::read(command_without_env(), &args)?.command {
            crate::Command::Serve(args) => Ok(*args),
            _ => unreachable!("the serve subcommand was asked for"),
        }
    }

    /// The server config `heartwire serve ARGV` would run with.
    fn config(argv: &[&str], file: &str) -> anyhow::Result<ServerConfig> {
        let config = read(argv, file)?.server;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let config = config(
            &["--ping-interval", "500ms", "--heartbeat-reply", "ping=pong"],
            r#"
                ping-interval = "9s"
                ping-timeout = "3s"
                max-message-size = "64KiB"
                heartbeat-reply = ["a=b", "c=d"]
            "#,
        )
        .unwrap();
        assert_eq!(config.liveness.ping_interval, Duration::from_millis(500));
        assert_eq!(config.liveness.ping_timeout, Duration::from_secs(3));
        assert_eq!(
            config.liveness.close_timeout,
            ServerConfig::default().liveness.close_timeout
        );
        assert_eq!(config.limits.max_message_size, 64 * 1024);
        assert_eq!(config.heartbeats.heartbeat_replies.len(), 1);
        assert_eq!(config.heartbeats.heartbeat_replies[0].outbound, "pong");
    }

    #[test]
    fn persist_for_zero_turns_retention_off() {
        assert_eq!(
            config(&["--persist-for", "0"], "")
                .unwrap()
                .retention
                .persist_for,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = config(&[], r#"ping-interval = "soon""#).unwrap_err();
        assert!(format!("{err:#}").contains("soon"), "{err:#}");
        assert!(
            format!("{err:#}").contains(".toml: ping-interval = \"soon\": not a duration"),
            "{err:#}"
        );
        let err = config(&[], "pings = 3").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        let err = config(&["--heartbeat-reply", "nothing"], "").unwrap_err();
        assert!(format!("{err:#}").contains("IN=OUT"), "{err:#}");
        let err = config(&["--ping-timeout", "0s"], "").unwrap_err();
        assert!(format!("{err:#}").contains("ping-timeout"), "{err:#}");
    }

    #[test]
    fn redis_comes_from_a_flag_or_the_file() {
        let shared = config(
            &["--redis-prefix", "ws4redis"],
            r#"redis = "redis://127.0.0.1:6390/""#,
        )
        .unwrap();
        let redis = shared.broker.redis_config().unwrap().unwrap();
        assert_eq!(
            redis.topology,
            heartwire_server::RedisTopology::Servers(vec!["redis://127.0.0.1:6390/".into()])
        );
        assert_eq!(redis.prefix, "ws4redis");
        assert!(
            ServerConfig::default()
                .broker
                .redis_config()
                .unwrap()
                .is_none()
        );
        let tracked = config(&[], r#"presence = ["room:*", "lobby"]"#).unwrap();
        assert!(tracked.has_presence("room:1") && tracked.has_presence("lobby"));
    }

    #[test]
    fn text_values_may_begin_with_a_dash() {
        let config = config(
            &[
                "--heartbeat-text",
                "--heartbeat--",
                "--heartbeat-reply",
                "-=+",
                "--redis-prefix",
                "-ws-",
                "--presence",
                "-lobby",
            ],
            "",
        )
        .unwrap();
        assert_eq!(
            config.heartbeats.heartbeat_text.as_deref(),
            Some("--heartbeat--")
        );
        assert_eq!(
            config.heartbeats.heartbeat_replies,
            ["-=+".parse::<HeartbeatReply>().unwrap()]
        );
        assert_eq!(config.broker.redis_prefix.as_deref(), Some("-ws-"));
        assert_eq!(config.presence, ["-lobby"]);
    }

    #[test]
    fn a_table_addresses_the_flags_that_start_with_its_name() {
        let sections = config(
            &[],
            r#"
                max-connections = 50
                [redis]
                url = "redis://127.0.0.1:6390/"
                prefix = "ws4redis"
                [heartbeat]
                text = "--heartbeat--"
                reply = ["ping=pong"]
            "#,
        )
        .unwrap();
        let flat = config(
            &[],
            r#"
                max-connections = 50
                redis = "redis://127.0.0.1:6390/"
                redis-prefix = "ws4redis"
                heartbeat-text = "--heartbeat--"
                heartbeat-reply = ["ping=pong"]
            "#,
        )
        .unwrap();
        assert_eq!(sections, flat);
        assert_eq!(sections.limits.max_connections, 50);
        assert_eq!(
            sections.broker.redis.as_deref(),
            Some("redis://127.0.0.1:6390/")
        );
    }

    /// `heartwire serve --help` shows the defaults of `ServerConfig::default()`: given
    /// nothing, the command yields exactly that config, and its help shows each
    /// default it used.
    #[test]
    fn the_help_shows_the_defaults_of_server_config() {
        let given_nothing = read(&[], "").unwrap();
        assert_eq!(given_nothing.config, None);
        assert_eq!(given_nothing.server, ServerConfig::default());

        let mut command = Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_help().to_string();
        let mut shown = 0;
        for arg in serve.get_arguments() {
            let defaults: Vec<_> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy())
                .collect();
            if defaults.is_empty() {
                continue;
            }
            let long = arg.get_long().unwrap();
            let line = help
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("--{long} ")))
                .unwrap_or_else(|| panic!("--{long} is not in the help:\n{help}"));
            let shows = format!("[default: {}]", defaults.join(", "));
            assert!(
                line.contains(&shows),
                "--{long} does not show {shows}: {line}"
            );
            shown += 1;
        }
        assert!(shown >= 15, "only {shown} defaults shown:\n{help}");
    }

    #[test]
    fn every_variable_is_named_after_its_flag() {
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let expected = format!("HEARTWIRE_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().map(|var| var.to_string_lossy().into_owned()),
                Some(expected),
                "--{long}"
            );
        }
    }
}
