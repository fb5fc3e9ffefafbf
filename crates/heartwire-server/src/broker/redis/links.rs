//! The node's pub/sub links, by what they connect to: a shard's master (one server,
//! one of several, or the one Sentinel names), or one master node of a cluster. Each
//! link is a task (see [`subscriber`](super::subscriber)) that takes orders on a queue
//! and tells how it is doing through its [`LinkStatus`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::channels::PubSubName;

/// What a link connects to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum LinkKey {
    /// The master of shard `n` (of `--redis` servers, or Sentinel's).
    Shard(usize),
    /// The cluster node at this `host:port`.
    Node(String),
}

impl std::fmt::Display for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shard(index) => write!(f, "shard {index}"),
            Self::Node(address) => write!(f, "node {address}"),
        }
    }
}

/// An order to a link.
#[derive(Debug)]
pub(super) enum Command {
    /// Subscribe to the channel's Redis channels; answer whether they are in place
    /// on this link (false: the channel is gone or must be placed elsewhere).
    Subscribe(Arc<str>, oneshot::Sender<bool>),
    /// Unsubscribe from these Redis channels, unless a subscriber came back meanwhile.
    Unsubscribe(Arc<str>, Vec<PubSubName>),
}

/// How a link is doing, for health reports.
#[derive(Debug, Default)]
pub(super) struct LinkStatus {
    up: AtomicBool,
    /// Redis was found unreachable: an attempt failed, or the link was lost, and
    /// it has not been up since. False while the first attempt is under way.
    unreachable: AtomicBool,
    reconnects: AtomicU64,
    master: Mutex<Option<String>>,
}

impl LinkStatus {
    /// Whether the link is connected, with its subscriptions in place.
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Marks the link up (connected to `master`) or down (lost: unreachable).
    pub(super) fn set_up(&self, up: bool, master: Option<String>) {
        if let Some(master) = master {
            *self.master.lock() = Some(master);
        }
        self.up.store(up, Ordering::Relaxed);
        self.unreachable.store(!up, Ordering::Relaxed);
    }

    /// An attempt to reach Redis failed.
    pub(super) fn set_unreachable(&self) {
        self.unreachable.store(true, Ordering::Relaxed);
    }

    /// Whether Redis was found unreachable and not reached since.
    pub(super) fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }

    /// Counts a reconnect.
    pub(super) fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Times the link was lost and made again.
    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The address of the master it was last connected to.
    pub(super) fn master(&self) -> Option<String> {
        self.master.lock().clone()
    }
}

/// A running link: its queue and its status.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// Its orders.
    pub(super) orders: mpsc::UnboundedSender<Command>,
    /// How it is doing.
    pub(super) status: Arc<LinkStatus>,
}

/// Every running link of this node.
#[derive(Debug, Default)]
pub(super) struct Links {
    running: Mutex<HashMap<LinkKey, Link>>,
}

impl Links {
    /// The link to `key`, and, when there was none, the receiving end of its queue
    /// for the caller to start its task with.
    pub(super) fn get_or_add(
        &self,
        key: &LinkKey,
    ) -> (Link, Option<mpsc::UnboundedReceiver<Command>>) {
        let mut running = self.running.lock();
        if let Some(link) = running.get(key) {
            if !link.orders.is_closed() {
                return (link.clone(), None);
            }
        }
        let (orders, queue) = mpsc::unbounded_channel();
        let link = Link {
            orders,
            status: Arc::default(),
        };
        running.insert(key.clone(), link.clone());
        (link, Some(queue))
    }

    /// Forgets the link to `key` if it is still `status`'s (a link that ended).
    pub(super) fn remove(&self, key: &LinkKey, status: &Arc<LinkStatus>) {
        let mut running = self.running.lock();
        if running
            .get(key)
            .is_some_and(|link| Arc::ptr_eq(&link.status, status))
        {
            running.remove(key);
        }
    }

    /// The status of the link to `key`, if it runs.
    pub(super) fn status_of(&self, key: &LinkKey) -> Option<Arc<LinkStatus>> {
        self.running.lock().get(key).map(|link| link.status.clone())
    }

    /// Every running link, in a stable order.
    pub(super) fn all(&self) -> Vec<(LinkKey, Arc<LinkStatus>)> {
        let mut all: Vec<_> = self
            .running
            .lock()
            .iter()
            .map(|(key, link)| (key.clone(), link.status.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_started_once_and_again_after_it_ended() {
        let links = Links::default();
        let key = LinkKey::Node("127.0.0.1:7000".into());
        let (first, queue) = links.get_or_add(&key);
        assert!(queue.is_some());
        let (again, none) = links.get_or_add(&key);
        assert!(none.is_none() && Arc::ptr_eq(&first.status, &again.status));
        drop(queue);
        // Its task ended: the next asker starts a new one.
        let (second, queue) = links.get_or_add(&key);
        assert!(queue.is_some() && !Arc::ptr_eq(&first.status, &second.status));
        links.remove(&key, &first.status);
        assert_eq!(links.all().len(), 1, "an old status removes nothing");
        links.remove(&key, &second.status);
        assert!(links.all().is_empty());
    }
}
