//! This node's side of each channel: its local subscribers, and the ordering rules
//! that make Redis pub/sub plus the stream exact.
//!
//! A subscriber first *joins*: the node subscribes to the channel in Redis, then reads
//! a snapshot (epoch, latest `seq`, missed messages). Live messages that arrive
//! meanwhile are buffered for the joiner; when the snapshot is in, the joiner gets
//! `subscribed`, the missed messages, then the buffered live ones whose `seq` is past
//! the snapshot, and becomes a live subscriber. Nothing is missed (the Redis
//! subscription was in place before the snapshot was read) and nothing comes twice.
//!
//! After Redis comes back, each channel is *resynced*: live messages are held, the
//! stream is read from the last `seq` this node delivered, the missed messages are
//! delivered, then the held ones. If the channel's epoch changed (Redis lost its
//! data), each subscriber is told so with a new `subscribed` frame, `recovered: false`.
//!
//! Messages that other software publishes raw on a django-websocket-redis channel have
//! no `seq`; they are delivered live with `seq` 0 and are not in the history.

use std::collections::HashMap;
use std::sync::Arc;

use heartwire_core::protocol::Position;

use super::names::{ChannelNames, is_ws4redis};
use super::scripts::{Envelope, Snapshot};
use crate::server::broker::{Payload, Publication};
use crate::server::mailbox::{ConnectionId, Mailbox, Outbound};

/// A live message with the epoch it was published in (none for a raw one).
type Live = (Option<Arc<str>>, Arc<Publication>);

#[derive(Debug)]
struct Subscriber {
    mailbox: Arc<Mailbox>,
    /// Messages up to this `seq` reached it before it went live.
    after: u64,
}

/// One channel as this node sees it.
#[derive(Debug)]
struct LocalChannel {
    names: ChannelNames,
    live: HashMap<ConnectionId, Subscriber>,
    /// Joiners and the live messages buffered for them.
    joining: HashMap<ConnectionId, Vec<Live>>,
    /// The epoch and latest `seq` delivered here.
    position: Option<(Arc<str>, u64)>,
    /// Live messages held while the channel resyncs.
    held: Option<Vec<Live>>,
    /// Raw copies of heartwire's own messages still to come on the raw channel.
    twins: u32,
}

impl LocalChannel {
    fn is_unused(&self) -> bool {
        self.live.is_empty() && self.joining.is_empty()
    }

    fn deliver(&mut self, (epoch, message): Live) {
        if let Some(epoch) = &epoch {
            match &mut self.position {
                Some((known, seq)) if known == epoch => {
                    if message.seq <= *seq {
                        return;
                    }
                    *seq = message.seq;
                }
                position => {
                    // A new epoch: positions of the old one say nothing about it.
                    *position = Some((epoch.clone(), message.seq));
                    for subscriber in self.live.values_mut() {
                        subscriber.after = 0;
                    }
                }
            }
        }
        for subscriber in self.live.values() {
            if epoch.is_none() || message.seq > subscriber.after {
                // A full mailbox marks a slow consumer, which closes and leaves.
                subscriber
                    .mailbox
                    .deliver(Outbound::Message(message.clone()));
            }
        }
        for buffer in self.joining.values_mut() {
            buffer.push((epoch.clone(), message.clone()));
        }
    }

    fn receive(&mut self, live: Live) {
        match &mut self.held {
            Some(held) => held.push(live),
            None => self.deliver(live),
        }
    }
}

/// Every channel this node has local subscribers on, by name and by Redis channel.
#[derive(Debug)]
pub(super) struct Channels {
    prefix: String,
    by_name: HashMap<Arc<str>, LocalChannel>,
    /// Redis pub/sub channel (live or raw) → channel name.
    by_redis: HashMap<String, Arc<str>>,
}

impl Channels {
    /// No channels yet; names are made with `prefix`.
    pub(super) fn new(prefix: String) -> Self {
        Self {
            prefix,
            by_name: HashMap::new(),
            by_redis: HashMap::new(),
        }
    }

    /// The Redis pub/sub channels that carry `channel`'s messages.
    pub(super) fn pubsub_names(names: &ChannelNames, channel: &str) -> Vec<String> {
        let mut list = vec![names.live.clone()];
        if is_ws4redis(channel) {
            list.push(names.raw.clone());
        }
        list
    }

    /// The Redis names of `channel`.
    pub(super) fn names(&self, channel: &str) -> ChannelNames {
        match self.by_name.get(channel) {
            Some(local) => local.names.clone(),
            None => ChannelNames::new(&self.prefix, channel),
        }
    }

    /// Starts a join of `subscriber`; returns the Redis channels to subscribe to.
    pub(super) fn join(&mut self, channel: &Arc<str>, subscriber: ConnectionId) -> Vec<String> {
        let names = self.names(channel);
        let pubsub = Self::pubsub_names(&names, channel);
        let local = self.by_name.entry(channel.clone()).or_insert_with(|| {
            for name in &pubsub {
                self.by_redis.insert(name.clone(), channel.clone());
            }
            LocalChannel {
                names,
                live: HashMap::new(),
                joining: HashMap::new(),
                position: None,
                held: None,
                twins: 0,
            }
        });
        local.joining.insert(subscriber, Vec::new());
        pubsub
    }

    /// Whether this node has local subscribers (or joiners) on `channel`.
    pub(super) fn contains(&self, channel: &str) -> bool {
        self.by_name.contains_key(channel)
    }

    /// Whether `subscriber` is still joining `channel`.
    pub(super) fn is_joining(&self, channel: &str, subscriber: ConnectionId) -> bool {
        self.by_name
            .get(channel)
            .is_some_and(|local| local.joining.contains_key(&subscriber))
    }

    /// Ends a join with the snapshot read after the Redis subscription was in place.
    pub(super) fn finish_join(
        &mut self,
        channel: &Arc<str>,
        mailbox: &Arc<Mailbox>,
        snapshot: Snapshot,
    ) {
        let Some(local) = self.by_name.get_mut(channel) else {
            return;
        };
        let Some(buffered) = local.joining.remove(&mailbox.id()) else {
            return;
        };
        let Snapshot {
            epoch,
            seq,
            recovered,
            retained,
            missed,
        } = snapshot;
        let confirmation = Outbound::Subscribed {
            channel: channel.clone(),
            seq,
            epoch: epoch.clone(),
            recovered,
        };
        let retained = retained.map(|text| {
            Arc::new(Publication::new(
                channel.clone(),
                seq,
                Payload::Text(text.into_boxed_str()),
                None,
            ))
        });
        let later = buffered.into_iter().filter_map(|(message_epoch, message)| {
            let fresh = match &message_epoch {
                Some(message_epoch) => *message_epoch != epoch || message.seq > seq,
                None => true,
            };
            fresh.then_some(message)
        });
        let items = std::iter::once(confirmation)
            .chain(retained.map(Outbound::Message))
            .chain(missed.into_iter().map(Outbound::Message))
            .chain(later.map(Outbound::Message));
        if mailbox.deliver_all(items) {
            // Everything this node delivered so far in the snapshot's epoch reached
            // the joiner, from the snapshot or from its buffer.
            let after = match &local.position {
                Some((known, last)) if *known == epoch => (*last).max(seq),
                _ => seq,
            };
            if local.position.is_none() {
                local.position = Some((epoch, seq));
            }
            let subscriber = Subscriber {
                mailbox: mailbox.clone(),
                after,
            };
            local.live.insert(mailbox.id(), subscriber);
        }
    }

    /// Removes `subscriber`; returns the Redis channels to leave when it was the last.
    pub(super) fn leave(&mut self, channel: &str, subscriber: ConnectionId) -> Option<Vec<String>> {
        let local = self.by_name.get_mut(channel)?;
        local.live.remove(&subscriber);
        local.joining.remove(&subscriber);
        if !local.is_unused() {
            return None;
        }
        let local = self.by_name.remove(channel)?;
        let pubsub = Self::pubsub_names(&local.names, channel);
        for name in &pubsub {
            self.by_redis.remove(name);
        }
        Some(pubsub)
    }

    /// Every Redis pub/sub channel this node needs.
    pub(super) fn all_pubsub_names(&self) -> Vec<String> {
        self.by_redis.keys().cloned().collect()
    }

    /// Holds live messages of every channel until it is resynced; returns what to
    /// resync: each channel with the position this node delivered up to.
    pub(super) fn hold_all(&mut self) -> Vec<(Arc<str>, Option<Position>)> {
        self.by_name
            .iter_mut()
            .map(|(name, local)| {
                local.held.get_or_insert_with(Vec::new);
                local.twins = 0;
                let position = local.position.as_ref().map(|(epoch, seq)| Position {
                    epoch: epoch.to_string(),
                    seq: *seq,
                });
                (name.clone(), position)
            })
            .collect()
    }

    /// Ends a resync: delivers what was missed (or tells each subscriber its position
    /// is lost), then what was held. Without a snapshot, only releases what was held.
    pub(super) fn finish_resync(&mut self, channel: &str, snapshot: Option<Snapshot>) {
        let Some(local) = self.by_name.get_mut(channel) else {
            return;
        };
        if let Some(snapshot) = snapshot {
            if snapshot.recovered != Some(false) {
                for message in snapshot.missed {
                    local.deliver((Some(snapshot.epoch.clone()), message));
                }
                if local.position.is_none() {
                    local.position = Some((snapshot.epoch, snapshot.seq));
                }
            } else {
                for subscriber in local.live.values_mut() {
                    subscriber.after = snapshot.seq;
                    subscriber.mailbox.deliver(Outbound::Subscribed {
                        channel: Arc::from(channel),
                        seq: snapshot.seq,
                        epoch: snapshot.epoch.clone(),
                        recovered: Some(false),
                    });
                }
                local.position = Some((snapshot.epoch, snapshot.seq));
            }
        }
        for live in local.held.take().unwrap_or_default() {
            local.deliver(live);
        }
    }

    /// A message arrived on Redis channel `redis_channel`.
    pub(super) fn on_pubsub(&mut self, redis_channel: &str, text: String) {
        let Some(channel) = self.by_redis.get(redis_channel) else {
            return;
        };
        let Some(local) = self.by_name.get_mut(channel) else {
            return;
        };
        if redis_channel == local.names.live {
            let Some((envelope, body)) = Envelope::parse(&text) else {
                tracing::warn!(redis_channel, "dropping a malformed envelope");
                return;
            };
            if envelope.raw_follows {
                local.twins += 1;
            }
            if let Some(message) = envelope.publication(channel.clone(), body.to_owned()) {
                local.receive((Some(envelope.epoch), Arc::new(message)));
            }
        } else if local.twins > 0 {
            // heartwire's own message, already delivered from its envelope.
            local.twins -= 1;
        } else {
            let message = Publication::new(channel.clone(), 0, Payload::Text(text.into()), None);
            local.receive((None, Arc::new(message)));
        }
    }

    /// Names of channels that have local subscribers (to keep their history alive).
    pub(super) fn in_use(&self) -> Vec<ChannelNames> {
        self.by_name
            .values()
            .map(|local| local.names.clone())
            .collect()
    }
}
