//! A connection's publishes wait behind its own joins.
//!
//! A join (SUBSCRIBE, then a snapshot of the channel) runs beside the node's publish
//! queue, so without this a connection that subscribes and then publishes could have
//! its publish sequenced before its own subscription, and never see its message. A
//! connection's publishes therefore wait, in order, until every join it started has
//! finished; connections with no join under way go straight to the queue.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::publisher::refuse;
use crate::broker::contract::PublishRequest;
use crate::id::ConnectionId;

#[derive(Debug, Default)]
struct Pending {
    joins: usize,
    publishes: VecDeque<PublishRequest>,
}

/// The connections with joins under way, and what they published meanwhile.
#[derive(Debug)]
pub(super) struct JoinBarrier {
    pending: Mutex<HashMap<ConnectionId, Pending>>,
    queue: mpsc::Sender<PublishRequest>,
}

impl JoinBarrier {
    pub(super) fn new(queue: mpsc::Sender<PublishRequest>) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::default(),
            queue,
        })
    }

    /// A join of `connection` starts; its publishes wait until the returned guard
    /// (and every other of its joins) is dropped.
    pub(super) fn join_started(self: &Arc<Self>, connection: ConnectionId) -> JoinGuard {
        self.pending.lock().entry(connection).or_default().joins += 1;
        JoinGuard {
            barrier: self.clone(),
            connection,
        }
    }

    /// Queues `request`, behind the joins of its connection if any are under way.
    pub(super) fn publish(&self, request: PublishRequest) {
        let mut pending = self.pending.lock();
        let origin = request.origin.as_ref().map(|mailbox| mailbox.id());
        match origin.and_then(|id| pending.get_mut(&id)) {
            Some(waiting) => waiting.publishes.push_back(request),
            None => {
                drop(pending);
                self.enqueue(request);
            }
        }
    }

    fn enqueue(&self, request: PublishRequest) {
        if let Err(err) = self.queue.try_send(request) {
            let request = err.into_inner();
            if let Some(origin) = &request.origin {
                let reason =
                    "too many publishes wait for Redis; nothing was published, send it again";
                refuse(origin, request.ack_id, reason);
            }
        }
    }

    fn join_finished(&self, connection: ConnectionId) {
        let mut pending = self.pending.lock();
        let Some(waiting) = pending.get_mut(&connection) else {
            return;
        };
        waiting.joins -= 1;
        if waiting.joins > 0 {
            return;
        }
        let released = pending
            .remove(&connection)
            .map(|done| done.publishes)
            .unwrap_or_default();
        // Still under the lock: a publish of this connection arriving now queues after these.
        for request in released {
            self.enqueue(request);
        }
    }
}

/// Marks one join as under way until dropped, however the join ends.
#[derive(Debug)]
pub(super) struct JoinGuard {
    barrier: Arc<JoinBarrier>,
    connection: ConnectionId,
}

impl Drop for JoinGuard {
    fn drop(&mut self) {
        self.barrier.join_finished(self.connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Mailbox;
    use crate::publication::Payload;

    fn request(origin: &Arc<Mailbox>, text: &str) -> PublishRequest {
        PublishRequest {
            channel: Arc::from("room"),
            payload: Payload::Text(text.into()),
            retain: false,
            origin: Some(origin.clone()),
            ack_id: None,
            publisher: Arc::from("u:test"),
        }
    }

    fn queued(receiver: &mut mpsc::Receiver<PublishRequest>) -> Vec<String> {
        std::iter::from_fn(|| receiver.try_recv().ok())
            .map(|request| match request.payload {
                Payload::Text(text) => text.to_string(),
                Payload::Json(json) => json.get().to_owned(),
            })
            .collect()
    }

    #[test]
    fn publishes_wait_for_every_join_of_their_connection_and_keep_their_order() {
        let (sender, mut receiver) = mpsc::channel(16);
        let barrier = JoinBarrier::new(sender);
        let (joining, other) = (Arc::new(Mailbox::new(1, 8)), Arc::new(Mailbox::new(2, 8)));
        let first = barrier.join_started(1);
        let second = barrier.join_started(1);
        barrier.publish(request(&joining, "a"));
        barrier.publish(request(&other, "other"));
        barrier.publish(request(&joining, "b"));
        assert_eq!(queued(&mut receiver), ["other"]);
        drop(first);
        assert!(queued(&mut receiver).is_empty());
        drop(second);
        assert_eq!(queued(&mut receiver), ["a", "b"]);
        barrier.publish(request(&joining, "c"));
        assert_eq!(queued(&mut receiver), ["c"]);
    }
}
