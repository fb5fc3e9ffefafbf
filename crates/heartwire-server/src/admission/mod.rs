//! Who is let in, and how fast: the bounds of docs/SECURITY.md ("Floods and memory
//! pinning") that are decided per client rather than per message size.
//!
//! The decisions are sans-IO, with time as a parameter: a [`TokenBucket`] is the
//! message rate of a connection ([`MessageRate`]) and the accept rate of the node;
//! a [`LogThrottle`] keeps a repeating error from flooding the log. [`Admission`]
//! counts the connections of each client address and each user, and [`ClientAddr`]
//! says which address a request comes from (`--trusted-proxy`). A refusal's
//! `Retry-After` is spread over `--shutdown-spread` ([`retry_after_secs`]).

mod bucket;
mod client_ip;
mod counts;
mod log_throttle;
mod message_rate;
mod retry_after;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

pub(crate) use bucket::TokenBucket;
pub(crate) use log_throttle::LogThrottle;
pub(crate) use message_rate::{MessageRate, Verdict};
pub(crate) use retry_after::retry_after_secs;

use crate::state::ServerState;
use counts::Counts;

/// Connections held by each client address and each user.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    per_ip: Counts<IpAddr>,
    per_user: Counts<Arc<str>>,
}

impl Admission {
    /// Counts a connection of `ip` unless it holds `max` (0: no limit).
    pub(crate) fn take_ip(&self, ip: IpAddr, max: usize) -> bool {
        self.per_ip.take(&ip, max)
    }

    pub(crate) fn release_ip(&self, ip: IpAddr) {
        self.per_ip.release(&ip);
    }

    /// Counts a connection of `user` unless it holds `max` (0: no limit).
    pub(crate) fn take_user(&self, user: &Arc<str>, max: usize) -> bool {
        self.per_user.take(user, max)
    }

    pub(crate) fn release_user(&self, user: &Arc<str>) {
        self.per_user.release(user);
    }
}

/// The address a request comes from, as [`client_ip::client_ip`] reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl FromRequestParts<Arc<ServerState>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ServerState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        let trusted = &state.config.rates.trusted_proxies;
        Ok(Self(client_ip::client_ip(peer, &parts.headers, trusted)))
    }
}
