//! The heartwire server, behind `heartwire serve`: it pings clients, reaps the dead,
//! fans channel messages out (in this process, or across nodes through Redis), and
//! speaks the heartbeat conventions of existing clients.
//!
//! The rules of liveness live in the sans-IO crate [`heartwire_core`]; this crate
//! drives them with real sockets and timers.
//!
//! How a connection flows through the files here:
//! - [`listener`] accepts TCP connections, does the TLS handshake when [`tls`] is on,
//!   and serves HTTP with a handshake deadline over a [`stream`], within the accept
//!   rate and `--max-connections`;
//! - [`admission`] decides the rate limits and the connections of each address and
//!   user;
//! - [`routes`] maps paths to endpoints, and takes a [`slot`] in the [`registry`]
//!   before each upgrade (HTTP 503 when the server is full);
//! - [`connection`] drives one WebSocket: the liveness machine of `heartwire-core`,
//!   heartbeat conventions, limits, the close handshake;
//! - [`endpoint`] holds what is particular to `/ws`, `/ws/{facility}` and `/echo`;
//! - [`sse`] streams channels as Server-Sent Events on `/sse`, with the same checks,
//!   slots and mailboxes as the WebSocket endpoints;
//! - [`permissions`] decides whether a connection may use a channel (`[[channels]]`);
//! - [`broker`] fans [`publication`]s out to subscribers' [`mailbox`]es;
//! - [`overload`] refuses new connections while the node is saturated (scheduler lag,
//!   memory, handshakes in flight), so the open ones keep their latency;
//! - [`metrics`] counts it all for `/metrics`;
//! - [`api`] is the server API for the application's backend (`/api/*`), and
//!   [`admin`] the admin page (`/admin`) on top of it.
//!
//! Around them: [`auth`] is who a connection is; [`config`] declares every option once (its flag, variable, file key,
//! default and help: docs/CONFIG.md); [`websocket`] is the frame layer that holds no
//! buffer while a connection is idle; [`state`] is what every connection shares;
//! [`id`] makes up the ids of connections, epochs and nodes; [`error`] is this crate's
//! error type; [`handover`] is the live upgrade, which hands the listening socket and
//! the connections to a new process without closing them.

mod admin;
mod admission;
mod api;
pub mod auth;
mod broker;
mod config;
mod connection;
mod endpoint;
mod error;
mod handover;
mod id;
mod listener;
mod mailbox;
mod metrics;
mod overload;
mod permissions;
mod publication;
mod registry;
mod routes;
mod slot;
mod sse;
mod state;
mod stream;
mod timers;
mod tls;
mod websocket;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use websocket::fuzzing;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

pub use admin::sessions::OverTls;
pub use auth::Identity;
pub use broker::{
    Broker, BrokerHealth, Clock, MemoryBroker, PublishRequest, RedisBroker, RedisConfig,
    RedisTopology, ShardHealth, SubscribeRequest, SystemClock, WaitReplicas,
};
pub use config::{
    Access, ApiAccess, BrokerConfig, Compression, HeartbeatConventions, HeartbeatReply, Holdings,
    Limits, LivenessTiming, OverloadBounds, Rate, RateLimits, Retention, Secret, ServerConfig,
    SseOptions, TlsFiles, Upgrade,
};
pub use error::Error;
pub use handover::state::{ChannelState, MessageState, PayloadState, PublishIdState};
pub use id::ConnectionId;
pub use mailbox::{Mailbox, Member, Outbound};
pub use permissions::{ChannelPattern, ChannelRule, Permission};
pub use publication::{Payload, Publication};
pub use tls::TlsFileError;

use metrics::ServerMetrics;
use registry::Registry;
use state::ServerState;

/// A bound, not yet running, heartwire server.
pub struct Server {
    listener: TcpListener,
    tls: Option<Arc<tls::Tls>>,
    /// SIGHUP, listened for from `bind` when there is a certificate to reload.
    hangups: Option<tokio::signal::unix::Signal>,
    state: Arc<ServerState>,
    /// The subscription to the server API's commands, when the API is on.
    control: Option<api::Control>,
    /// Where a new process takes over (`--upgrade-socket`), once bound.
    upgrade_socket: Option<handover::send::UpgradeSocket>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listener.local_addr().ok())
            .field("tls", &self.tls)
            .field("broker", &self.state.broker.name())
            .field("connections", &self.state.registry.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.listen` with the in-process broker.
    pub async fn bind(config: ServerConfig) -> Result<Self, Error> {
        let broker = Arc::new(MemoryBroker::new(config.retention).with_holdings(config.holdings));
        Self::bind_with_broker(config, broker).await
    }

    /// Binds `config.listen`, fanning messages out through `broker`; with
    /// `--take-over`, takes the listening socket and the connections of the running
    /// server instead ([`Server::take_over`]).
    pub async fn bind_with_broker(
        config: ServerConfig,
        broker: Arc<dyn Broker>,
    ) -> Result<Self, Error> {
        config.validate()?;
        if let Some(path) = config.upgrade.take_over.clone() {
            return Self::take_over(config, broker, &path).await;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let mut server = Self::on_listener(config, broker, listener).await?;
        server.offer_upgrades()?;
        Ok(server)
    }

    /// Listens on `--upgrade-socket`, when given. A process that takes over does so
    /// only once it has the connections: until then the socket at that path is still
    /// the old process's, which goes on if the take-over fails.
    fn offer_upgrades(&mut self) -> Result<(), Error> {
        if let Some(path) = &self.state.config.upgrade.upgrade_socket {
            self.upgrade_socket = Some(handover::send::UpgradeSocket::bind(path)?);
        }
        Ok(())
    }

    /// Takes over from the server whose upgrade socket is `path`: its listening
    /// socket, its channels and its WebSocket connections, which go on without a
    /// close (docs/RELIABILITY.md). If this fails, that server goes on serving.
    async fn take_over(
        config: ServerConfig,
        broker: Arc<dyn Broker>,
        path: &std::path::Path,
    ) -> Result<Self, Error> {
        handover::adopt::broker_ready(broker.as_ref(), path).await?;
        let (begun, listener) = handover::adopt::begin(path).await?;
        let listener = TcpListener::from_std(listener)?;
        let mut server = Self::on_listener(config, broker, listener).await?;
        handover::adopt::adopt(begun, &server.state).await?;
        server.offer_upgrades()?;
        Ok(server)
    }

    async fn on_listener(
        config: ServerConfig,
        broker: Arc<dyn Broker>,
        listener: TcpListener,
    ) -> Result<Self, Error> {
        let tls = tls::Tls::new(&config.tls)?.map(Arc::new);
        let auth = auth::Auth::new(&config.access)?;
        auth.prefetch().await;
        let api_key = api::ApiKey::from_config(&config.api)?;
        let state = Arc::new(ServerState {
            timings: crate::state::Timings::new(&config),
            overload: overload::Overload::new(config.overload),
            config,
            broker,
            metrics: ServerMetrics::new(),
            registry: Registry::default(),
            auth,
            api_key,
            admin_sessions: admin::AdminSessions::default(),
            key_guesses: api::KeyGuesses::default(),
            node_reports: api::NodeReports::default(),
            admission: admission::Admission::default(),
            unupgraded: std::sync::atomic::AtomicUsize::new(0),
            pending_handshakes: std::sync::atomic::AtomicUsize::new(0),
            started: Instant::now(),
            handover: handover::Handover::default(),
            timers: Default::default(),
        });
        let control = match state.api_key {
            Some(_) => Some(api::Control::join(&state).await),
            None => None,
        };
        let hangups = tls.as_ref().and_then(|_| tls::hangups());
        Ok(Self {
            listener,
            tls,
            hangups,
            state,
            control,
            upgrade_socket: None,
        })
    }

    /// Whether the listener speaks TLS (`https://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Serves until `shutdown` completes, then closes every connection with 1012 and a
    /// reconnect hint spread over `shutdown_spread`, and waits up to `close_timeout`
    /// (plus a second for the last writes) for them to finish. While it waits, the
    /// server still answers HTTP: `/healthz` says `draining` (503) and upgrades are
    /// refused with 503, so a load balancer sees the node leave.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self {
            listener,
            tls,
            hangups,
            state,
            control,
            upgrade_socket,
        } = self;
        let config = &state.config;
        tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "heartwire listening");
        let router = routes::router(state.clone());
        let reload = async {
            match &tls {
                Some(tls) => {
                    tls::reload(tls, hangups, config.tls.tls_reload_check, &state.metrics).await
                }
                None => std::future::pending().await,
            }
        };
        let listener_fd = match upgrade_socket {
            Some(_) => Some(listener.as_fd().try_clone_to_owned()?),
            None => None,
        };
        let handing_state = state.clone();
        let handed_over = async move {
            match upgrade_socket.zip(listener_fd) {
                Some((socket, listener)) => {
                    handover::send::serve(socket, handing_state, listener).await;
                }
                None => std::future::pending().await,
            }
        };
        let shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                () = handed_over => {}
            }
        };
        let drain = drain_after(shutdown, state.clone());
        let serve = listener::serve(listener, router, state.clone(), tls.clone(), drain);
        tokio::select! {
            () = serve => {}
            never = state.metrics.keep_up() => match never {},
            never = state.overload.watch(&state.metrics.scheduler_lag) => match never {},
            never = api::Control::run_if_on(control, state.clone()) => match never {},
            never = reload => match never {},
        }
        Ok(())
    }
}

/// Waits for `shutdown`, then closes every connection of `state` with 1012 and waits
/// for them to finish, up to the close timeout and a second.
async fn drain_after(shutdown: impl Future<Output = ()>, state: Arc<ServerState>) {
    shutdown.await;
    let config = &state.config;
    let open = state.registry.len();
    tracing::info!(open, "shutting down: closing connections with 1012");
    state.registry.drain(config.shutdown_spread);
    let grace = config.liveness.close_timeout + std::time::Duration::from_secs(1);
    if tokio::time::timeout(grace, state.registry.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            left = state.registry.len(),
            "connections still open after the close timeout"
        );
    }
}
