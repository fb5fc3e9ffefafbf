//! This node's side of each channel: its local subscribers, and the ordering rules
//! that make Redis pub/sub plus the stream exact. Each channel is a
//! [`LocalChannel`]; this file finds it, by name or by Redis channel, and knows
//! which pub/sub link carries it.
//!
//! A subscriber first *joins*: the node subscribes to the channel in Redis, then reads
//! a snapshot (epoch, latest `seq`, missed messages). Live messages that arrive
//! meanwhile are buffered for the joiner; when the snapshot is in, the joiner gets
//! `subscribed`, the missed messages, then the buffered live ones whose `seq` is past
//! the snapshot, and becomes a live subscriber. Nothing is missed (the Redis
//! subscription was in place before the snapshot was read) and nothing comes twice.
//!
//! A channel is *resynced* whenever live messages may have been missed: after its
//! pub/sub link reconnected or moved to another node, and when a live message does
//! not follow the last one delivered (a `seq` gap, or another epoch). Live messages
//! wait in a backlog, the stream is read from the last `seq` this node delivered,
//! the missed messages are delivered, then the backlog. If the channel's epoch
//! changed (Redis lost its data, or a fail-over cut its history), each subscriber is
//! told so with a new `subscribed` frame, `recovered: false`.
//!
//! Messages that other software publishes raw on a django-websocket-redis channel have
//! no `seq`; they are delivered live with `seq` 0 and are not in the history.

use std::collections::HashMap;
use std::sync::Arc;

use heartwire_core::protocol::Position;

use super::links::LinkKey;
use super::local_channel::LocalChannel;
use super::names::{ChannelNames, Naming, is_ws4redis};
use super::replies::Snapshot;
use crate::id::ConnectionId;
use crate::mailbox::{Mailbox, Member};

/// A resync to run: the channel, the resync's number, and the position this node
/// delivered up to.
#[derive(Debug)]
#[must_use = "a begun resync holds the channel's live messages until it is run"]
pub(super) struct Resync {
    /// The channel.
    pub(super) channel: Arc<str>,
    /// The resync's number; an older one's snapshot is ignored.
    pub(super) token: u64,
    /// Where to read the stream from.
    pub(super) position: Option<Position>,
}

/// A Redis pub/sub channel a channel's messages come on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PubSubName {
    /// The Redis channel.
    pub(super) name: String,
    /// Sharded pub/sub (`SSUBSCRIBE`, in a cluster) rather than classic.
    pub(super) sharded: bool,
}

/// What leaving a channel left to do in Redis.
#[derive(Debug, Default)]
pub(super) struct Left {
    /// The subscriber was a member: remove it from the channel's members.
    pub(super) was_member: bool,
    /// It was the node's last subscriber: unsubscribe from these Redis channels on
    /// this link.
    pub(super) unsubscribe: Option<(LinkKey, Vec<PubSubName>)>,
}

/// What a join asks of Redis.
#[derive(Debug)]
pub(super) struct Joining {
    /// The subscriber was live already (it subscribed again): the position it had
    /// reached, so that the snapshot fills what it receives meanwhile.
    pub(super) resume_from: Option<Position>,
}

/// Every channel this node has local subscribers on, by name and by Redis channel.
#[derive(Debug)]
pub(super) struct Channels {
    naming: Naming,
    by_name: HashMap<Arc<str>, LocalChannel>,
    /// Redis pub/sub channel (live, raw or presence) → channel name.
    by_redis: HashMap<String, Arc<str>>,
}

impl Channels {
    /// No channels yet; names are made by `naming`.
    pub(super) fn new(naming: Naming) -> Self {
        Self {
            naming,
            by_name: HashMap::new(),
            by_redis: HashMap::new(),
        }
    }

    /// The Redis pub/sub channels that carry `channel`'s messages (and its presence
    /// events, when tracked): heartwire's own are sharded in a cluster; Django's raw
    /// channel is always classic.
    fn pubsub_names(&self, names: &ChannelNames, channel: &str, presence: bool) -> Vec<PubSubName> {
        let sharded = self.naming.is_cluster();
        let mut list = vec![PubSubName {
            name: names.live.clone(),
            sharded,
        }];
        if is_ws4redis(channel) {
            list.push(PubSubName {
                name: names.raw.clone(),
                sharded: false,
            });
        }
        if presence {
            list.push(PubSubName {
                name: names.presence.clone(),
                sharded,
            });
        }
        list
    }

    /// The Redis names of `channel`.
    pub(super) fn names(&self, channel: &str) -> ChannelNames {
        match self.by_name.get(channel) {
            Some(local) => local.names().clone(),
            None => self.naming.channel(channel),
        }
    }

    /// The Redis pub/sub channels of `channel`, if this node has it.
    pub(super) fn subscriptions(&self, channel: &str) -> Option<Vec<PubSubName>> {
        let local = self.by_name.get(channel)?;
        Some(self.pubsub_names(local.names(), channel, local.tracks_presence()))
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
            return Joining { resume_from };
        }
        let names = self.names(channel);
        for pubsub in self.pubsub_names(&names, channel, presence) {
            self.by_redis.insert(pubsub.name, channel.clone());
        }
        let mut local = LocalChannel::new(names, presence);
        local.start_join(subscriber);
        self.by_name.insert(channel.clone(), local);
        Joining { resume_from: None }
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
    pub(super) fn memberships(&self) -> Vec<(Arc<str>, Vec<Member>)> {
        self.by_name
            .iter()
            .filter(|(_, local)| local.tracks_presence())
            .map(|(name, local)| (name.clone(), local.members()))
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
        let pubsub = self.pubsub_names(local.names(), channel, local.tracks_presence());
        for name in &pubsub {
            self.by_redis.remove(&name.name);
        }
        Left {
            was_member,
            unsubscribe: local.link().cloned().map(|link| (link, pubsub)),
        }
    }

    /// The link that carries `channel`.
    pub(super) fn link_of(&self, channel: &str) -> Option<LinkKey> {
        self.by_name.get(channel)?.link().cloned()
    }

    /// Places `channel` on `link`.
    pub(super) fn place(&mut self, channel: &str, link: LinkKey) {
        if let Some(local) = self.by_name.get_mut(channel) {
            local.set_link(Some(link));
        }
    }

    /// Takes `channel` off `link`, if it is there, to be placed again.
    pub(super) fn unplace(&mut self, channel: &str, link: &LinkKey) {
        if let Some(local) = self.by_name.get_mut(channel) {
            if local.link() == Some(link) {
                local.set_link(None);
            }
        }
    }

    /// Whether `channel` is on `link`.
    pub(super) fn is_on(&self, channel: &str, link: &LinkKey) -> bool {
        self.by_name
            .get(channel)
            .is_some_and(|local| local.link() == Some(link))
    }

    /// The channels on `link`.
    pub(super) fn on_link(&self, link: &LinkKey) -> Vec<Arc<str>> {
        self.by_name
            .iter()
            .filter(|(_, local)| local.link() == Some(link))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Starts a resync of `channel`: its live messages wait in a backlog until it is
    /// resynced. `reconnected`: its messages now come on a new connection.
    pub(super) fn begin_resync(&mut self, channel: &Arc<str>, reconnected: bool) -> Option<Resync> {
        let (token, position) = self.by_name.get_mut(channel)?.begin_resync(reconnected);
        Some(Resync {
            channel: channel.clone(),
            token,
            position,
        })
    }

    /// Whether resync `token` of `channel` is the one under way.
    pub(super) fn is_resyncing(&self, channel: &str, token: u64) -> bool {
        self.by_name
            .get(channel)
            .is_some_and(|local| local.is_resyncing(token))
    }

    /// Ends resync `token` of `channel`: delivers what was missed (or tells each
    /// subscriber its position is lost), then the backlog. A resync older than the
    /// latest changes nothing. Returns another resync when the backlog shows a gap.
    pub(super) fn finish_resync(
        &mut self,
        channel: &Arc<str>,
        token: u64,
        snapshot: Snapshot,
    ) -> Option<Resync> {
        let local = self.by_name.get_mut(channel)?;
        let (token, position) = local.finish_resync(channel, token, snapshot)?;
        Some(Resync {
            channel: channel.clone(),
            token,
            position,
        })
    }

    /// A message arrived on Redis channel `redis_channel`. Returns a resync to run
    /// when it shows that messages were missed.
    pub(super) fn on_pubsub(&mut self, redis_channel: &str, text: String) -> Option<Resync> {
        let channel = self.by_redis.get(redis_channel)?;
        let local = self.by_name.get_mut(channel)?;
        let (token, position) = local.on_pubsub(channel, redis_channel, text)?;
        Some(Resync {
            channel: channel.clone(),
            token,
            position,
        })
    }

    /// The channels that have local subscribers, with how many.
    pub(super) fn subscriber_counts(&self) -> Vec<(Arc<str>, usize)> {
        self.by_name
            .iter()
            .map(|(name, local)| (name.clone(), local.subscriber_count()))
            .collect()
    }

    /// The channels that have local subscribers (to keep their history alive).
    pub(super) fn in_use(&self) -> Vec<Arc<str>> {
        self.by_name.keys().cloned().collect()
    }

    /// The counts `/healthz` and `/metrics` give, from one walk of the channels.
    pub(super) fn census(&self) -> Census {
        let mut census = Census {
            held: self.by_name.len(),
            ..Census::default()
        };
        for local in self.by_name.values() {
            census.subscriptions += local.subscribers();
            census.joining += local.joiners();
            match local.link() {
                Some(link) => *census.by_link.entry(link.clone()).or_default() += 1,
                None => census.unplaced += 1,
            }
        }
        census
    }
}

/// What the channels of a node come to: see [`Channels::census`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Census {
    /// Channels with local subscribers.
    pub(super) held: usize,
    /// Subscriptions of the local subscribers, joining ones included.
    pub(super) subscriptions: usize,
    /// Subscriptions still joining.
    pub(super) joining: usize,
    /// Channels on each link.
    pub(super) by_link: HashMap<LinkKey, usize>,
    /// Channels waiting to be placed on a link.
    pub(super) unplaced: usize,
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

    fn channels(prefix: &str) -> Channels {
        Channels::new(Naming::new(prefix, false))
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
            renewed: false,
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
        let mut channels = channels("");
        let mailbox = Arc::new(Mailbox::new(1, 64));
        channels.join(&channel(), 1, false);
        let names: Vec<_> = channels
            .subscriptions(&channel())
            .unwrap()
            .into_iter()
            .map(|pubsub| (pubsub.name, pubsub.sharded))
            .collect();
        assert_eq!(names, [(LIVE.into(), false), (RAW.into(), false)]);
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
    fn a_subscription_counts_as_joining_until_its_snapshot_is_read_or_it_leaves() {
        let counts = |channels: &Channels| {
            let census = channels.census();
            (census.joining, census.subscriptions)
        };
        let mut channels = channels("");
        let (first, second) = (Arc::new(Mailbox::new(1, 8)), Arc::new(Mailbox::new(2, 8)));
        let empty = || snapshot("e", 0, None, &[]);
        channels.join(&channel(), 1, false);
        channels.join(&channel(), 2, false);
        assert_eq!(counts(&channels), (2, 2));
        channels.finish_join(&channel(), &first, None, empty());
        assert_eq!(counts(&channels), (1, 2));
        assert!(channels.is_joining(&channel(), 2));
        channels.leave(&channel(), 2);
        assert_eq!(counts(&channels), (0, 1));
        // A join that ends after its subscriber left is not counted again.
        let member = channels.finish_join(&channel(), &second, None, empty());
        assert!(member.is_none());
        assert_eq!(counts(&channels), (0, 1));
    }

    #[test]
    fn in_a_cluster_own_channels_are_sharded_and_djangos_stays_classic() {
        let mut channels = Channels::new(Naming::new("", true));
        channels.join(&channel(), 1, true);
        let names: Vec<_> = channels
            .subscriptions(&channel())
            .unwrap()
            .into_iter()
            .map(|pubsub| (pubsub.name, pubsub.sharded))
            .collect();
        assert_eq!(
            names,
            [
                ("hw:{broadcast:chat}#live".into(), true),
                (RAW.into(), false),
                ("hw:{broadcast:chat}#presence".into(), true)
            ]
        );
    }

    #[test]
    fn heartwires_raw_copy_is_dropped_and_a_foreign_one_has_seq_zero() {
        let mut channels = channels("");
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
    fn a_raw_message_both_retained_and_buffered_comes_once() {
        let mut channels = channels("");
        let mailbox = Arc::new(Mailbox::new(1, 64));
        channels.join(&channel(), 1, false);
        // Django publishes after the node subscribed, and keeps the text as the last
        // message before the snapshot reads it.
        channels.on_pubsub(RAW, "to ada".into());
        let mut retained = snapshot("e", 0, None, &[]);
        retained.retained = Some("to ada".into());
        channels.finish_join(&channel(), &mailbox, None, retained);
        assert_eq!(drain(&mailbox), ["subscribed e 0 None", "0 to ada"]);

        // A last message published before the node subscribed comes first.
        let mailbox = Arc::new(Mailbox::new(2, 64));
        channels.join(&channel(), 2, false);
        channels.on_pubsub(RAW, "live".into());
        let mut retained = snapshot("e", 0, None, &[]);
        retained.retained = Some("earlier".into());
        channels.finish_join(&channel(), &mailbox, None, retained);
        assert_eq!(
            drain(&mailbox),
            ["subscribed e 0 None", "0 earlier", "0 live"]
        );
    }

    #[test]
    fn a_resync_fills_the_gap_once_or_reports_a_new_epoch() {
        let mut channels = channels("");
        let mailbox = joined(&mut channels, 1, snapshot("e", 0, None, &[]));
        channels.on_pubsub(LIVE, envelope(1, "e", false, "1"));
        let resync = channels.begin_resync(&channel(), true).unwrap();
        assert_eq!(
            resync.position.as_ref().map(|position| position.seq),
            Some(1)
        );
        // 2 and 3 were missed while disconnected; 3 and 4 come live meanwhile.
        channels.on_pubsub(LIVE, envelope(3, "e", false, "3"));
        channels.on_pubsub(LIVE, envelope(4, "e", false, "4"));
        let again = channels.finish_resync(
            &channel(),
            resync.token,
            snapshot("e", 3, Some(true), &[2, 3]),
        );
        assert!(again.is_none());
        assert_eq!(
            drain(&mailbox),
            ["subscribed e 0 None", "1 1", "2 2", "3 3", "4 4"]
        );

        let stale = channels.begin_resync(&channel(), true).unwrap();
        let latest = channels.begin_resync(&channel(), true).unwrap();
        // The resync started first gives way to the latest.
        channels.finish_resync(&channel(), stale.token, snapshot("x", 9, Some(false), &[]));
        assert!(drain(&mailbox).is_empty());
        channels.finish_resync(&channel(), latest.token, snapshot("f", 0, Some(false), &[]));
        channels.on_pubsub(LIVE, envelope(1, "f", false, "new"));
        assert_eq!(drain(&mailbox), ["subscribed f 0 Some(false)", "1 new"]);
    }

    #[test]
    fn a_live_gap_is_filled_from_the_stream_before_anything_later() {
        let mut channels = channels("");
        let mailbox = joined(&mut channels, 1, snapshot("e", 0, None, &[]));
        assert!(
            channels
                .on_pubsub(LIVE, envelope(1, "e", false, "1"))
                .is_none()
        );
        // 2 and 3 never came live: 4 shows the gap.
        let resync = channels
            .on_pubsub(LIVE, envelope(4, "e", false, "4"))
            .expect("a gap starts a resync");
        assert_eq!(resync.position.map(|position| position.seq), Some(1));
        assert!(
            channels
                .on_pubsub(LIVE, envelope(5, "e", false, "5"))
                .is_none()
        );
        channels.finish_resync(
            &channel(),
            resync.token,
            snapshot("e", 4, Some(true), &[2, 3, 4]),
        );
        assert_eq!(
            drain(&mailbox),
            ["subscribed e 0 None", "1 1", "2 2", "3 3", "4 4", "5 5"]
        );
    }

    #[test]
    fn a_live_message_of_another_epoch_is_never_taken_for_an_old_seq() {
        let mut channels = channels("");
        let mailbox = joined(&mut channels, 1, snapshot("e", 0, None, &[]));
        for seq in 1..=3 {
            channels.on_pubsub(LIVE, envelope(seq, "e", false, &seq.to_string()));
        }
        // A fail-over cut the history: the promoted master numbers from 1 again, in
        // a new epoch. Its message 2 must not be dropped as an old 2.
        let resync = channels
            .on_pubsub(LIVE, envelope(2, "f", false, "new 2"))
            .expect("another epoch starts a resync");
        assert_eq!(
            resync.position.as_ref().map(|position| position.seq),
            Some(3)
        );
        channels.finish_resync(&channel(), resync.token, snapshot("f", 1, Some(false), &[]));
        assert_eq!(
            drain(&mailbox),
            [
                "subscribed e 0 None",
                "1 1",
                "2 2",
                "3 3",
                "subscribed f 1 Some(false)",
                "2 new 2"
            ]
        );
    }

    #[test]
    fn after_a_new_epoch_its_messages_come_from_the_first() {
        let mut channels = channels("");
        let mailbox = joined(&mut channels, 1, snapshot("e", 0, None, &[]));
        channels.on_pubsub(LIVE, envelope(1, "e", false, "1"));
        let resync = channels.begin_resync(&channel(), true).unwrap();
        channels.on_pubsub(LIVE, envelope(3, "f", false, "3"));
        // The resync found epoch f, whose stream still holds it from 1.
        channels.finish_resync(
            &channel(),
            resync.token,
            snapshot("f", 0, Some(false), &[1, 2]),
        );
        channels.on_pubsub(LIVE, envelope(4, "f", false, "4"));
        assert_eq!(
            drain(&mailbox),
            [
                "subscribed e 0 None",
                "1 1",
                "subscribed f 0 Some(false)",
                "1 1",
                "2 2",
                "3 3",
                "4 4"
            ]
        );
    }

    #[test]
    fn subscribing_again_misses_nothing_and_repeats_nothing() {
        let mut channels = channels("");
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
    fn the_last_subscriber_leaving_releases_the_redis_channels_of_its_link() {
        let mut channels = channels("ws4redis");
        channels.join(&channel(), 1, true);
        channels.join(&channel(), 2, true);
        channels.place(&channel(), LinkKey::Shard(0));
        assert_eq!(channels.on_link(&LinkKey::Shard(0)), [channel()]);
        assert!(channels.is_on(&channel(), &LinkKey::Shard(0)));
        assert!(!channels.is_on(&channel(), &LinkKey::Shard(1)));
        assert!(channels.leave(&channel(), 1).unsubscribe.is_none());
        let (link, names) = channels.leave(&channel(), 2).unsubscribe.unwrap();
        assert_eq!(link, LinkKey::Shard(0));
        let names: Vec<_> = names.into_iter().map(|pubsub| pubsub.name).collect();
        assert_eq!(
            names,
            [
                "ws4redis:hw:broadcast:chat#live",
                "ws4redis:broadcast:chat",
                "ws4redis:hw:broadcast:chat#presence"
            ]
        );
        assert!(channels.on_link(&LinkKey::Shard(0)).is_empty());
        assert_eq!(channels.census().unplaced, 0);
    }

    #[test]
    fn the_census_counts_channels_subscriptions_joins_and_links_in_one_walk() {
        let mut channels = channels("");
        let other: Arc<str> = Arc::from("other");
        channels.join(&channel(), 1, false);
        channels.join(&channel(), 2, false);
        channels.join(&other, 1, false);
        channels.place(&channel(), LinkKey::Shard(0));
        let first = Arc::new(Mailbox::new(1, 8));
        channels.finish_join(&channel(), &first, None, snapshot("e", 0, None, &[]));
        assert_eq!(
            channels.census(),
            Census {
                held: 2,
                subscriptions: 3,
                joining: 2,
                by_link: HashMap::from([(LinkKey::Shard(0), 1)]),
                unplaced: 1,
            }
        );
    }
}
