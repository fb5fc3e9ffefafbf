//! This node's side of each channel: its local subscribers, and the ordering rules
//! that make Redis pub/sub plus the stream exact. Each channel is a
//! [`LocalChannel`]; this file finds it, by name or by Redis channel, and counts
//! reconnects.
//!
//! A subscriber first *joins*: the node subscribes to the channel in Redis, then reads
//! a snapshot (epoch, latest `seq`, missed messages). Live messages that arrive
//! meanwhile are buffered for the joiner; when the snapshot is in, the joiner gets
//! `subscribed`, the missed messages, then the buffered live ones whose `seq` is past
//! the snapshot, and becomes a live subscriber. Nothing is missed (the Redis
//! subscription was in place before the snapshot was read) and nothing comes twice.
//!
//! After Redis comes back, each channel is *resynced*: live messages wait in a
//! backlog, the stream is read from the last `seq` this node delivered, the missed
//! messages are delivered, then the backlog. If the channel's epoch changed (Redis
//! lost its data), each subscriber is told so with a new `subscribed` frame,
//! `recovered: false`.
//!
//! Messages that other software publishes raw on a django-websocket-redis channel have
//! no `seq`; they are delivered live with `seq` 0 and are not in the history.

use std::collections::HashMap;
use std::sync::Arc;

use heartwire_core::protocol::Position;

use super::local_channel::LocalChannel;
use super::names::{ChannelNames, is_ws4redis};
use super::replies::Snapshot;
use crate::id::ConnectionId;
use crate::mailbox::{Mailbox, Member};

/// A channel to resync, with the position this node delivered up to.
pub(super) type ToResync = (Arc<str>, Option<Position>);

/// What leaving a channel left to do in Redis.
#[derive(Debug, Default)]
pub(super) struct Left {
    /// The subscriber was a member: remove it from the channel's members.
    pub(super) was_member: bool,
    /// It was the node's last subscriber: unsubscribe from these Redis channels.
    pub(super) unsubscribe: Option<Vec<String>>,
}

/// What a join asks of Redis.
#[derive(Debug)]
pub(super) struct Joining {
    /// The Redis channels to subscribe to.
    pub(super) pubsub: Vec<String>,
    /// The subscriber was live already (it subscribed again): the position it had
    /// reached, so that the snapshot fills what it receives meanwhile.
    pub(super) resume_from: Option<Position>,
}

/// Every channel this node has local subscribers on, by name and by Redis channel.
#[derive(Debug)]
pub(super) struct Channels {
    prefix: String,
    /// Counts reconnects: a resync of an older one gives way to the newer.
    generation: u64,
    by_name: HashMap<Arc<str>, LocalChannel>,
    /// Redis pub/sub channel (live or raw) → channel name.
    by_redis: HashMap<String, Arc<str>>,
}

impl Channels {
    /// No channels yet; names are made with `prefix`.
    pub(super) fn new(prefix: String) -> Self {
        Self {
            prefix,
            generation: 0,
            by_name: HashMap::new(),
            by_redis: HashMap::new(),
        }
    }

    /// The Redis pub/sub channels that carry `channel`'s messages (and its presence
    /// events, when tracked).
    fn pubsub_names(names: &ChannelNames, channel: &str, presence: bool) -> Vec<String> {
        let mut list = vec![names.live.clone()];
        if is_ws4redis(channel) {
            list.push(names.raw.clone());
        }
        if presence {
            list.push(names.presence.clone());
        }
        list
    }

    /// The Redis names of `channel`.
    pub(super) fn names(&self, channel: &str) -> ChannelNames {
        match self.by_name.get(channel) {
            Some(local) => local.names().clone(),
            None => ChannelNames::new(&self.prefix, channel),
        }
    }

    /// Starts a join of `subscriber`.
    pub(super) fn join(
        &mut self,
        channel: &Arc<str>,
        subscriber: ConnectionId,
        presence: bool,
    ) -> Joining {
        if let Some(local) = self.by_name.get_mut(channel) {
            let resume_from = local.start_join(subscriber);
            return Joining {
                pubsub: Self::pubsub_names(local.names(), channel, local.tracks_presence()),
                resume_from,
            };
        }
        let names = self.names(channel);
        let pubsub = Self::pubsub_names(&names, channel, presence);
        for name in &pubsub {
            self.by_redis.insert(name.clone(), channel.clone());
        }
        let mut local = LocalChannel::new(names, presence);
        local.start_join(subscriber);
        self.by_name.insert(channel.clone(), local);
        Joining {
            pubsub,
            resume_from: None,
        }
    }

    /// Whether this node has local subscribers (or joiners) on `channel`.
    pub(super) fn contains(&self, channel: &str) -> bool {
        self.by_name.contains_key(channel)
    }

    /// Whether `subscriber` is still joining `channel`.
    pub(super) fn is_joining(&self, channel: &str, subscriber: ConnectionId) -> bool {
        self.by_name
            .get(channel)
            .is_some_and(|local| local.is_joining(subscriber))
    }

    /// Ends a join of `mailbox` (of `user`) with the snapshot read after the Redis
    /// subscription was in place. Returns the member to announce, when the
    /// subscriber is now a new one.
    pub(super) fn finish_join(
        &mut self,
        channel: &Arc<str>,
        mailbox: &Arc<Mailbox>,
        user: Option<Arc<str>>,
        snapshot: Snapshot,
    ) -> Option<Member> {
        self.by_name
            .get_mut(channel)?
            .finish_join(channel, mailbox, user, snapshot)
    }

    /// Whether `subscriber` is a member of `channel` on this node.
    pub(super) fn is_member(&self, channel: &str, subscriber: ConnectionId) -> bool {
        self.by_name
            .get(channel)
            .is_some_and(|local| local.is_member(subscriber))
    }

    /// The channels with tracked members here, with this node's members of each.
    pub(super) fn memberships(&self) -> Vec<(ChannelNames, Vec<Member>)> {
        self.by_name
            .values()
            .filter(|local| local.tracks_presence())
            .map(|local| (local.names().clone(), local.members()))
            .collect()
    }

    /// Removes `subscriber`; says what is left to do in Redis.
    pub(super) fn leave(&mut self, channel: &str, subscriber: ConnectionId) -> Left {
        let Some(local) = self.by_name.get_mut(channel) else {
            return Left::default();
        };
        let was_member = local.leave(subscriber);
        if !local.is_unused() {
            return Left {
                was_member,
                unsubscribe: None,
            };
        }
        let Some(local) = self.by_name.remove(channel) else {
            return Left::default();
        };
        let pubsub = Self::pubsub_names(local.names(), channel, local.tracks_presence());
        for name in &pubsub {
            self.by_redis.remove(name);
        }
        Left {
            was_member,
            unsubscribe: Some(pubsub),
        }
    }

    /// Whether this node needs the Redis pub/sub channel `name`.
    pub(super) fn wants(&self, name: &str) -> bool {
        self.by_redis.contains_key(name)
    }

    /// Every Redis pub/sub channel this node needs.
    pub(super) fn all_pubsub_names(&self) -> Vec<String> {
        self.by_redis.keys().cloned().collect()
    }

    /// The current reconnect's number.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Starts the resync of every channel after a reconnect: their live messages
    /// wait in a backlog until each is resynced. Returns the reconnect's number and
    /// what to resync: each channel with the position this node delivered up to.
    pub(super) fn begin_resync(&mut self) -> (u64, Vec<ToResync>) {
        self.generation += 1;
        let channels = self
            .by_name
            .iter_mut()
            .map(|(name, local)| (name.clone(), local.begin_resync()))
            .collect();
        (self.generation, channels)
    }

    /// Ends the resync of reconnect `generation`: delivers what was missed (or tells
    /// each subscriber its position is lost), then the backlog. A resync of an
    /// older reconnect changes nothing.
    pub(super) fn finish_resync(&mut self, channel: &str, generation: u64, snapshot: Snapshot) {
        if generation != self.generation {
            return;
        }
        if let Some(local) = self.by_name.get_mut(channel) {
            local.finish_resync(channel, snapshot);
        }
    }

    /// A message arrived on Redis channel `redis_channel`.
    pub(super) fn on_pubsub(&mut self, redis_channel: &str, text: String) {
        let Some(channel) = self.by_redis.get(redis_channel) else {
            return;
        };
        if let Some(local) = self.by_name.get_mut(channel) {
            local.on_pubsub(channel, redis_channel, text);
        }
    }

    /// Names of channels that have local subscribers (to keep their history alive).
    pub(super) fn in_use(&self) -> Vec<ChannelNames> {
        self.by_name
            .values()
            .map(|local| local.names().clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Outbound;
    use crate::publication::{Payload, Publication};

    const LIVE: &str = "hw:broadcast:chat#live";
    const RAW: &str = "broadcast:chat";

    fn channel() -> Arc<str> {
        Arc::from("broadcast:chat")
    }

    fn envelope(seq: u64, epoch: &str, raw: bool, text: &str) -> String {
        format!("{seq} {epoch} t{} -\n{text}", if raw { 'r' } else { '-' })
    }

    fn snapshot(epoch: &str, seq: u64, recovered: Option<bool>, missed: &[u64]) -> Snapshot {
        Snapshot {
            epoch: Arc::from(epoch),
            seq,
            recovered,
            retained: None,
            missed: missed
                .iter()
                .map(|seq| {
                    let text = Payload::Text(seq.to_string().into());
                    Arc::new(Publication::new(channel(), *seq, text, None))
                })
                .collect(),
        }
    }

    fn drain(mailbox: &Mailbox) -> Vec<String> {
        std::iter::from_fn(|| mailbox.take())
            .map(|item| match item {
                Outbound::Message(message) => format!("{} {}", message.seq, message.text_frame()),
                Outbound::Subscribed {
                    seq,
                    epoch,
                    recovered,
                    ..
                } => format!("subscribed {epoch} {seq} {recovered:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn joined(channels: &mut Channels, id: ConnectionId, snapshot: Snapshot) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::new(id, 64));
        channels.join(&channel(), id, false);
        channels.finish_join(&channel(), &mailbox, None, snapshot);
        mailbox
    }

    #[test]
    fn a_joiner_gets_the_snapshot_then_only_later_live_messages() {
        let mut channels = Channels::new(String::new());
        let mailbox = Arc::new(Mailbox::new(1, 64));
        assert_eq!(channels.join(&channel(), 1, false).pubsub, [LIVE, RAW]);
        // Live messages arrive while the snapshot is read; 3 was already in it.
        channels.on_pubsub(LIVE, envelope(3, "e", false, "three"));
        channels.on_pubsub(LIVE, envelope(4, "e", false, "four"));
        channels.finish_join(
            &channel(),
            &mailbox,
            None,
            snapshot("e", 3, Some(true), &[2, 3]),
        );
        channels.on_pubsub(LIVE, envelope(5, "e", false, "five"));
        assert_eq!(
            drain(&mailbox),
            [
                "subscribed e 3 Some(true)",
                "2 2",
                "3 3",
                "4 four",
                "5 five"
            ]
        );
    }

    #[test]
    fn heartwires_raw_copy_is_dropped_and_a_foreign_one_has_seq_zero() {
        let mut channels = Channels::new(String::new());
        let mailbox = joined(&mut channels, 1, snapshot("e", 0, None, &[]));
        channels.on_pubsub(LIVE, envelope(1, "e", true, "ours"));
        channels.on_pubsub(RAW, "ours".into());
        channels.on_pubsub(RAW, "from django".into());
        assert_eq!(
            drain(&mailbox),
            ["subscribed e 0 None", "1 ours", "0 from django"]
        );
    }

    #[test]
    fn a_resync_fills_the_gap_once_or_reports_a_new_epoch() {
        let mut channels = Channels::new(String::new());
        let mailbox = joined(&mut channels, 1, snapshot("e", 0, None, &[]));
        channels.on_pubsub(LIVE, envelope(1, "e", false, "1"));
        let (generation, resync) = channels.begin_resync();
        assert_eq!(resync[0].1.as_ref().map(|position| position.seq), Some(1));
        // 2 and 3 were missed while disconnected; 3 and 4 come live meanwhile.
        channels.on_pubsub(LIVE, envelope(3, "e", false, "3"));
        channels.on_pubsub(LIVE, envelope(4, "e", false, "4"));
        channels.finish_resync(
            &channel(),
            generation,
            snapshot("e", 3, Some(true), &[2, 3]),
        );
        assert_eq!(
            drain(&mailbox),
            ["subscribed e 0 None", "1 1", "2 2", "3 3", "4 4"]
        );

        let (stale, _) = channels.begin_resync();
        let (generation, _) = channels.begin_resync();
        // The resync of the older reconnect gives way.
        channels.finish_resync(&channel(), stale, snapshot("x", 9, Some(false), &[]));
        channels.finish_resync(&channel(), generation, snapshot("f", 0, Some(false), &[]));
        channels.on_pubsub(LIVE, envelope(1, "f", false, "new"));
        assert_eq!(drain(&mailbox), ["subscribed f 0 Some(false)", "1 new"]);
    }

    #[test]
    fn subscribing_again_misses_nothing_and_repeats_nothing() {
        let mut channels = Channels::new(String::new());
        let mailbox = joined(&mut channels, 1, snapshot("e", 0, None, &[]));
        channels.on_pubsub(LIVE, envelope(1, "e", false, "1"));
        let again = channels.join(&channel(), 1, false);
        assert_eq!(again.resume_from.map(|position| position.seq), Some(1));
        // 2 comes live before the snapshot (which holds it), 3 after.
        channels.on_pubsub(LIVE, envelope(2, "e", false, "2"));
        channels.finish_join(&channel(), &mailbox, None, snapshot("e", 2, None, &[2]));
        channels.on_pubsub(LIVE, envelope(3, "e", false, "3"));
        assert_eq!(
            drain(&mailbox),
            [
                "subscribed e 0 None",
                "1 1",
                "subscribed e 2 None",
                "2 2",
                "3 3"
            ]
        );
    }

    #[test]
    fn the_last_subscriber_leaving_releases_the_redis_channels() {
        let mut channels = Channels::new("ws4redis".into());
        channels.join(&channel(), 1, true);
        channels.join(&channel(), 2, true);
        assert!(channels.leave(&channel(), 1).unsubscribe.is_none());
        let left = channels.leave(&channel(), 2);
        assert_eq!(
            left.unsubscribe.unwrap(),
            [
                "ws4redis:hw:broadcast:chat#live",
                "ws4redis:broadcast:chat",
                "ws4redis:hw:broadcast:chat#presence"
            ]
        );
        assert!(channels.all_pubsub_names().is_empty());
    }
}
