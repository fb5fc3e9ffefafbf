//! A connection's place in the server.
//!
//! A [`Slot`] is taken before the WebSocket upgrade, so a full server answers HTTP 503
//! instead of accepting a connection it cannot hold; the slot is given back when the
//! connection's task ends, however it ends.

use std::sync::Arc;

use crate::endpoint::EndpointKind;
use crate::id::{ConnectionId, new_connection_id};
use crate::mailbox::Mailbox;
use crate::state::ServerState;

/// A connection's place in the server, given back on drop.
pub(crate) struct Slot {
    server: Arc<ServerState>,
    opened: Option<(ConnectionId, EndpointKind)>,
}

impl Slot {
    /// Takes a slot for a new connection, unless the server is full or draining.
    pub(crate) fn reserve(server: &Arc<ServerState>) -> Option<Self> {
        server
            .registry
            .take_slot(server.config.limits.max_connections)
            .then(|| Self {
                server: server.clone(),
                opened: None,
            })
    }

    pub(crate) fn server(&self) -> &Arc<ServerState> {
        &self.server
    }

    /// The upgrade is done: registers the connection of `user` (`None`: anonymous)
    /// and returns its mailbox.
    pub(crate) fn open(&mut self, endpoint: EndpointKind, user: Option<Arc<str>>) -> Arc<Mailbox> {
        let id = new_connection_id();
        let mailbox = Arc::new(Mailbox::new(id, self.server.config.limits.outbound_queue));
        self.server.registry.register(mailbox.clone(), user);
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
            registry.unregister(id);
            self.server.metrics.endpoint(endpoint).open.decrement(1.0);
        }
        registry.release();
    }
}
