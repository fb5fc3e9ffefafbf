//! `heartwire serve`: flags, environment and config file merged into a server config.
//!
//! Every option has one name: `--ping-interval` on the command line,
//! `HEARTWIRE_PING_INTERVAL` in the environment, `ping-interval` in the TOML file.
//! A flag beats the environment, which beats the file, which beats the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use heartwire_server::{HeartbeatReply, RedisBroker, RedisConfig, Server, ServerConfig};
use serde::Deserialize;

/// Options of `heartwire serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the options below, spelled as their flags without the
    /// dashes in front, e.g. `ping-interval = "5s"`.
    #[arg(long, env = "HEARTWIRE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    options: ServeOptions,
}

/// The options that may also come from the config file.
#[derive(clap::Args, Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ServeOptions {
    /// Address and port to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "HEARTWIRE_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Send a Ping after this much silence from a client (any frame from it counts)
    /// [default: 20s]
    #[arg(long, env = "HEARTWIRE_PING_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    ping_interval: Option<Duration>,

    /// Drop a client that sends nothing at all for this long after a Ping, with close
    /// 1011 [default: 20s]
    #[arg(long, env = "HEARTWIRE_PING_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    ping_timeout: Option<Duration>,

    /// Drop a connection whose close handshake takes longer than this [default: 10s]
    #[arg(long, env = "HEARTWIRE_CLOSE_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    close_timeout: Option<Duration>,

    /// Magic heartbeat string, as django-websocket-redis's WS4REDIS_HEARTBEAT: sent on
    /// /ws/{facility} every --heartbeat-interval, and dropped when a client sends it
    /// [default: off]
    #[arg(long, env = "HEARTWIRE_HEARTBEAT_TEXT", value_name = "TEXT")]
    heartbeat_text: Option<String>,

    /// How often the magic heartbeat string is sent [default: 4s]
    #[arg(long, env = "HEARTWIRE_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    heartbeat_interval: Option<Duration>,

    /// Answer the text IN with the text OUT on every endpoint, as a heartbeat that is
    /// never published or echoed; repeat for several rules (e.g. ping=pong). The
    /// environment variable holds one rule; the config file takes a list.
    #[arg(long, env = "HEARTWIRE_HEARTBEAT_REPLY", value_name = "IN=OUT")]
    #[serde(default)]
    heartbeat_reply: Vec<String>,

    /// Close a connection that sends a larger message, with close 1009 (e.g. 1MiB,
    /// 65536) [default: 1MiB]
    #[arg(long, env = "HEARTWIRE_MAX_MESSAGE_SIZE", value_name = "SIZE")]
    max_message_size: Option<ByteSize>,

    /// Refuse WebSocket upgrades beyond this many open connections, with HTTP 503
    /// [default: 10000]
    #[arg(long, env = "HEARTWIRE_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,

    /// Keep the last message of each django-websocket-redis facility this long for
    /// late joiners; 0 keeps none [default: 3600s]
    #[arg(long, env = "HEARTWIRE_PERSIST_FOR", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    persist_for: Option<Duration>,

    /// At shutdown, spread the reconnect hints given to clients over this window so
    /// they do not all return at once [default: 5s]
    #[arg(long, env = "HEARTWIRE_SHUTDOWN_SPREAD", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    shutdown_spread: Option<Duration>,

    /// Drop a TCP connection that has not sent its whole HTTP request within this
    /// time [default: 10s]
    #[arg(long, env = "HEARTWIRE_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    handshake_timeout: Option<Duration>,

    /// Messages that may wait for a client that does not read; past this it is closed
    /// with 1008 "slow consumer" [default: 1024]
    #[arg(long, env = "HEARTWIRE_OUTBOUND_QUEUE", value_name = "N")]
    outbound_queue: Option<usize>,

    /// Messages kept per channel, so that a client that reconnects with its last
    /// position receives exactly what it missed [default: 1000]
    #[arg(long, env = "HEARTWIRE_HISTORY_SIZE", value_name = "N")]
    history_size: Option<usize>,

    /// How long a channel without subscribers keeps its history [default: 300s]
    #[arg(long, env = "HEARTWIRE_HISTORY_TTL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    history_ttl: Option<Duration>,

    /// How long a publish id is remembered, so that a publish a client sends again
    /// after a reconnect is not published twice [default: 120s]
    #[arg(long, env = "HEARTWIRE_DEDUP_WINDOW", value_parser = humantime::parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration")]
    dedup_window: Option<Duration>,

    /// Share channels with every node on this Redis (redis://host:port/db): a message
    /// published on one node reaches subscribers on all of them, `seq` and history
    /// come from Redis, and django-websocket-redis apps on the same Redis interoperate
    /// [default: off, channels stay in this process]
    #[arg(long, env = "HEARTWIRE_REDIS", value_name = "URL")]
    redis: Option<String>,

    /// django-websocket-redis's WS4REDIS_PREFIX: Redis names start with PREFIX: (the
    /// facility chat is then PREFIX:broadcast:chat) [default: none]
    #[arg(long, env = "HEARTWIRE_REDIS_PREFIX", value_name = "PREFIX")]
    redis_prefix: Option<String>,

    /// Track who is subscribed to the channels matching PATTERN (a glob where *
    /// matches anything, e.g. room:*): their subscribers receive join and leave
    /// events and may ask for the member list, across all nodes with --redis. Repeat
    /// for several patterns; the environment variable holds one, the config file a
    /// list [default: none]
    #[arg(long, env = "HEARTWIRE_PRESENCE", value_name = "PATTERN")]
    #[serde(default)]
    presence: Vec<String>,
}

fn duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map(Some).map_err(|err| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration like 500ms or 20s: {err}"
        ))
    })
}

impl ServeOptions {
    /// Fills what is unset here from `file`.
    fn or(self, file: Self) -> Self {
        Self {
            listen: self.listen.or(file.listen),
            ping_interval: self.ping_interval.or(file.ping_interval),
            ping_timeout: self.ping_timeout.or(file.ping_timeout),
            close_timeout: self.close_timeout.or(file.close_timeout),
            heartbeat_text: self.heartbeat_text.or(file.heartbeat_text),
            heartbeat_interval: self.heartbeat_interval.or(file.heartbeat_interval),
            heartbeat_reply: if self.heartbeat_reply.is_empty() {
                file.heartbeat_reply
            } else {
                self.heartbeat_reply
            },
            max_message_size: self.max_message_size.or(file.max_message_size),
            max_connections: self.max_connections.or(file.max_connections),
            persist_for: self.persist_for.or(file.persist_for),
            shutdown_spread: self.shutdown_spread.or(file.shutdown_spread),
            handshake_timeout: self.handshake_timeout.or(file.handshake_timeout),
            outbound_queue: self.outbound_queue.or(file.outbound_queue),
            history_size: self.history_size.or(file.history_size),
            history_ttl: self.history_ttl.or(file.history_ttl),
            dedup_window: self.dedup_window.or(file.dedup_window),
            redis: self.redis.or(file.redis),
            redis_prefix: self.redis_prefix.or(file.redis_prefix),
            presence: if self.presence.is_empty() {
                file.presence
            } else {
                self.presence
            },
        }
    }

    /// The Redis broker's settings, when `--redis` is given.
    fn redis(&self) -> Option<RedisConfig> {
        self.redis.as_ref().map(|url| RedisConfig {
            url: url.clone(),
            prefix: self.redis_prefix.clone().unwrap_or_default(),
        })
    }

    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let default = ServerConfig::default();
        let max_message_size = match self.max_message_size {
            Some(size) => {
                usize::try_from(size.as_u64()).context("max-message-size is too large")?
            }
            None => default.max_message_size,
        };
        let heartbeat_replies = self
            .heartbeat_reply
            .iter()
            .map(|rule| rule.parse::<HeartbeatReply>())
            .collect::<Result<_, _>>()?;
        let config = ServerConfig {
            listen: self.listen.unwrap_or(default.listen),
            ping_interval: self.ping_interval.unwrap_or(default.ping_interval),
            ping_timeout: self.ping_timeout.unwrap_or(default.ping_timeout),
            close_timeout: self.close_timeout.unwrap_or(default.close_timeout),
            heartbeat_text: self.heartbeat_text.or(default.heartbeat_text),
            heartbeat_interval: self
                .heartbeat_interval
                .unwrap_or(default.heartbeat_interval),
            heartbeat_replies,
            max_message_size,
            max_connections: self.max_connections.unwrap_or(default.max_connections),
            persist_for: self.persist_for.unwrap_or(default.persist_for),
            shutdown_spread: self.shutdown_spread.unwrap_or(default.shutdown_spread),
            handshake_timeout: self.handshake_timeout.unwrap_or(default.handshake_timeout),
            outbound_queue: self.outbound_queue.unwrap_or(default.outbound_queue),
            history_size: self.history_size.unwrap_or(default.history_size),
            history_ttl: self.history_ttl.unwrap_or(default.history_ttl),
            dedup_window: self.dedup_window.unwrap_or(default.dedup_window),
            presence: self.presence,
            ..default
        };
        config.validate()?;
        Ok(config)
    }
}

fn read_file(path: &Path) -> anyhow::Result<ServeOptions> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

impl ServeArgs {
    /// The server's config, and the Redis broker's when one is asked for.
    fn into_config(self) -> anyhow::Result<(ServerConfig, Option<RedisConfig>)> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => ServeOptions::default(),
        };
        let options = self.options.or(file);
        let redis = options.redis();
        Ok((options.into_config()?, redis))
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (config, redis) = args.into_config()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = match redis {
            Some(redis) => {
                let broker = RedisBroker::start(&redis, config.retention())?;
                Server::bind_with_broker(config, Arc::new(broker)).await?
            }
            None => Server::bind(config).await?,
        };
        println!("heartwire listening on http://{}/", server.local_addr());
        server.run(shutdown_signal()).await?;
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(argv: &[&str], file: &str) -> anyhow::Result<ServerConfig> {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))?;
        let file: ServeOptions = toml::from_str(file)?;
        cli.args.options.or(file).into_config()
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
        assert_eq!(config.ping_interval, Duration::from_millis(500));
        assert_eq!(config.ping_timeout, Duration::from_secs(3));
        assert_eq!(config.close_timeout, ServerConfig::default().close_timeout);
        assert_eq!(config.max_message_size, 64 * 1024);
        assert_eq!(config.heartbeat_replies.len(), 1);
        assert_eq!(config.heartbeat_replies[0].outbound, "pong");
    }

    #[test]
    fn persist_for_zero_turns_retention_off() {
        assert_eq!(
            config(&["--persist-for", "0"], "").unwrap().persist_for,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = config(&[], r#"ping-interval = "soon""#).unwrap_err();
        assert!(format!("{err:#}").contains("soon"), "{err:#}");
        let err = config(&[], "pings = 3").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        let err = config(&["--heartbeat-reply", "nothing"], "").unwrap_err();
        assert!(format!("{err:#}").contains("IN=OUT"), "{err:#}");
        let err = config(&["--ping-timeout", "0s"], "").unwrap_err();
        assert!(format!("{err:#}").contains("ping-timeout"), "{err:#}");
    }

    #[test]
    fn redis_comes_from_a_flag_or_the_file() {
        let cli = Cli::try_parse_from(["serve", "--redis-prefix", "ws4redis"]).unwrap();
        let file: ServeOptions = toml::from_str(r#"redis = "redis://127.0.0.1:6390/""#).unwrap();
        let redis = cli.args.options.or(file).redis().unwrap();
        assert_eq!(redis.url, "redis://127.0.0.1:6390/");
        assert_eq!(redis.prefix, "ws4redis");
        let none: ServeOptions = toml::from_str("").unwrap();
        assert!(none.redis().is_none());
        let config = config(&[], r#"presence = ["room:*", "lobby"]"#).unwrap();
        assert!(config.has_presence("room:1") && config.has_presence("lobby"));
    }
}
