//! The server's open connections: capacity, and reaching them all at shutdown.
//!
//! A [`Slot`] is taken before the WebSocket upgrade, so a full server answers HTTP 503
//! instead of accepting a connection it cannot hold; the slot is given back when the
//! connection's task ends, however it ends.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;

use super::endpoint::EndpointKind;
use super::mailbox::{ConnectionId, Mailbox};
use super::state::ServerState;

/// Open connections of one server.
#[derive(Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<ConnectionId, Arc<Mailbox>>>,
    /// Slots taken: connections open or being upgraded.
    taken: AtomicUsize,
    draining: AtomicBool,
    drained: Notify,
}

impl Registry {
    /// Takes a slot for a new connection, unless the server is full or draining.
    pub(crate) fn reserve(server: &Arc<ServerState>) -> Option<Slot> {
        let registry = &server.registry;
        if registry.draining.load(Ordering::Acquire) {
            return None;
        }
        let taken = registry.taken.fetch_add(1, Ordering::AcqRel);
        if taken >= server.config.limits.max_connections {
            registry.release();
            return None;
        }
        Some(Slot {
            server: server.clone(),
            opened: None,
        })
    }

    /// Open WebSocket connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Asks every connection to close, each with its own reconnect hint drawn from
    /// `[0, spread]`, and refuses new ones.
    pub(crate) fn drain(&self, spread: Duration) {
        self.draining.store(true, Ordering::Release);
        let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
        let mut rng = rand::rng();
        for mailbox in self.lock().values() {
            mailbox.shut_down(rng.random_range(0..=spread_ms));
        }
    }

    /// Waits until every slot is given back.
    pub(crate) async fn drained(&self) {
        loop {
            let mut notified = pin!(self.drained.notified());
            notified.as_mut().enable();
            if self.taken.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn release(&self) {
        if self.taken.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionId, Arc<Mailbox>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection's place in the server, given back on drop.
pub(crate) struct Slot {
    server: Arc<ServerState>,
    opened: Option<(ConnectionId, EndpointKind)>,
}

impl Slot {
    pub(crate) fn server(&self) -> &Arc<ServerState> {
        &self.server
    }

    /// The upgrade is done: registers the connection and returns its mailbox.
    pub(crate) fn open(&mut self, endpoint: EndpointKind) -> Arc<Mailbox> {
        let id = rand::random();
        let mailbox = Arc::new(Mailbox::new(id, self.server.config.limits.outbound_queue));
        let registry = &self.server.registry;
        registry.lock().insert(id, mailbox.clone());
        if registry.is_draining() {
            mailbox.shut_down(0);
        }
        let metrics = self.server.metrics.endpoint(endpoint);
        metrics.accepted.increment(1);
        metrics.open.increment(1.0);
        self.opened = Some((id, endpoint));
        mailbox
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let registry = &self.server.registry;
        if let Some((id, endpoint)) = self.opened {
            registry.lock().remove(&id);
            self.server.metrics.endpoint(endpoint).open.decrement(1.0);
        }
        registry.release();
    }
}
