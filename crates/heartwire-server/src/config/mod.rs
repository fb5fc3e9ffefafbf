//! What a server is told at start: addresses, heartbeat timing, limits, history.
//!
//! Every option is declared once, as a field of [`ServerConfig`] or of one of its
//! groups: its doc comment is the help text of `heartwire serve --help`, its `#[arg]`
//! attribute names the flag (`--ping-interval`) and the environment variable
//! (`HEARTWIRE_PING_INTERVAL`), and its `default_value` is the built-in default, read
//! by the same value parser as a flag. `Default` is those declared defaults, so a
//! library user who writes `ServerConfig::default()` gets what `heartwire serve` runs
//! with when given nothing. docs/CONFIG.md has the table of options and the recipe
//! for adding one.
//!
//! Settings that are lists of tables in the config file (they have no flag) are
//! fields with `#[arg(skip)]`, read by serde: that is what `Deserialize` is for; the
//! fields with a flag are `#[serde(skip)]`.

mod access;
mod api;
mod broker;
mod compression;
mod glob;
mod heartbeats;
mod holdings;
mod limits;
mod liveness;
mod overload;
mod parse;
mod rates;
mod retention;
mod sse;
mod tls;
mod upgrade;

use std::net::SocketAddr;
use std::time::Duration;

use heartwire_core::LivenessConfig;

use crate::Error;
use crate::permissions::ChannelRule;

pub use access::{Access, Secret};
pub use api::ApiAccess;
pub use broker::BrokerConfig;
pub use compression::Compression;
pub(crate) use glob::glob_matches;
pub use heartbeats::{HeartbeatConventions, HeartbeatReply};
pub use holdings::Holdings;
pub use limits::Limits;
pub use liveness::LivenessTiming;
pub use overload::OverloadBounds;
pub use rates::{Rate, RateLimits};
pub use retention::Retention;
pub use sse::SseOptions;
pub use tls::TlsFiles;
pub use upgrade::Upgrade;

/// Everything a [`Server`](super::Server) needs to know.
#[derive(clap::Args, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Address and port to listen on: 127.0.0.1:8080, [::1]:8080, localhost:8080,
    /// :8080 (every interface) or 8080 (loopback)
    #[arg(
        long,
        env = "HEARTWIRE_LISTEN",
        value_name = "ADDR",
        value_parser = parse::listen,
        default_value = "127.0.0.1:8080"
    )]
    #[serde(skip)]
    pub listen: SocketAddr,

    /// At shutdown, spread the reconnect hints given to clients over this window so
    /// they do not all return at once
    #[arg(
        long,
        env = "HEARTWIRE_SHUTDOWN_SPREAD",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse::duration
    )]
    #[serde(skip)]
    pub shutdown_spread: Duration,

    /// Track who is subscribed to the channels matching PATTERN (a glob where *
    /// matches anything, e.g. room:*): their subscribers receive join and leave
    /// events and may ask for the member list, across all nodes with --redis. Repeat
    /// for several patterns; the environment variable holds one, the config file a
    /// list (none unless given)
    #[arg(
        long = "presence",
        env = "HEARTWIRE_PRESENCE",
        value_name = "PATTERN",
        allow_hyphen_values = true
    )]
    #[serde(skip)]
    pub presence: Vec<String>,

    /// When a silent client is pinged and dropped.
    #[command(flatten)]
    #[serde(skip)]
    pub liveness: LivenessTiming,

    /// Heartbeats of existing clients that are not WebSocket Pings.
    #[command(flatten)]
    #[serde(skip)]
    pub heartbeats: HeartbeatConventions,

    /// Bounds on messages, connections, queues and handshakes.
    #[command(flatten)]
    #[serde(skip)]
    pub limits: Limits,

    /// Whether messages are compressed (permessage-deflate), and from which size.
    #[command(flatten)]
    #[serde(skip)]
    pub compression: Compression,

    /// How fast clients may connect and send, and how many connections each holds.
    #[command(flatten)]
    #[serde(skip)]
    pub rates: RateLimits,

    /// What clients can make the node hold in memory.
    #[command(flatten)]
    #[serde(skip)]
    pub holdings: Holdings,

    /// What the broker keeps of each channel.
    #[command(flatten)]
    #[serde(skip)]
    pub retention: Retention,

    /// The broker `heartwire serve` uses.
    #[command(flatten)]
    #[serde(skip)]
    pub broker: BrokerConfig,

    /// How browsers reading `/sse` come back.
    #[command(flatten)]
    #[serde(skip)]
    pub sse: SseOptions,

    /// Live upgrade: handing connections over to a new process.
    #[command(flatten)]
    #[serde(skip)]
    pub upgrade: Upgrade,

    /// Who may connect, and as whom.
    #[command(flatten)]
    #[serde(skip)]
    pub access: Access,

    /// Who may call the server API and open the admin page.
    #[command(flatten)]
    #[serde(skip)]
    pub api: ApiAccess,
    /// When new connections are refused to keep the open ones responsive.
    #[command(flatten)]
    #[serde(skip)]
    pub overload: OverloadBounds,

    /// TLS on the listener.
    #[command(flatten)]
    #[serde(skip)]
    pub tls: TlsFiles,

    /// Who may subscribe, publish, see presence and replay history on which channels:
    /// the `[[channels]]` rules of the config file, first match wins (docs/SECURITY.md).
    #[arg(skip)]
    pub channels: Vec<ChannelRule>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        declared_defaults()
    }
}

impl ServerConfig {
    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("ping-interval", self.liveness.ping_interval),
            ("ping-timeout", self.liveness.ping_timeout),
            ("close-timeout", self.liveness.close_timeout),
            ("heartbeat-interval", self.heartbeats.heartbeat_interval),
            ("handshake-timeout", self.limits.handshake_timeout),
            ("auth-timeout", self.access.auth_timeout),
            ("jwt-jwks-refetch", self.access.jwt_jwks_refetch),
            ("jwt-jwks-max-age", self.access.jwt_jwks_max_age),
            ("tls-reload-check", self.tls.tls_reload_check),
            ("sse-retry", self.sse.sse_retry),
            ("message-timeout", self.holdings.message_timeout),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(Error::Config(format!("{name} must be greater than zero")));
            }
        }
        let at_least_one = [
            ("max-message-size", self.limits.max_message_size, " byte"),
            ("max-connections", self.limits.max_connections, ""),
            ("outbound-queue", self.limits.outbound_queue, ""),
            ("max-channels", self.holdings.max_channels, ""),
            (
                "max-created-channels",
                self.holdings.max_created_channels,
                "",
            ),
            (
                "max-publish-id-length",
                self.holdings.max_publish_id_length,
                " byte",
            ),
            ("max-publish-ids", self.holdings.max_publish_ids, ""),
            ("message-burst", self.rates.message_burst as usize, ""),
        ];
        for (name, value, unit) in at_least_one {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1{unit}")));
            }
        }
        if self.heartbeats.heartbeat_text.as_deref() == Some("") {
            return Err(Error::Config("heartbeat-text must not be empty".into()));
        }
        self.broker.redis_config()?;
        self.tls.pair()?;
        crate::auth::origin::OriginPolicy::new(&self.access.allowed_origins)
            .map_err(Error::Config)?;
        Ok(())
    }

    /// Whether the members of `channel` are tracked.
    pub fn has_presence(&self, channel: &str) -> bool {
        self.presence
            .iter()
            .any(|pattern| glob::glob_matches(pattern, channel))
    }

    /// Whether connections on `facility` (django-websocket-redis's endpoint) get the
    /// magic heartbeat.
    pub(crate) fn sends_heartbeat_on(&self, facility: Option<&str>) -> bool {
        let heartbeats = &self.heartbeats;
        heartbeats.heartbeat_text.is_some()
            && facility.is_some_and(|facility| heartbeats.is_sent_on(facility))
    }

    /// Liveness timing of a connection, with the magic heartbeat when `heartbeat`.
    pub(crate) fn liveness(&self, heartbeat: bool) -> LivenessConfig {
        let interval = self.heartbeats.heartbeat_interval;
        self.liveness.machine(heartbeat.then_some(interval))
    }
}

/// The defaults that the fields of `T` declare (`default_value`), read by their own
/// value parsers, with no command line and no environment.
fn declared_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|arg| arg.env(None));
    let matches = command
        .try_get_matches_from(std::iter::empty::<&str>())
        .expect("every declared default is a value its parser accepts");
    T::from_arg_matches(&matches).expect("the defaults fill every field")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_the_patterns() {
        let config = ServerConfig {
            presence: vec!["room:*".into()],
            ..ServerConfig::default()
        };
        assert!(config.has_presence("room:7") && !config.has_presence("news"));
    }

    #[test]
    fn defaults_are_valid_and_zero_timings_are_not() {
        assert!(ServerConfig::default().validate().is_ok());
        let bad = ServerConfig {
            liveness: LivenessTiming {
                ping_timeout: Duration::ZERO,
                ..LivenessTiming::default()
            },
            ..ServerConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("ping-timeout"), "{err}");
    }

    #[test]
    fn declared_defaults_ignore_the_environment() {
        #[derive(clap::Args)]
        struct Probe {
            #[arg(long, env = "PATH", default_value = "declared")]
            value: String,
        }
        assert!(
            std::env::var_os("PATH").is_some(),
            "the probe needs PATH set"
        );
        assert_eq!(declared_defaults::<Probe>().value, "declared");
    }
}
