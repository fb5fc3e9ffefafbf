//! The server's open connections: how many slots are taken, reaching every
//! connection at shutdown, and finding a user's connections or a session for the
//! server API.
//!
//! A connection takes a slot (see [`crate::slot`]) before its WebSocket upgrade and
//! registers its mailbox once upgraded; the registry counts the one and holds the
//! other, so a full server is refused at the door and a draining one reaches all.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use heartwire_core::protocol::millis;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Notify;

use crate::id::ConnectionId;
use crate::mailbox::Mailbox;

/// An open connection: its mailbox, and its user when it was identified.
#[derive(Debug)]
struct Open {
    mailbox: Arc<Mailbox>,
    user: Option<Arc<str>>,
    /// A WebSocket (else an event stream), which a live upgrade may hand over.
    websocket: bool,
}

/// Which connections a request of the server API is about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    /// Every connection of this user.
    User(String),
    /// The connection of this session.
    Session(ConnectionId),
}

/// Open connections of one server.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<ConnectionId, Open>>,
    /// Slots taken: connections open or being upgraded.
    taken: AtomicUsize,
    draining: AtomicBool,
    drained: Notify,
}

impl Registry {
    /// Takes a slot for a new connection, unless `max` are taken or the server is
    /// draining. Each slot taken is given back with [`release`](Self::release).
    pub(crate) fn take_slot(&self, max: usize) -> bool {
        if self.draining.load(Ordering::Acquire) {
            return false;
        }
        let taken = self.taken.fetch_add(1, Ordering::AcqRel);
        if taken >= max {
            self.release();
            return false;
        }
        true
    }

    /// Slots taken: connections open or being upgraded.
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Gives a slot back.
    pub(crate) fn release(&self) {
        if self.taken.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Registers an upgraded connection of `user` (`None`: anonymous); one that
    /// arrives while the server drains is asked to close at once.
    pub(crate) fn register(&self, mailbox: Arc<Mailbox>, user: Option<Arc<str>>, websocket: bool) {
        let open = Open {
            mailbox: mailbox.clone(),
            user,
            websocket,
        };
        self.open.lock().insert(mailbox.id(), open);
        if self.is_draining() {
            mailbox.shut_down(0);
        }
    }

    /// Forgets a connection that ended.
    pub(crate) fn unregister(&self, id: ConnectionId) {
        self.open.lock().remove(&id);
    }

    /// The mailboxes of the open connections that `target` names.
    pub(crate) fn find(&self, target: &Target) -> Vec<Arc<Mailbox>> {
        let open = self.open.lock();
        match target {
            Target::Session(id) => open
                .get(id)
                .map(|open| open.mailbox.clone())
                .into_iter()
                .collect(),
            Target::User(user) => open
                .values()
                .filter(|open| open.user.as_deref() == Some(user.as_str()))
                .map(|open| open.mailbox.clone())
                .collect(),
        }
    }

    /// Open WebSocket connections.
    pub(crate) fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Asks every connection to close, each with its own reconnect hint drawn from
    /// `[0, spread]`, and refuses new ones.
    pub(crate) fn drain(&self, spread: Duration) {
        self.draining.store(true, Ordering::Release);
        let spread_ms = millis(spread);
        let mut rng = rand::rng();
        for Open { mailbox, .. } in self.open.lock().values() {
            mailbox.shut_down(rng.random_range(0..=spread_ms));
        }
    }

    /// Asks every WebSocket connection to pause and hand itself over (a live
    /// upgrade); returns how many were asked, each of which answers.
    pub(crate) fn ask_handover(&self) -> usize {
        let open = self.open.lock();
        let asked = open.values().filter(|open| open.websocket);
        asked.map(|open| open.mailbox.ask_handover()).count()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_maximum_and_come_back() {
        let registry = Registry::default();
        assert!(registry.take_slot(2));
        assert!(registry.take_slot(2));
        assert!(!registry.take_slot(2));
        registry.release();
        assert!(registry.take_slot(2));
    }

    #[test]
    fn draining_refuses_slots_and_closes_late_arrivals() {
        let registry = Registry::default();
        registry.drain(Duration::ZERO);
        assert!(!registry.take_slot(10));
        let mailbox = Arc::new(Mailbox::new(7, 4));
        registry.register(mailbox.clone(), None, true);
        assert!(mailbox.signal().is_some());
    }

    #[test]
    fn connections_are_found_by_user_or_session() {
        let registry = Registry::default();
        let ada = Some(Arc::from("ada"));
        for id in [1, 2] {
            registry.register(Arc::new(Mailbox::new(id, 4)), ada.clone(), true);
        }
        registry.register(Arc::new(Mailbox::new(3, 4)), None, true);
        let ids = |target| {
            let mut ids: Vec<_> = registry.find(&target).iter().map(|m| m.id()).collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(ids(Target::User("ada".into())), [1, 2]);
        assert_eq!(ids(Target::User("bob".into())), Vec::<u64>::new());
        assert_eq!(ids(Target::Session(3)), [3]);
        registry.unregister(1);
        assert_eq!(ids(Target::User("ada".into())), [2]);
    }
}
