//! State shared by the caller's [`Client`](super::Client) handles and the task that
//! runs the connections: the bounded outbox, the set of subscriptions, the latest
//! round-trip time, the request to stop, and the source of publish ids.
//!
//! A publish id is this client's random 64-bit prefix, in hex, and a counter: unique
//! across clients, so the server's deduplication never mistakes one client's publish
//! for another's.
//!
//! The caller pushes into the outbox without waiting; the connection task takes from
//! its front when a connection is open and has room to write. A full outbox is an
//! error for the caller, never a silent drop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// A publish to a heartwire server, with the id it keeps until acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Publish {
    pub(crate) id: String,
    pub(crate) channel: String,
    pub(crate) data: Value,
}

/// A message waiting to go out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outgoing {
    /// Publish on a channel (a heartwire server only).
    Publish(Publish),
    /// A text frame, as is.
    Text(String),
    /// A binary frame, as is.
    Binary(Bytes),
    /// Subscribe to a channel (a heartwire server only).
    Subscribe(String),
    /// Unsubscribe from a channel (a heartwire server only).
    Unsubscribe(String),
}

/// What the caller's handles and the connection task share.
#[derive(Debug)]
pub(crate) struct Shared {
    outbox: Mutex<VecDeque<Outgoing>>,
    capacity: usize,
    subscriptions: Mutex<Vec<String>>,
    rtt: Mutex<Option<Duration>>,
    id_prefix: String,
    published: AtomicU64,
    /// Signalled when the outbox gains a message.
    pub(crate) queued: Notify,
    /// Cancelled when the caller closes the client or the client stops for good.
    pub(crate) stop: CancellationToken,
}

impl Shared {
    pub(crate) fn new(capacity: usize, subscriptions: Vec<String>) -> Self {
        let mut unique = Vec::with_capacity(subscriptions.len());
        for channel in subscriptions {
            if !unique.contains(&channel) {
                unique.push(channel);
            }
        }
        Self {
            outbox: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            subscriptions: Mutex::new(unique),
            rtt: Mutex::new(None),
            id_prefix: format!("{:016x}", rand::random::<u64>()),
            published: AtomicU64::new(0),
            queued: Notify::new(),
            stop: CancellationToken::new(),
        }
    }

    /// A publish id no other publish of this client has, nor, but for a one in 2^64
    /// chance, any other client's.
    pub(crate) fn next_publish_id(&self) -> String {
        let count = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{count}", self.id_prefix)
    }

    /// Queues a message, or says why it cannot be.
    pub(crate) fn push(&self, message: Outgoing) -> Result<(), Error> {
        if self.stop.is_cancelled() {
            return Err(Error::ClientClosed);
        }
        let mut outbox = self.outbox.lock();
        if outbox.len() >= self.capacity {
            return Err(Error::OutboxFull {
                capacity: self.capacity,
            });
        }
        outbox.push_back(message);
        drop(outbox);
        self.queued.notify_one();
        Ok(())
    }

    /// Puts messages that went out but were never confirmed back at the front, in
    /// their order. They were accepted once, so the capacity does not apply.
    pub(crate) fn requeue_front(&self, messages: impl DoubleEndedIterator<Item = Outgoing>) {
        let mut outbox = self.outbox.lock();
        for message in messages.rev() {
            outbox.push_front(message);
        }
    }

    /// Takes the oldest queued message.
    pub(crate) fn pop(&self) -> Option<Outgoing> {
        self.outbox.lock().pop_front()
    }

    /// Whether a message is waiting.
    pub(crate) fn has_queued(&self) -> bool {
        !self.outbox.lock().is_empty()
    }

    /// How many messages wait.
    pub(crate) fn queued_len(&self) -> usize {
        self.outbox.lock().len()
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
    fn a_full_outbox_is_an_error_not_a_drop() {
        let shared = Shared::new(2, Vec::new());
        shared.push(Outgoing::Text("a".into())).unwrap();
        shared.push(Outgoing::Text("b".into())).unwrap();
        assert!(matches!(
            shared.push(Outgoing::Text("c".into())),
            Err(Error::OutboxFull { capacity: 2 })
        ));
        assert_eq!(shared.pop(), Some(Outgoing::Text("a".into())));
        shared.push(Outgoing::Text("c".into())).unwrap();
        assert_eq!(shared.pop(), Some(Outgoing::Text("b".into())));
        assert_eq!(shared.pop(), Some(Outgoing::Text("c".into())));
        assert_eq!(shared.pop(), None);
    }

    #[test]
    fn unconfirmed_messages_go_first_in_their_order() {
        let shared = Shared::new(4, Vec::new());
        shared.push(Outgoing::Text("3".into())).unwrap();
        shared.requeue_front(
            vec![Outgoing::Text("1".into()), Outgoing::Text("2".into())].into_iter(),
        );
        let order: Vec<_> = std::iter::from_fn(|| shared.pop()).collect();
        assert_eq!(
            order,
            ["1", "2", "3"].map(|text| Outgoing::Text(text.into()))
        );
    }

    #[test]
    fn publish_ids_are_unique_within_and_across_clients() {
        let (one, other) = (Shared::new(1, Vec::new()), Shared::new(1, Vec::new()));
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
        let shared = Shared::new(4, Vec::new());
        shared.stop.cancel();
        assert!(matches!(
            shared.push(Outgoing::Text("x".into())),
            Err(Error::ClientClosed)
        ));
    }

    #[test]
    fn subscriptions_are_a_set_in_order() {
        let shared = Shared::new(1, vec!["b".into(), "a".into(), "b".into()]);
        shared.add_subscription("c");
        shared.add_subscription("a");
        shared.remove_subscription("b");
        assert_eq!(shared.subscriptions(), ["a", "c"]);
    }
}
