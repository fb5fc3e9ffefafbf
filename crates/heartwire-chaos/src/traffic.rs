//! What the proxy knows of each connection's bytes: when the last one passed, the
//! longest silence so far, and how many were forwarded or discarded each way. The idle
//! cut reads it; [`ConnectionInfo`] shows it (`GET /connections`, and
//! [`Proxy::connections`](crate::Proxy::connections)).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::fault::Flow;

/// A snapshot of one proxied connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    /// The proxy's number for it, in order of acceptance.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// How long it has been open.
    #[serde(rename = "age_ms", serialize_with = "millis")]
    pub age: Duration,
    /// How long since the proxy last read a byte from either side.
    #[serde(rename = "quiet_ms", serialize_with = "millis")]
    pub quiet: Duration,
    /// The longest silence so far, the current one included.
    #[serde(rename = "longest_quiet_ms", serialize_with = "millis")]
    pub longest_quiet: Duration,
    /// Client to upstream.
    pub up: FlowInfo,
    /// Upstream to client.
    pub down: FlowInfo,
}

/// Bytes of one flow of a connection.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FlowInfo {
    /// Written to the other side.
    pub forwarded: u64,
    /// Read and thrown away by a blackhole.
    pub discarded: u64,
}

/// The live record of one connection.
#[derive(Debug)]
pub(crate) struct Traffic {
    id: u64,
    peer: SocketAddr,
    opened_at: Instant,
    counts: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    last_byte_at: Instant,
    longest_quiet: Duration,
    flows: [FlowInfo; 2],
}

impl Traffic {
    pub(crate) fn new(id: u64, peer: SocketAddr, now: Instant) -> Self {
        Self {
            id,
            peer,
            opened_at: now,
            counts: Mutex::new(Counts {
                last_byte_at: now,
                longest_quiet: Duration::ZERO,
                flows: [FlowInfo::default(); 2],
            }),
        }
    }

    /// Bytes were read from either side at `now`.
    pub(crate) fn read(&self, now: Instant) {
        let mut counts = self.lock();
        let quiet = now.saturating_duration_since(counts.last_byte_at);
        counts.longest_quiet = counts.longest_quiet.max(quiet);
        counts.last_byte_at = now;
    }

    /// `bytes` of `flow` were written to the other side.
    pub(crate) fn forwarded(&self, flow: Flow, bytes: usize) {
        self.lock().flows[flow.index()].forwarded += bytes as u64;
    }

    /// `bytes` of `flow` were thrown away.
    pub(crate) fn discarded(&self, flow: Flow, bytes: usize) {
        self.lock().flows[flow.index()].discarded += bytes as u64;
    }

    /// The client's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// When a byte was last read from either side.
    pub(crate) fn last_byte_at(&self) -> Instant {
        self.lock().last_byte_at
    }

    pub(crate) fn snapshot(&self, now: Instant) -> ConnectionInfo {
        let counts = self.lock();
        let quiet = now.saturating_duration_since(counts.last_byte_at);
        ConnectionInfo {
            id: self.id,
            peer: self.peer,
            age: now.saturating_duration_since(self.opened_at),
            quiet,
            longest_quiet: counts.longest_quiet.max(quiet),
            up: counts.flows[Flow::Up.index()],
            down: counts.flows[Flow::Down.index()],
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
