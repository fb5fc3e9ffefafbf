//! What every connection of a server shares.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Auth;
use crate::broker::Broker;
use crate::config::ServerConfig;
use crate::metrics::ServerMetrics;
use crate::registry::Registry;

/// The server-wide state handed to every request and connection.
pub(crate) struct ServerState {
    pub(crate) config: ServerConfig,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) metrics: ServerMetrics,
    pub(crate) registry: Registry,
    pub(crate) auth: Auth,
    /// When the server started, for `/healthz`'s uptime.
    pub(crate) started: Instant,
}
