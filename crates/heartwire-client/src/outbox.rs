//! The caller's bounded outbox: what it sent and what has not gone out yet.
//!
//! The caller pushes without waiting, from any task; the connection task takes from
//! the front when the connection machine may send. A full outbox is an error for the
//! caller, never a silent drop.

use parking_lot::Mutex;
use std::collections::VecDeque;

use heartwire_core::client::{self, Outgoing};
use tokio::sync::Notify;

use crate::Error;

/// Messages waiting for a connection, oldest first, at most `capacity`.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    capacity: usize,
    /// Signalled when the outbox gains a message.
    pub(crate) queued: Notify,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            queued: Notify::new(),
        }
    }

    /// Queues a message, or says why it cannot be.
    pub(crate) fn push(&self, message: Outgoing) -> Result<(), Error> {
        let mut queue = self.queue.lock();
        if queue.len() >= self.capacity {
            return Err(Error::OutboxFull {
                capacity: self.capacity,
            });
        }
        queue.push_back(message);
        drop(queue);
        self.queued.notify_one();
        Ok(())
    }

    /// How many messages wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().len()
    }
}

/// The connection machine takes from the front of the shared queue.
impl client::Outbox for &Outbox {
    fn pop(&mut self) -> Option<Outgoing> {
        self.queue.lock().pop_front()
    }

    fn is_empty(&self) -> bool {
        self.queue.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use heartwire_core::client::Outbox as _;

    use super::*;

    #[test]
    fn a_full_outbox_is_an_error_not_a_drop() {
        let outbox = Outbox::new(2);
        outbox.push(Outgoing::Text("a".into())).unwrap();
        outbox.push(Outgoing::Text("b".into())).unwrap();
        assert!(matches!(
            outbox.push(Outgoing::Text("c".into())),
            Err(Error::OutboxFull { capacity: 2 })
        ));
        let mut front = &outbox;
        assert_eq!(front.pop(), Some(Outgoing::Text("a".into())));
        outbox.push(Outgoing::Text("c".into())).unwrap();
        assert_eq!(outbox.len(), 2);
        let order: Vec<_> = std::iter::from_fn(|| front.pop()).collect();
        assert_eq!(order, ["b", "c"].map(|text| Outgoing::Text(text.into())));
        assert!(front.is_empty());
    }
}
