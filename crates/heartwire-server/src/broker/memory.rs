//! The in-process broker: channels of one node, held in memory.
//!
//! Each channel has an epoch (random, new whenever the channel is created), a sequence
//! counter, and a bounded history of its latest messages, so a client that comes back
//! with its last position gets exactly what it missed, or is told it cannot. A channel
//! without subscribers keeps its history for `history_ttl`, then is forgotten, and a
//! later one starts a new epoch.
//!
//! The broker reads the time from its [`Clock`], so tests can move it by hand.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use heartwire_core::protocol::Position;
use parking_lot::{Mutex, MutexGuard};

use super::contract::{Broker, PublishRequest, SubscribeRequest};
use crate::config::Retention;
use crate::id::{ConnectionId, random_id};
use crate::mailbox::{Mailbox, Member, Outbound};
use crate::publication::Publication;

/// Operations between two sweeps of unused channels and expired publish ids.
const SWEEP_EVERY: u32 = 1024;

#[derive(Debug)]
struct Channel {
    epoch: Arc<str>,
    /// Sequence number of the latest message.
    seq: u64,
    /// The latest messages, oldest first, with consecutive sequence numbers.
    history: VecDeque<Arc<Publication>>,
    /// When the channel was last published on or left by a subscriber.
    touched: Instant,
    subscribers: HashMap<ConnectionId, Arc<Mailbox>>,
    /// Subscribers that asked to be seen (presence), with their users.
    members: HashMap<ConnectionId, Option<Arc<str>>>,
    /// How many of the members each user is.
    users: HashMap<Arc<str>, usize>,
    /// The last retained message and when it expires.
    retained: Option<(Arc<Publication>, Instant)>,
}

impl Channel {
    fn new(now: Instant) -> Self {
        Self {
            epoch: Arc::from(random_id()),
            seq: 0,
            history: VecDeque::new(),
            touched: now,
            subscribers: HashMap::new(),
            members: HashMap::new(),
            users: HashMap::new(),
            retained: None,
        }
    }

    fn retained(&self, now: Instant) -> Option<&Arc<Publication>> {
        self.retained
            .as_ref()
            .filter(|(_, expires)| *expires > now)
            .map(|(message, _)| message)
    }

    /// What a subscription `since` a position is given: whether it is recovered,
    /// the `seq` its `subscribed` names, and the messages that follow that `seq`.
    /// A position of another epoch (the channel was forgotten, or the server
    /// restarted) is not recovered, but when the history still holds this epoch
    /// from its first message, all of them follow from `seq` 0, so nothing published
    /// since the change is skipped.
    fn resume(&self, since: &Position) -> (bool, u64, Vec<Arc<Publication>>) {
        let lost = (false, self.seq, Vec::new());
        if *since.epoch != *self.epoch {
            let whole_epoch = self.history.front().is_none_or(|first| first.seq == 1);
            if SubscribeRequest::is_unreplayable(since) || !whole_epoch {
                return lost;
            }
            return (false, 0, self.history.iter().cloned().collect());
        }
        if since.seq > self.seq {
            return lost;
        }
        if since.seq == self.seq {
            return (true, self.seq, Vec::new());
        }
        match self.history.front() {
            Some(oldest) if oldest.seq <= since.seq + 1 => (
                true,
                self.seq,
                self.history
                    .iter()
                    .filter(|message| message.seq > since.seq)
                    .cloned()
                    .collect(),
            ),
            _ => lost,
        }
    }

    /// Adds a member; announces it when it is anonymous or its user's first.
    fn add_member(&mut self, channel: &Arc<str>, session: ConnectionId, user: Option<Arc<str>>) {
        if self.members.contains_key(&session) {
            return;
        }
        self.members.insert(session, user.clone());
        let first = user.as_ref().is_none_or(|user| {
            let count = self.users.entry(user.clone()).or_default();
            *count += 1;
            *count == 1
        });
        if first {
            self.announce(channel, Member { session, user }, true);
        }
    }

    /// Removes a member; announces it when it was anonymous or its user's last.
    fn remove_member(&mut self, channel: &Arc<str>, session: ConnectionId) {
        let Some(user) = self.members.remove(&session) else {
            return;
        };
        let last = user.as_ref().is_none_or(|user| {
            let count = self
                .users
                .get_mut(user)
                .expect("a member's user is counted");
            *count -= 1;
            *count == 0 && self.users.remove(user).is_some()
        });
        if last {
            self.announce(channel, Member { session, user }, false);
        }
    }

    /// Tells every subscriber but the member itself that it joined or left.
    fn announce(&self, channel: &Arc<str>, member: Member, joined: bool) {
        for (id, subscriber) in &self.subscribers {
            if *id != member.session {
                subscriber.deliver(Outbound::PresenceChange {
                    channel: channel.clone(),
                    member: member.clone(),
                    joined,
                });
            }
        }
    }

    fn is_unused(&self, now: Instant, retention: &Retention) -> bool {
        self.subscribers.is_empty()
            && self.retained(now).is_none()
            && now.saturating_duration_since(self.touched) >= retention.history_ttl
    }
}

/// Publish ids seen within the dedup window, with the `seq` they got.
#[derive(Debug, Default)]
struct RecentIds {
    seq_of: HashMap<(Arc<str>, String), u64>,
    /// The same keys in the order they were seen, for expiry.
    seen: VecDeque<(Instant, Arc<str>, String)>,
}

impl RecentIds {
    fn get(&self, channel: &Arc<str>, id: &str) -> Option<u64> {
        self.seq_of.get(&(channel.clone(), id.to_owned())).copied()
    }

    fn insert(&mut self, channel: &Arc<str>, id: &str, seq: u64, now: Instant) {
        self.seq_of.insert((channel.clone(), id.to_owned()), seq);
        self.seen.push_back((now, channel.clone(), id.to_owned()));
    }

    fn expire(&mut self, now: Instant, retention: &Retention) {
        while let Some((seen, ..)) = self.seen.front() {
            if now.saturating_duration_since(*seen) < retention.dedup_window {
                break;
            }
            let (_, channel, id) = self.seen.pop_front().expect("front exists");
            self.seq_of.remove(&(channel, id));
        }
    }
}

#[derive(Debug, Default)]
struct State {
    channels: HashMap<Arc<str>, Channel>,
    recent_ids: RecentIds,
    operations: u32,
}

impl State {
    /// Forgets unused channels and expired ids, once every [`SWEEP_EVERY`] operations.
    fn sweep(&mut self, now: Instant, retention: &Retention) {
        self.operations += 1;
        if self.operations < SWEEP_EVERY {
            return;
        }
        self.operations = 0;
        self.channels
            .retain(|_, channel| !channel.is_unused(now, retention));
        self.recent_ids.expire(now, retention);
    }

    fn channel(&mut self, name: &Arc<str>, now: Instant) -> &mut Channel {
        self.channels
            .entry(name.clone())
            .or_insert_with(|| Channel::new(now))
    }
}

/// Where a [`MemoryBroker`] reads the time: history, retained messages and publish
/// ids expire on it.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Channels of this node only. Every subscriber of a channel receives its messages
/// in the order the broker's lock admitted them.
#[derive(Debug)]
pub struct MemoryBroker<C = SystemClock> {
    state: Mutex<State>,
    retention: Retention,
    clock: C,
    node_id: String,
}

impl MemoryBroker {
    /// A broker that keeps what `retention` says, on the system's clock.
    pub fn new(retention: Retention) -> Self {
        Self::with_clock(retention, SystemClock)
    }
}

impl<C: Clock> MemoryBroker<C> {
    /// A broker that keeps what `retention` says, on `clock`.
    pub fn with_clock(retention: Retention, clock: C) -> Self {
        Self {
            state: Mutex::default(),
            retention,
            clock,
            node_id: random_id(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }
}

impl<C: Clock> Broker for MemoryBroker<C> {
    fn subscribe(&self, request: SubscribeRequest) {
        let SubscribeRequest {
            channel,
            subscriber,
            with_retained,
            since,
            presence,
            user,
        } = request;
        let now = self.clock.now();
        let mut state = self.state();
        state.sweep(now, &self.retention);
        let entry = state.channel(&channel, now);
        let (recovered, seq, missed) = match &since {
            Some(since) => {
                let (recovered, seq, missed) = entry.resume(since);
                (Some(recovered), seq, missed)
            }
            None => (None, entry.seq, Vec::new()),
        };
        let confirmation = Outbound::Subscribed {
            channel: channel.clone(),
            seq,
            epoch: entry.epoch.clone(),
            recovered,
        };
        let retained = with_retained
            .then(|| entry.retained(now).cloned())
            .flatten();
        let items = std::iter::once(confirmation)
            .chain(retained.map(Outbound::Message))
            .chain(missed.into_iter().map(Outbound::Message));
        let id = subscriber.id();
        if subscriber.deliver_all(items) {
            entry.subscribers.insert(id, subscriber);
            if presence {
                entry.add_member(&channel, id, user);
            }
        }
    }

    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId) {
        let now = self.clock.now();
        let mut state = self.state();
        if let Some(entry) = state.channels.get_mut(channel) {
            entry.subscribers.remove(&subscriber);
            entry.touched = now;
            if entry.members.contains_key(&subscriber) {
                entry.remove_member(&Arc::from(channel), subscriber);
            }
        }
        state.sweep(now, &self.retention);
    }

    fn publish(&self, request: PublishRequest) {
        let PublishRequest {
            channel,
            payload,
            retain,
            origin,
            ack_id,
        } = request;
        let now = self.clock.now();
        let mut state = self.state();
        state.sweep(now, &self.retention);
        if let (Some(origin), Some(id)) = (&origin, &ack_id) {
            if let Some(seq) = state.recent_ids.get(&channel, id) {
                origin.deliver(Outbound::Ack {
                    id: id.clone(),
                    seq,
                    duplicate: true,
                });
                return;
            }
        }
        let retention = self.retention;
        let entry = state.channel(&channel, now);
        entry.seq += 1;
        entry.touched = now;
        let message = Arc::new(Publication::new(
            channel.clone(),
            entry.seq,
            payload,
            origin.as_ref().map(|mailbox| mailbox.id()),
        ));
        if retention.history_size > 0 {
            if entry.history.len() == retention.history_size {
                entry.history.pop_front();
            }
            entry.history.push_back(message.clone());
        }
        if retain && !retention.persist_for.is_zero() {
            entry.retained = Some((message.clone(), now + retention.persist_for));
        }
        // A full mailbox marks its connection a slow consumer, which then closes
        // itself and unsubscribes; the others are not held up by it.
        for subscriber in entry.subscribers.values() {
            subscriber.deliver(Outbound::Message(message.clone()));
        }
        if let (Some(origin), Some(id)) = (&origin, ack_id) {
            state.recent_ids.insert(&channel, &id, message.seq, now);
            origin.deliver(Outbound::Ack {
                id,
                seq: message.seq,
                duplicate: false,
            });
        }
    }

    fn presence(&self, channel: Arc<str>, asker: Arc<Mailbox>) {
        let mut members: Vec<Member> = self
            .state()
            .channels
            .get(&channel)
            .map(|entry| {
                let members = entry.members.iter();
                members
                    .map(|(session, user)| Member {
                        session: *session,
                        user: user.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort_unstable();
        asker.deliver(Outbound::Presence { channel, members });
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::publication::Payload;

    fn retention() -> Retention {
        Retention {
            persist_for: Duration::ZERO,
            history_size: 5,
            history_ttl: Duration::from_secs(60),
            dedup_window: Duration::from_secs(60),
        }
    }

    fn mailbox(id: ConnectionId) -> Arc<Mailbox> {
        Arc::new(Mailbox::new(id, 64))
    }

    fn drain(mailbox: &Mailbox) -> Vec<String> {
        std::iter::from_fn(|| mailbox.take())
            .map(|item| match item {
                Outbound::Message(message) => {
                    format!("message {} {}", message.seq, message.text_frame())
                }
                Outbound::Subscribed {
                    channel,
                    seq,
                    recovered,
                    ..
                } => match recovered {
                    None => format!("subscribed {channel} {seq}"),
                    Some(recovered) => format!("subscribed {channel} {seq} recovered={recovered}"),
                },
                Outbound::Ack { id, seq, duplicate } => format!("ack {id} {seq} {duplicate}"),
                Outbound::Presence { members, .. } => {
                    let members: Vec<String> = members.iter().map(member).collect();
                    format!("presence {members:?}")
                }
                Outbound::PresenceChange {
                    member: who,
                    joined,
                    ..
                } => {
                    format!("{} {}", if joined { "join" } else { "leave" }, member(&who))
                }
                Outbound::Error { reason, .. } => format!("error {reason}"),
                Outbound::Refreshed(_) => "refreshed".into(),
            })
            .collect()
    }

    fn subscribe(
        broker: &MemoryBroker<impl Clock>,
        channel: &str,
        who: &Arc<Mailbox>,
        since: Option<Position>,
    ) {
        broker.subscribe(SubscribeRequest {
            channel: Arc::from(channel),
            subscriber: who.clone(),
            with_retained: true,
            since,
            presence: false,
            user: None,
        });
    }

    fn publish(
        broker: &MemoryBroker<impl Clock>,
        channel: &str,
        text: &str,
        origin: Option<(&Arc<Mailbox>, &str)>,
    ) {
        broker.publish(PublishRequest {
            channel: Arc::from(channel),
            payload: Payload::Text(text.into()),
            retain: true,
            origin: origin.map(|(mailbox, _)| mailbox.clone()),
            ack_id: origin.map(|(_, id)| id.to_owned()),
        });
    }

    fn epoch_of(broker: &MemoryBroker, channel: &str) -> String {
        broker.state().channels[channel].epoch.to_string()
    }

    #[test]
    fn subscribers_get_messages_in_sequence() {
        let broker = MemoryBroker::new(retention());
        let (a, b) = (mailbox(1), mailbox(2));
        subscribe(&broker, "room", &a, None);
        publish(&broker, "room", "one", None);
        subscribe(&broker, "room", &b, None);
        publish(&broker, "room", "two", Some((&b, "x")));
        assert_eq!(
            drain(&a),
            ["subscribed room 0", "message 1 one", "message 2 two"]
        );
        assert_eq!(
            drain(&b),
            ["subscribed room 1", "message 2 two", "ack x 2 false"]
        );
    }

    #[test]
    fn unsubscribed_connections_get_nothing_more() {
        let broker = MemoryBroker::new(retention());
        let a = mailbox(1);
        subscribe(&broker, "room", &a, None);
        broker.unsubscribe("room", 1);
        publish(&broker, "room", "late", None);
        assert_eq!(drain(&a), ["subscribed room 0"]);
    }

    #[test]
    fn a_resuming_subscriber_gets_exactly_what_it_missed() {
        let broker = MemoryBroker::new(retention());
        for text in ["1", "2", "3", "4"] {
            publish(&broker, "room", text, None);
        }
        let epoch = epoch_of(&broker, "room");
        let back = mailbox(1);
        subscribe(
            &broker,
            "room",
            &back,
            Some(Position {
                epoch: epoch.clone(),
                seq: 2,
            }),
        );
        publish(&broker, "room", "5", None);
        assert_eq!(
            drain(&back),
            [
                "subscribed room 4 recovered=true",
                "message 3 3",
                "message 4 4",
                "message 5 5"
            ]
        );
        // Up to date: recovered, nothing to replay.
        let current = mailbox(2);
        subscribe(&broker, "room", &current, Some(Position { epoch, seq: 5 }));
        assert_eq!(drain(&current), ["subscribed room 5 recovered=true"]);
    }

    #[test]
    fn a_gap_longer_than_the_history_is_not_recovered() {
        let broker = MemoryBroker::new(retention());
        for n in 1..=8 {
            publish(&broker, "room", &n.to_string(), None);
        }
        let epoch = epoch_of(&broker, "room");
        // History holds 4..=8; resuming after 2 would need 3.
        let late = mailbox(1);
        subscribe(
            &broker,
            "room",
            &late,
            Some(Position {
                epoch: epoch.clone(),
                seq: 2,
            }),
        );
        assert_eq!(drain(&late), ["subscribed room 8 recovered=false"]);
        // After 3, everything needed is there.
        let just_in_time = mailbox(2);
        subscribe(
            &broker,
            "room",
            &just_in_time,
            Some(Position { epoch, seq: 3 }),
        );
        assert_eq!(drain(&just_in_time).len(), 6);
    }

    #[test]
    fn another_epoch_is_not_recovered() {
        let broker = MemoryBroker::new(retention());
        publish(&broker, "room", "1", None);
        let stranger = mailbox(1);
        let since = Position {
            epoch: "not-this-one".into(),
            seq: 0,
        };
        subscribe(&broker, "room", &stranger, Some(since));
        // Not recovered, but nothing of this epoch is skipped: it follows from seq 0.
        assert_eq!(
            drain(&stranger),
            ["subscribed room 0 recovered=false", "message 1 1"]
        );
    }

    #[test]
    fn another_epoch_past_the_history_is_not_replayed() {
        let broker = MemoryBroker::new(retention());
        for n in 1..=8 {
            publish(&broker, "room", &n.to_string(), None);
        }
        // History holds 4..=8: the epoch's first messages are gone.
        let stranger = mailbox(1);
        let since = Position {
            epoch: "not-this-one".into(),
            seq: 3,
        };
        subscribe(&broker, "room", &stranger, Some(since));
        assert_eq!(drain(&stranger), ["subscribed room 8 recovered=false"]);
    }

    #[test]
    fn a_subscriber_without_the_history_permission_gets_no_replay() {
        let broker = MemoryBroker::new(retention());
        publish(&broker, "room", "1", None);
        let barred = mailbox(1);
        let since = SubscribeRequest::unreplayable();
        subscribe(&broker, "room", &barred, Some(since));
        assert_eq!(drain(&barred), ["subscribed room 1 recovered=false"]);
    }

    #[test]
    fn a_publish_sent_again_is_acknowledged_not_repeated() {
        let broker = MemoryBroker::new(retention());
        let (reader, writer) = (mailbox(1), mailbox(2));
        subscribe(&broker, "room", &reader, None);
        publish(&broker, "room", "once", Some((&writer, "w-1")));
        publish(&broker, "room", "once", Some((&writer, "w-1")));
        publish(
            &broker,
            "other",
            "same id, other channel",
            Some((&writer, "w-1")),
        );
        assert_eq!(drain(&reader), ["subscribed room 0", "message 1 once"]);
        assert_eq!(
            drain(&writer),
            ["ack w-1 1 false", "ack w-1 1 true", "ack w-1 1 false"]
        );
    }

    #[test]
    fn publish_ids_are_forgotten_after_the_window() {
        let broker = MemoryBroker::new(Retention {
            dedup_window: Duration::ZERO,
            ..retention()
        });
        let writer = mailbox(2);
        publish(&broker, "room", "a", Some((&writer, "w-1")));
        for _ in 0..SWEEP_EVERY {
            broker.unsubscribe("room", 99);
        }
        publish(&broker, "room", "a", Some((&writer, "w-1")));
        assert_eq!(drain(&writer), ["ack w-1 1 false", "ack w-1 2 false"]);
    }

    /// A clock moved by hand.
    #[derive(Debug, Clone)]
    struct HandClock(Arc<Mutex<Instant>>);

    impl Clock for HandClock {
        fn now(&self) -> Instant {
            *self.0.lock()
        }
    }

    #[test]
    fn time_is_read_from_the_brokers_clock() {
        let clock = HandClock(Arc::new(Mutex::new(Instant::now())));
        // The channel outlives the window: only the id expires.
        let retention = Retention {
            history_ttl: Duration::from_secs(3600),
            ..retention()
        };
        let broker = MemoryBroker::with_clock(retention, clock.clone());
        let writer = mailbox(2);
        let sweep = || {
            for _ in 0..SWEEP_EVERY {
                broker.unsubscribe("elsewhere", 99);
            }
        };
        publish(&broker, "room", "a", Some((&writer, "w-1")));
        *clock.0.lock() += retention.dedup_window - Duration::from_millis(1);
        sweep();
        publish(&broker, "room", "a", Some((&writer, "w-1")));
        *clock.0.lock() += Duration::from_millis(1);
        sweep();
        publish(&broker, "room", "a", Some((&writer, "w-1")));
        assert_eq!(
            drain(&writer),
            ["ack w-1 1 false", "ack w-1 1 true", "ack w-1 2 false"]
        );
    }

    #[test]
    fn late_joiner_gets_the_retained_message_while_it_is_fresh() {
        let broker = MemoryBroker::new(Retention {
            persist_for: Duration::from_secs(60),
            ..retention()
        });
        publish(&broker, "broadcast:news", "first", None);
        publish(&broker, "broadcast:news", "second", None);
        let late = mailbox(7);
        subscribe(&broker, "broadcast:news", &late, None);
        assert_eq!(
            drain(&late),
            ["subscribed broadcast:news 2", "message 2 second"]
        );
    }

    #[test]
    fn unused_channels_are_forgotten_and_come_back_in_a_new_epoch() {
        let broker = MemoryBroker::new(Retention {
            history_ttl: Duration::ZERO,
            ..retention()
        });
        publish(&broker, "room", "1", None);
        let epoch = epoch_of(&broker, "room");
        for _ in 0..SWEEP_EVERY {
            broker.unsubscribe("elsewhere", 1);
        }
        assert!(broker.state().channels.is_empty());
        let back = mailbox(1);
        subscribe(
            &broker,
            "room",
            &back,
            Some(Position {
                epoch: epoch.clone(),
                seq: 1,
            }),
        );
        assert_eq!(drain(&back), ["subscribed room 0 recovered=false"]);
        assert_ne!(epoch_of(&broker, "room"), epoch);
    }

    /// A member as the tests write it: its session, and `@user` when it has one.
    fn member(member: &Member) -> String {
        match &member.user {
            Some(user) => format!("{}@{user}", member.session),
            None => member.session.to_string(),
        }
    }

    fn join(broker: &MemoryBroker, who: &Arc<Mailbox>, user: Option<&str>) {
        broker.subscribe(SubscribeRequest {
            channel: Arc::from("room"),
            subscriber: who.clone(),
            with_retained: false,
            since: None,
            presence: true,
            user: user.map(Arc::from),
        });
    }

    #[test]
    fn members_are_announced_and_listed() {
        let broker = MemoryBroker::new(retention());
        let (a, b) = (mailbox(1), mailbox(2));
        for who in [&a, &b] {
            join(&broker, who, None);
        }
        broker.presence(Arc::from("room"), b.clone());
        broker.unsubscribe("room", 2);
        broker.presence(Arc::from("room"), a.clone());
        assert_eq!(
            drain(&a),
            ["subscribed room 0", "join 2", "leave 2", "presence [\"1\"]"]
        );
        assert_eq!(drain(&b), ["subscribed room 0", "presence [\"1\", \"2\"]"]);
    }

    #[test]
    fn a_user_joins_with_its_first_connection_and_leaves_with_its_last() {
        let broker = MemoryBroker::new(retention());
        let watcher = mailbox(1);
        join(&broker, &watcher, None);
        let (ada_1, ada_2, bob) = (mailbox(2), mailbox(3), mailbox(4));
        join(&broker, &ada_1, Some("ada"));
        join(&broker, &ada_2, Some("ada"));
        join(&broker, &bob, Some("bob"));
        broker.presence(Arc::from("room"), watcher.clone());
        broker.unsubscribe("room", 2);
        broker.unsubscribe("room", 3);
        broker.unsubscribe("room", 3);
        assert_eq!(
            drain(&watcher),
            [
                "subscribed room 0",
                "join 2@ada",
                "join 4@bob",
                "presence [\"1\", \"2@ada\", \"3@ada\", \"4@bob\"]",
                "leave 3@ada",
            ]
        );
        // Ada's second connection saw bob come, not herself.
        assert_eq!(drain(&ada_2), ["subscribed room 0", "join 4@bob"]);
    }

    #[test]
    fn a_slow_subscriber_does_not_hold_up_the_others() {
        let broker = MemoryBroker::new(retention());
        let slow = Arc::new(Mailbox::new(1, 2));
        let fast = mailbox(2);
        subscribe(&broker, "room", &slow, None);
        subscribe(&broker, "room", &fast, None);
        for i in 0..10 {
            publish(&broker, "room", &i.to_string(), None);
        }
        assert_eq!(drain(&fast).len(), 11);
        assert!(drain(&slow).is_empty());
    }
}
