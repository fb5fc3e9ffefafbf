//! What a client connects to and how it behaves: server URLs, liveness timing,
//! reconnect policy, outbox size and credentials.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use heartwire_core::BackoffConfig;
use url::Url;

use crate::Error;
use crate::tls::TlsRoots;

/// A future that yields a fresh token, or `None` to connect without one.
pub type TokenFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// Called before every connection attempt, so each attempt carries a fresh token.
pub type TokenProvider = Arc<dyn Fn() -> TokenFuture + Send + Sync>;

/// Where the token goes in the handshake request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenPlacement {
    /// An `Authorization: Bearer TOKEN` header (the default: headers stay out of
    /// access logs).
    #[default]
    Header,
    /// A `token=TOKEN` query parameter, for servers and proxies that only see URLs.
    Query,
    /// Both the header and the query parameter.
    Both,
}

/// Configuration of a [`Client`](super::Client).
#[derive(Clone)]
pub struct ClientConfig {
    /// The servers' URLs, primary first, then the backups in order of preference.
    pub servers: Vec<Url>,
    /// Inbound silence after which the client sends a Ping, unless the server's
    /// `hello` advertises its own.
    pub ping_interval: Duration,
    /// How long after a Ping the server has to send any frame, unless the server's
    /// `hello` advertises its own.
    pub ping_timeout: Duration,
    /// How long a close handshake the client started may take.
    pub close_timeout: Duration,
    /// How long the TCP connect plus WebSocket handshake of one attempt may take.
    pub connect_timeout: Duration,
    /// The reconnect policy.
    pub backoff: BackoffConfig,
    /// How long after a failure a server preferred to the current one is probed
    /// again (fail-back to the primary).
    pub fail_back_after: Duration,
    /// How many outgoing messages may wait for a connection.
    pub outbox_capacity: usize,
    /// How many events may wait for the caller to take them.
    pub event_capacity: usize,
    /// Report each acknowledged publish as [`Event::Published`](crate::Event::Published).
    /// Off by default: a publisher that never reads its events would otherwise stall
    /// once `event_capacity` acks wait.
    pub report_acks: bool,
    /// Channels to subscribe to on every connection to a heartwire server.
    pub subscriptions: Vec<String>,
    /// Supplies a fresh token before every attempt.
    pub token: Option<TokenProvider>,
    /// Where the token goes.
    pub token_placement: TokenPlacement,
    /// Seed of the jitter generator; `None` seeds it from the operating system.
    pub jitter_seed: Option<u64>,
    /// The certificate authorities a `wss://` server's certificate must chain to:
    /// the platform's by default, a private CA with [`TlsRoots::from_pem_file`].
    pub tls_roots: TlsRoots,
}

impl ClientConfig {
    /// The default ping interval: 20 s, as Python `websockets`.
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
    /// The default ping timeout: 20 s, as Python `websockets`.
    pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);

    /// Defaults for these server URLs, primary first. Fails on a URL that is not
    /// `ws://` or `wss://`, or on an empty list.
    pub fn new<I, S>(servers: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let servers = servers
            .into_iter()
            .map(|text| parse_server_url(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        Ok(Self {
            servers,
            ping_interval: Self::DEFAULT_PING_INTERVAL,
            ping_timeout: Self::DEFAULT_PING_TIMEOUT,
            close_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            fail_back_after: Duration::from_secs(30),
            outbox_capacity: 1024,
            event_capacity: 1024,
            report_acks: false,
            subscriptions: Vec::new(),
            token: None,
            token_placement: TokenPlacement::default(),
            jitter_seed: None,
            tls_roots: TlsRoots::default(),
        })
    }

    /// Checks the settings that cannot work.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.servers.is_empty() {
            return Err(Error::NoServers);
        }
        let positive = [
            ("ping_interval", self.ping_interval.is_zero()),
            ("ping_timeout", self.ping_timeout.is_zero()),
            ("outbox_capacity", self.outbox_capacity == 0),
            ("event_capacity", self.event_capacity == 0),
        ];
        if let Some((setting, _)) = positive.into_iter().find(|(_, zero)| *zero) {
            return Err(Error::ZeroSetting { setting });
        }
        for channel in &self.subscriptions {
            heartwire_core::protocol::validate_channel(channel)?;
        }
        // Roots that cannot be loaded are an error now, not on every attempt.
        if self.servers.iter().any(|url| url.scheme() == "wss") {
            self.tls_roots.store()?;
        }
        Ok(())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("servers", &self.servers)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("fail_back_after", &self.fail_back_after)
            .field("outbox_capacity", &self.outbox_capacity)
            .field("event_capacity", &self.event_capacity)
            .field("report_acks", &self.report_acks)
            .field("subscriptions", &self.subscriptions)
            .field("token", &self.token.as_ref().map(|_| "<provider>"))
            .field("token_placement", &self.token_placement)
            .field("tls_roots", &self.tls_roots)
            .finish()
    }
}

/// Parses one server URL, which must be `ws://` or `wss://` with a host.
pub fn parse_server_url(text: &str) -> Result<Url, Error> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: text.to_owned(),
        reason,
    };
    let url = Url::parse(text).map_err(|err| invalid(err.to_string()))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(invalid(format!(
            "the scheme is `{}`, expected `ws` or `wss`",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_must_be_websocket_urls() {
        assert!(parse_server_url("ws://127.0.0.1:1/ws").is_ok());
        assert!(parse_server_url("wss://example.com").is_ok());
        for bad in ["http://x/", "not a url", "ws://", ""] {
            assert!(
                matches!(parse_server_url(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            ClientConfig::new(Vec::<&str>::new()),
            Err(Error::NoServers)
        ));
    }

    #[test]
    fn bad_channels_are_refused_up_front() {
        let mut config = ClientConfig::new(["ws://127.0.0.1:1"]).unwrap();
        config.subscriptions = vec!["no spaces".into()];
        assert!(matches!(config.validate(), Err(Error::InvalidChannel(_))));
    }
}
