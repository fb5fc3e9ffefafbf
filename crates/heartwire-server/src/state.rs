//! What every connection of a server shares.

use std::sync::Arc;
use std::time::Instant;

use heartwire_core::LivenessConfig;

use crate::admin::AdminSessions;
use crate::admission::Admission;
use crate::api::{ApiKey, KeyGuesses, NodeReports};
use crate::auth::Auth;
use crate::broker::Broker;
use crate::config::ServerConfig;
use crate::metrics::ServerMetrics;
use crate::overload::Overload;
use crate::registry::Registry;

/// The server-wide state handed to every request and connection.
pub(crate) struct ServerState {
    pub(crate) config: ServerConfig,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) metrics: ServerMetrics,
    pub(crate) registry: Registry,
    pub(crate) auth: Auth,
    /// The key of the server API and the admin page; both are off without it.
    pub(crate) api_key: Option<ApiKey>,
    /// The admin page's logins.
    pub(crate) admin_sessions: AdminSessions,
    /// Wrong API keys per client address (the API and the admin login).
    pub(crate) key_guesses: KeyGuesses,
    /// What the nodes last said of themselves (`/api/info`).
    pub(crate) node_reports: NodeReports,
    /// Connections of each client address and user.
    pub(crate) admission: Admission,
    /// TCP connections accepted that have not become WebSockets (or ended) yet.
    pub(crate) unupgraded: std::sync::atomic::AtomicUsize,
    /// TCP connections accepted that have not had the answer to their first request.
    pub(crate) pending_handshakes: std::sync::atomic::AtomicUsize,
    /// Whether the node is overloaded, and by what.
    pub(crate) overload: Overload,
    /// When the server started, for `/healthz`'s uptime.
    pub(crate) started: Instant,
    /// Live upgrade: whether the listener accepts, and where paused connections offer
    /// themselves.
    pub(crate) handover: crate::handover::Handover,
    /// The one timer that wakes connections at their deadlines.
    pub(crate) timers: crate::timers::Timers,
    /// The liveness timing of connections without and with the magic heartbeat.
    pub(crate) timings: Timings,
}

/// The liveness timing connections run with: one of two, shared by their machines,
/// since a server holds one machine per connection.
pub(crate) struct Timings {
    plain: Arc<LivenessConfig>,
    with_heartbeat: Arc<LivenessConfig>,
}

impl Timings {
    /// The two timings `config` gives.
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            plain: Arc::new(config.liveness(false)),
            with_heartbeat: Arc::new(config.liveness(true)),
        }
    }
}

impl ServerState {
    /// The liveness timing of a connection on `facility` (django-websocket-redis's
    /// endpoint): with the magic heartbeat when it is sent there.
    pub(crate) fn liveness(&self, facility: Option<&str>) -> Arc<LivenessConfig> {
        let timing = if self.config.sends_heartbeat_on(facility) {
            &self.timings.with_heartbeat
        } else {
            &self.timings.plain
        };
        timing.clone()
    }
}
