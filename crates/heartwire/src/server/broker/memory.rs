//! The in-process broker: channels of one node, held in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Broker, Publication, PublishRequest};
use crate::server::mailbox::{ConnectionId, Mailbox, Outbound};

#[derive(Debug, Default)]
struct Channel {
    /// Sequence number of the latest message.
    seq: u64,
    subscribers: HashMap<ConnectionId, Arc<Mailbox>>,
    /// The last retained message and when it expires.
    retained: Option<(Arc<Publication>, Instant)>,
}

impl Channel {
    fn retained(&self, now: Instant) -> Option<&Arc<Publication>> {
        self.retained
            .as_ref()
            .filter(|(_, expires)| *expires > now)
            .map(|(message, _)| message)
    }

    fn is_unused(&self, now: Instant) -> bool {
        self.subscribers.is_empty() && self.retained(now).is_none()
    }
}

/// Channels of this node only. Every subscriber of a channel receives its messages
/// in the order the channel's lock admitted them.
#[derive(Debug)]
pub struct MemoryBroker {
    channels: Mutex<HashMap<Arc<str>, Channel>>,
    persist_for: Duration,
}

impl MemoryBroker {
    /// A broker that keeps each channel's last retained message for `persist_for`.
    pub fn new(persist_for: Duration) -> Self {
        Self {
            channels: Mutex::default(),
            persist_for,
        }
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<Arc<str>, Channel>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Broker for MemoryBroker {
    fn subscribe(&self, channel: &Arc<str>, subscriber: &Arc<Mailbox>, with_retained: bool) {
        let mut channels = self.channels();
        let state = channels.entry(channel.clone()).or_default();
        subscriber.deliver(Outbound::Subscribed {
            channel: channel.clone(),
            seq: state.seq,
        });
        if with_retained {
            if let Some(message) = state.retained(Instant::now()) {
                subscriber.deliver(Outbound::Message(message.clone()));
            }
        }
        state
            .subscribers
            .insert(subscriber.id(), subscriber.clone());
    }

    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId) {
        let mut channels = self.channels();
        if let Some(state) = channels.get_mut(channel) {
            state.subscribers.remove(&subscriber);
            if state.is_unused(Instant::now()) {
                channels.remove(channel);
            }
        }
    }

    fn publish(&self, request: PublishRequest) {
        let PublishRequest {
            channel,
            payload,
            retain,
            origin,
            ack_id,
        } = request;
        let now = Instant::now();
        let mut channels = self.channels();
        let state = channels.entry(channel.clone()).or_default();
        state.seq += 1;
        let message = Arc::new(Publication::new(
            channel.clone(),
            state.seq,
            payload,
            origin.as_ref().map(|mailbox| mailbox.id()),
        ));
        if retain && !self.persist_for.is_zero() {
            state.retained = Some((message.clone(), now + self.persist_for));
        }
        if let (Some(origin), Some(id)) = (&origin, ack_id) {
            origin.deliver(Outbound::Ack {
                id,
                seq: message.seq,
            });
        }
        // A full mailbox marks its connection a slow consumer, which then closes
        // itself and unsubscribes; the others are not held up by it.
        for subscriber in state.subscribers.values() {
            subscriber.deliver(Outbound::Message(message.clone()));
        }
        if state.is_unused(now) {
            channels.remove(&channel);
        }
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::broker::Payload;

    fn mailbox(id: ConnectionId) -> Arc<Mailbox> {
        Arc::new(Mailbox::new(id, 64))
    }

    fn drain(mailbox: &Mailbox) -> Vec<String> {
        std::iter::from_fn(|| mailbox.take())
            .map(|item| match item {
                Outbound::Message(message) => {
                    format!("message {} {}", message.seq, message.text_frame())
                }
                Outbound::Subscribed { channel, seq } => format!("subscribed {channel} {seq}"),
                Outbound::Ack { id, seq } => format!("ack {id} {seq}"),
                Outbound::Error { reason, .. } => format!("error {reason}"),
            })
            .collect()
    }

    fn publish(
        broker: &MemoryBroker,
        channel: &str,
        text: &str,
        retain: bool,
        origin: Option<&Arc<Mailbox>>,
    ) {
        broker.publish(PublishRequest {
            channel: Arc::from(channel),
            payload: Payload::Text(text.into()),
            retain,
            origin: origin.cloned(),
            ack_id: origin.map(|_| format!("id-{text}")),
        });
    }

    #[test]
    fn subscribers_get_messages_in_sequence() {
        let broker = MemoryBroker::new(Duration::ZERO);
        let (a, b) = (mailbox(1), mailbox(2));
        let channel: Arc<str> = Arc::from("room");
        broker.subscribe(&channel, &a, false);
        publish(&broker, "room", "one", false, None);
        broker.subscribe(&channel, &b, false);
        publish(&broker, "room", "two", false, Some(&b));
        assert_eq!(
            drain(&a),
            ["subscribed room 0", "message 1 one", "message 2 two"]
        );
        assert_eq!(
            drain(&b),
            ["subscribed room 1", "ack id-two 2", "message 2 two"]
        );
    }

    #[test]
    fn unsubscribed_connections_get_nothing_more() {
        let broker = MemoryBroker::new(Duration::ZERO);
        let a = mailbox(1);
        let channel: Arc<str> = Arc::from("room");
        broker.subscribe(&channel, &a, false);
        broker.unsubscribe("room", 1);
        publish(&broker, "room", "late", false, None);
        assert_eq!(drain(&a), ["subscribed room 0"]);
    }

    #[test]
    fn late_joiner_gets_the_retained_message_while_it_is_fresh() {
        let broker = MemoryBroker::new(Duration::from_secs(60));
        publish(&broker, "broadcast:news", "first", true, None);
        publish(&broker, "broadcast:news", "second", true, None);
        let late = mailbox(7);
        broker.subscribe(&Arc::from("broadcast:news"), &late, true);
        assert_eq!(
            drain(&late),
            ["subscribed broadcast:news 2", "message 2 second"]
        );
    }

    #[test]
    fn nothing_is_retained_when_persistence_is_off() {
        let broker = MemoryBroker::new(Duration::ZERO);
        publish(&broker, "broadcast:news", "gone", true, None);
        let late = mailbox(7);
        broker.subscribe(&Arc::from("broadcast:news"), &late, true);
        assert_eq!(drain(&late), ["subscribed broadcast:news 0"]);
        assert!(
            broker.channels().get("broadcast:news").is_some(),
            "kept while subscribed"
        );
        broker.unsubscribe("broadcast:news", 7);
        assert!(
            broker.channels().is_empty(),
            "an unused channel is forgotten"
        );
    }

    #[test]
    fn a_slow_subscriber_does_not_hold_up_the_others() {
        let broker = MemoryBroker::new(Duration::ZERO);
        let slow = Arc::new(Mailbox::new(1, 2));
        let fast = mailbox(2);
        let channel: Arc<str> = Arc::from("room");
        broker.subscribe(&channel, &slow, false);
        broker.subscribe(&channel, &fast, false);
        for i in 0..10 {
            publish(&broker, "room", &i.to_string(), false, None);
        }
        assert_eq!(drain(&fast).len(), 11);
        assert!(drain(&slow).is_empty());
        assert!(!slow.deliver(Outbound::Ack {
            id: String::new(),
            seq: 0
        }));
    }
}
