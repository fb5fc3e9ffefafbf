//! A connection's place in the server.
//!
//! A [`Slot`] is taken before the WebSocket upgrade, so a full or overloaded server
//! answers HTTP 503 (429 for a client address or user that holds its most) instead of
//! accepting a connection it cannot hold; the slot is given back when the connection's task
//! ends, however it ends, with the counts of its address and user.
//!
//! The log has one line at info level when a connection opens, or is adopted from
//! the previous process in a live upgrade (its session, as the client sees it, its
//! address, endpoint and user), and one when it ends, with the reason and how long it
//! lasted here.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use heartwire_core::protocol::session_name;

use crate::endpoint::EndpointKind;
use crate::id::{ConnectionId, new_connection_id};
use crate::mailbox::Mailbox;
use crate::overload::Signal;
use crate::state::ServerState;

/// A connection's place in the server, given back on drop.
pub(crate) struct Slot {
    server: Arc<ServerState>,
    address: IpAddr,
    user: Option<Arc<str>>,
    opened: Option<Opened>,
}

/// A connection that took its slot.
struct Opened {
    /// Registered under its id.
    mailbox: Arc<Mailbox>,
    endpoint: EndpointKind,
    at: Instant,
}

/// How a connection came to this process.
#[derive(Clone, Copy)]
enum Arrival {
    /// Its client connected here.
    Accepted,
    /// The previous process handed it over in a live upgrade.
    Adopted,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// The server is shutting down.
    Draining,
    /// `--max-connections` are open.
    Full,
    /// The client's address holds `--max-connections-per-ip`.
    AddressFull,
    /// The node is past an overload bound.
    Overloaded(Signal),
}

impl Slot {
    /// Takes a slot for a new connection from `address`, unless the server is full,
    /// draining or overloaded, or the address holds its most.
    pub(crate) fn reserve(server: &Arc<ServerState>, address: IpAddr) -> Result<Self, NoSlot> {
        if server.registry.is_draining() {
            return Err(NoSlot::Draining);
        }
        let pending = server.pending_handshakes.load(Ordering::Acquire);
        if let Some(signal) = server.overload.signal(pending) {
            return Err(NoSlot::Overloaded(signal));
        }
        if !server
            .registry
            .take_slot(server.config.limits.max_connections)
        {
            return Err(NoSlot::Full);
        }
        let per_ip = server.config.rates.max_connections_per_ip;
        if !server.admission.take_ip(address, per_ip) {
            server.registry.release();
            return Err(NoSlot::AddressFull);
        }
        Ok(Self {
            server: server.clone(),
            address,
            user: None,
            opened: None,
        })
    }

    /// Counts the connection for `user`, unless the user holds
    /// `--max-connections-per-user` already.
    pub(crate) fn claim_user(&mut self, user: &str) -> bool {
        let user: Arc<str> = Arc::from(user);
        let max = self.server.config.rates.max_connections_per_user;
        let taken = self.server.admission.take_user(&user, max);
        if taken {
            self.user = Some(user);
        }
        taken
    }

    pub(crate) fn server(&self) -> &Arc<ServerState> {
        &self.server
    }

    /// The address the connection comes from.
    pub(crate) fn address(&self) -> IpAddr {
        self.address
    }

    /// The upgrade is done: registers the connection of `user` (`None`: anonymous)
    /// and returns its mailbox.
    pub(crate) fn open(&mut self, endpoint: EndpointKind, user: Option<Arc<str>>) -> &Arc<Mailbox> {
        self.register(new_connection_id(), endpoint, user, Arrival::Accepted)
    }

    /// [`open`](Self::open) for the connection of session `id`, which the previous
    /// process handed over in a live upgrade: counted as adopted, not accepted.
    pub(crate) fn adopt(
        &mut self,
        id: ConnectionId,
        endpoint: EndpointKind,
        user: Option<Arc<str>>,
    ) -> &Arc<Mailbox> {
        self.register(id, endpoint, user, Arrival::Adopted)
    }

    fn register(
        &mut self,
        id: ConnectionId,
        endpoint: EndpointKind,
        user: Option<Arc<str>>,
        arrival: Arrival,
    ) -> &Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::new(id, self.server.config.limits.outbound_queue));
        let websocket = endpoint != EndpointKind::Sse;
        self.server
            .registry
            .register(mailbox.clone(), user, websocket);
        let metrics = self.server.metrics.endpoint(endpoint);
        match arrival {
            Arrival::Accepted => metrics.accepted.increment(1),
            Arrival::Adopted => metrics.adopted.increment(1),
        }
        metrics.open.increment(1.0);
        tracing::info!(
            session = %session_name(id),
            address = %self.address,
            endpoint = endpoint.label(),
            user = self.user.as_deref().unwrap_or("-"),
            "{}",
            match arrival {
                Arrival::Accepted => "connection opened",
                Arrival::Adopted => "connection adopted",
            }
        );
        let opened = self.opened.insert(Opened {
            mailbox,
            endpoint,
            at: Instant::now(),
        });
        &opened.mailbox
    }

    /// The mailbox of the connection that opened here.
    ///
    /// # Panics
    /// When no connection has opened here yet.
    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        let opened = self.opened.as_ref();
        &opened.expect("a connection opened in the slot").mailbox
    }

    /// Logs the end of the connection, for `reason`.
    pub(crate) fn log_end(&self, reason: &dyn fmt::Display) {
        let Some(opened) = &self.opened else {
            return;
        };
        tracing::info!(
            session = %session_name(opened.mailbox.id()),
            address = %self.address,
            endpoint = opened.endpoint.label(),
            user = self.user.as_deref().unwrap_or("-"),
            %reason,
            seconds = opened.at.elapsed().as_secs_f64(),
            "connection ended"
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let registry = &self.server.registry;
        if let Some(Opened {
            mailbox, endpoint, ..
        }) = &self.opened
        {
            registry.unregister(mailbox.id());
            self.server.metrics.endpoint(*endpoint).open.decrement(1.0);
        }
        if let Some(user) = &self.user {
            self.server.admission.release_user(user);
        }
        self.server.admission.release_ip(self.address);
        registry.release();
    }
}
