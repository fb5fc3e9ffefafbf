//! The state a client's [`Client`](super::Client) handles and its connection task
//! share: the outbox, the set of subscriptions, the latest round-trip time, the
//! source of publish ids, and the request to stop.
//!
//! A publish id is this client's random 64-bit prefix, in hex, and a counter: unique
//! across clients, so the server's deduplication never mistakes one client's publish
//! for another's.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use heartwire_core::client::Outgoing;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::outbox::Outbox;

/// What the caller's handles and the connection task share.
#[derive(Debug)]
pub(crate) struct ClientState {
    /// What the caller sent that has not gone out yet.
    pub(crate) outbox: Outbox,
    subscriptions: Mutex<Vec<String>>,
    rtt: Mutex<Option<Duration>>,
    id_prefix: String,
    published: AtomicU64,
    /// Cancelled when the caller closes the client or the client stops for good.
    pub(crate) stop: CancellationToken,
}

impl ClientState {
    pub(crate) fn new(outbox_capacity: usize, subscriptions: Vec<String>) -> Self {
        let mut unique = Vec::with_capacity(subscriptions.len());
        for channel in subscriptions {
            if !unique.contains(&channel) {
                unique.push(channel);
            }
        }
        Self {
            outbox: Outbox::new(outbox_capacity),
            subscriptions: Mutex::new(unique),
            rtt: Mutex::new(None),
            id_prefix: heartwire_core::protocol::random_id(),
            published: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    /// Queues a message for the server, unless the client is closed or the outbox full.
    pub(crate) fn send(&self, message: Outgoing) -> Result<(), Error> {
        if self.stop.is_cancelled() {
            return Err(Error::ClientClosed);
        }
        self.outbox.push(message)
    }

    /// A publish id no other publish of this client has, nor, but for a one in 2^64
    /// chance, any other client's.
    pub(crate) fn next_publish_id(&self) -> String {
        let count = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{count}", self.id_prefix)
    }

    /// Adds a channel to the set subscribed on every connection.
    pub(crate) fn add_subscription(&self, channel: &str) {
        let mut subscriptions = self.subscriptions.lock();
        if !subscriptions.iter().any(|known| known == channel) {
            subscriptions.push(channel.to_owned());
        }
    }

    /// Removes a channel from that set.
    pub(crate) fn remove_subscription(&self, channel: &str) {
        self.subscriptions.lock().retain(|known| known != channel);
    }

    /// The channels subscribed on every connection, in the order they were added.
    pub(crate) fn subscriptions(&self) -> Vec<String> {
        self.subscriptions.lock().clone()
    }

    pub(crate) fn set_rtt(&self, rtt: Duration) {
        *self.rtt.lock() = Some(rtt);
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        *self.rtt.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_ids_are_unique_within_and_across_clients() {
        let (one, other) = (
            ClientState::new(1, Vec::new()),
            ClientState::new(1, Vec::new()),
        );
        let ids: std::collections::HashSet<_> = (0..100)
            .flat_map(|_| [one.next_publish_id(), other.next_publish_id()])
            .collect();
        assert_eq!(ids.len(), 200);
        let first = one.next_publish_id();
        let (prefix, count) = first.split_once('-').unwrap();
        assert_eq!(prefix.len(), 16);
        assert_eq!(count, "101");
    }

    #[test]
    fn a_closed_client_refuses_messages() {
        let state = ClientState::new(4, Vec::new());
        state.stop.cancel();
        assert!(matches!(
            state.send(Outgoing::Text("x".into())),
            Err(Error::ClientClosed)
        ));
    }

    #[test]
    fn subscriptions_are_a_set_in_order() {
        let state = ClientState::new(1, vec!["b".into(), "a".into(), "b".into()]);
        state.add_subscription("c");
        state.add_subscription("a");
        state.remove_subscription("b");
        assert_eq!(state.subscriptions(), ["a", "c"]);
    }
}
