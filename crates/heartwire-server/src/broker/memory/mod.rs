//! The in-process broker: channels of one node, held in memory.
//!
//! Each channel has an epoch (random, new whenever the channel is created), a sequence
//! counter, and a bounded history of its latest messages, so a client that comes back
//! with its last position gets exactly what it missed, or is told it cannot. A channel
//! without subscribers keeps its history for `history_ttl`, then is forgotten, and a
//! later one starts a new epoch.
//!
//! What clients can make it hold is bounded ([`Holdings`]): history in messages and
//! bytes per channel and in bytes for all channels ([`ledger`]), channels in all and
//! per creating connection, and publish ids ([`recent_ids`]). Unused channels are
//! found through a queue of the channels that may expire, a few per operation, so no
//! operation scans every channel.
//!
//! The broker reads the time from its [`Clock`], so tests can move it by hand.

mod ledger;
mod recent_ids;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use heartwire_core::ErrorCode;
use heartwire_core::protocol::Position;
use parking_lot::{Mutex, MutexGuard};

use super::contract::{Broker, BrokerHealth, MESSAGE_OVERHEAD, PublishRequest, SubscribeRequest};
use crate::config::{Holdings, Retention};
use crate::handover::state::{
    ChannelState, MemberState, MessageState, PayloadState, PublishIdState, RetainedState,
};
use crate::id::{ConnectionId, random_id};
use crate::mailbox::{Mailbox, Member, Outbound};
use crate::publication::{Payload, Publication};
use ledger::{Entry, Ledger};
use recent_ids::RecentIds;
use serde_json::value::RawValue;

/// Channels checked for expiry per operation at most.
const SWEEP_BUDGET: usize = 16;

#[derive(Debug)]
struct Channel {
    epoch: Arc<str>,
    /// Which channel of this name it is: a new one after an expiry.
    generation: u64,
    /// Sequence number of the latest message.
    seq: u64,
    /// The latest messages, oldest first, with consecutive sequence numbers.
    history: VecDeque<Arc<Publication>>,
    /// The bytes of `history`, as [`cost`] counts them.
    history_bytes: usize,
    /// When the channel was last published on or left by a subscriber.
    touched: Instant,
    subscribers: HashMap<ConnectionId, Arc<Mailbox>>,
    /// Subscribers that asked to be seen (presence), with their users.
    members: HashMap<ConnectionId, Option<Arc<str>>>,
    /// How many of the members each user is.
    users: HashMap<Arc<str>, usize>,
    /// The last retained message and when it expires.
    retained: Option<(Arc<Publication>, Instant)>,
    /// The connection whose request created the channel.
    creator: Option<ConnectionId>,
    /// Whether the channel is in the expiry queue.
    queued: bool,
}

/// The bytes a message in history is counted for.
fn cost(message: &Publication) -> usize {
    let payload = match &message.payload {
        Payload::Json(data) => data.get().len(),
        Payload::Text(text) => text.len(),
    };
    payload + MESSAGE_OVERHEAD
}

impl Channel {
    fn new(now: Instant, generation: u64, creator: Option<ConnectionId>) -> Self {
        Self {
            epoch: Arc::from(random_id()),
            generation,
            seq: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            touched: now,
            subscribers: HashMap::new(),
            members: HashMap::new(),
            users: HashMap::new(),
            retained: None,
            creator,
            queued: true,
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
            // Without history (or with none left), nothing of the epoch can follow.
            let whole_epoch = self.history.front().is_some_and(|first| first.seq == 1);
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

    /// Drops the oldest message of the history; returns its cost.
    fn drop_oldest(&mut self) -> Option<usize> {
        let message = self.history.pop_front()?;
        let cost = cost(&message);
        self.history_bytes -= cost;
        Some(cost)
    }

    /// Adds a member; announces it when it is anonymous or its user's first.
    /// Counts a member handed over by the process this one replaces, without
    /// announcing it: its subscription, when it comes again, finds it a member.
    fn restore_member(&mut self, session: ConnectionId, user: Option<Arc<str>>) {
        if let Some(user) = &user {
            *self.users.entry(user.clone()).or_default() += 1;
        }
        self.members.insert(session, user);
    }

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

    /// When the channel may next be unused: `history_ttl` after it was touched, or
    /// when its retained message expires, whichever is later.
    fn unused_from(&self, retention: &Retention) -> Instant {
        let idle = self.touched + retention.history_ttl;
        match &self.retained {
            Some((_, expires)) => idle.max(*expires),
            None => idle,
        }
    }

    fn is_unused(&self, now: Instant, retention: &Retention) -> bool {
        self.subscribers.is_empty()
            && self.retained(now).is_none()
            && now.saturating_duration_since(self.touched) >= retention.history_ttl
    }
}

/// Why a request that would create a channel is refused.
#[derive(Debug)]
struct TooManyChannels(String);

#[derive(Debug, Default)]
struct State {
    channels: HashMap<Arc<str>, Channel>,
    /// The subscribers of every channel together, kept as they change so that a
    /// health check does not walk the channels under the lock.
    subscriptions: usize,
    recent_ids: RecentIds,
    /// Channels that may be unused from the instant given, roughly in that order.
    expiry: VecDeque<(Instant, Arc<str>)>,
    /// Channels held, by the connection that created them.
    created_by: HashMap<ConnectionId, usize>,
    ledger: Ledger,
    generations: u64,
    /// The channels were handed to a new process (a live upgrade): a publish here
    /// would reach nobody, so it is refused until the channels stay after all.
    moved: bool,
}

impl State {
    /// Forgets a few unused channels and expired ids.
    fn sweep(&mut self, now: Instant, retention: &Retention) {
        self.recent_ids.expire(now, retention.dedup_window);
        for _ in 0..SWEEP_BUDGET {
            match self.expiry.front() {
                Some((due, _)) if *due <= now => {}
                _ => break,
            }
            let (_, name) = self.expiry.pop_front().expect("front exists");
            let Some(channel) = self.channels.get_mut(&name) else {
                continue;
            };
            if channel.is_unused(now, retention) {
                self.remove(&name);
            } else if channel.subscribers.is_empty() {
                let due = channel.unused_from(retention).max(now);
                self.expiry.push_back((due, name));
            } else {
                // Queued again when its last subscriber leaves.
                channel.queued = false;
            }
        }
    }

    /// Forgets a channel, its history and what it counted for.
    fn remove(&mut self, name: &str) {
        let Some(channel) = self.channels.remove(name) else {
            return;
        };
        self.ledger
            .forget(channel.history.len(), channel.history_bytes);
        if let Some(creator) = channel.creator {
            if let Some(count) = self.created_by.get_mut(&creator) {
                *count -= 1;
                if *count == 0 {
                    self.created_by.remove(&creator);
                }
            }
        }
    }

    /// The channel `name`, created for `creator` when the bounds allow.
    fn channel(
        &mut self,
        name: &Arc<str>,
        now: Instant,
        creator: Option<ConnectionId>,
        holdings: &Holdings,
        retention: &Retention,
    ) -> Result<&mut Channel, TooManyChannels> {
        if !self.channels.contains_key(name) {
            if self.channels.len() >= holdings.max_channels {
                return Err(TooManyChannels(format!(
                    "cannot create channel {name}: the server holds {} channels, its most (max-channels)",
                    holdings.max_channels
                )));
            }
            if let Some(creator) = creator {
                let created = self.created_by.entry(creator).or_default();
                if *created >= holdings.max_created_channels {
                    return Err(TooManyChannels(format!(
                        "cannot create channel {name}: this connection created {} channels that the server still holds (max-created-channels)",
                        holdings.max_created_channels
                    )));
                }
                *created += 1;
            }
            self.generations += 1;
            let channel = Channel::new(now, self.generations, creator);
            self.expiry
                .push_back((channel.unused_from(retention), name.clone()));
            self.channels.insert(name.clone(), channel);
        }
        Ok(self.channels.get_mut(name).expect("inserted above"))
    }

    /// Queues `name` for expiry when its last subscriber left.
    fn queue_for_expiry(&mut self, name: &Arc<str>, retention: &Retention) {
        if let Some(channel) = self.channels.get_mut(name) {
            if channel.subscribers.is_empty() && !channel.queued {
                channel.queued = true;
                let due = channel.unused_from(retention);
                self.expiry.push_back((due, name.clone()));
            }
        }
    }

    /// Adds `message` to the history of `name`, dropping the oldest messages past
    /// the channel's bounds, then past the total.
    fn keep(
        &mut self,
        name: &Arc<str>,
        message: &Arc<Publication>,
        retention: &Retention,
        holdings: &Holdings,
    ) {
        let cost = cost(message);
        let channel = self.channels.get_mut(name).expect("published on it");
        channel.history.push_back(message.clone());
        channel.history_bytes += cost;
        let entry = Entry {
            channel: name.clone(),
            generation: channel.generation,
            seq: message.seq,
        };
        let (mut dropped, mut dropped_bytes) = (0, 0);
        while channel.history.len() > retention.history_size
            || (channel.history_bytes > holdings.history_max_bytes && channel.history.len() > 1)
        {
            dropped_bytes += channel.drop_oldest().expect("history is not empty");
            dropped += 1;
        }
        self.ledger.add(entry, cost);
        self.ledger.forget(dropped, dropped_bytes);
        while self.ledger.bytes > holdings.history_total_bytes {
            let Some(oldest) = self.ledger.pop_oldest() else {
                break;
            };
            let Some(channel) = self.channels.get_mut(&oldest.channel) else {
                continue;
            };
            let held = channel.generation == oldest.generation
                && channel.history.front().is_some_and(|m| m.seq == oldest.seq);
            if held {
                let cost = channel.drop_oldest().expect("front exists");
                self.ledger.forget(1, cost);
            }
        }
        if self.ledger.needs_compaction() {
            let channels = &self.channels;
            self.ledger.retain(|entry| {
                channels.get(&entry.channel).is_some_and(|channel| {
                    channel.generation == entry.generation
                        && channel.history.front().is_some_and(|m| m.seq <= entry.seq)
                })
            });
        }
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
    holdings: Holdings,
    clock: C,
    node_id: String,
}

impl MemoryBroker {
    /// A broker that keeps what `retention` says, on the system's clock, within the
    /// default [`Holdings`].
    pub fn new(retention: Retention) -> Self {
        Self::with_clock(retention, SystemClock)
    }
}

impl<C: Clock> MemoryBroker<C> {
    /// A broker that keeps what `retention` says, on `clock`, within the default
    /// [`Holdings`].
    pub fn with_clock(retention: Retention, clock: C) -> Self {
        Self {
            state: Mutex::default(),
            retention,
            holdings: Holdings::default(),
            clock,
            node_id: random_id(),
        }
    }

    /// The same broker, holding no more than `holdings` allow.
    pub fn with_holdings(mut self, holdings: Holdings) -> Self {
        self.holdings = holdings;
        self
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
        let creator = Some(subscriber.id());
        let entry = match state.channel(&channel, now, creator, &self.holdings, &self.retention) {
            Ok(entry) => entry,
            Err(TooManyChannels(reason)) => {
                subscriber.deliver(Outbound::Error {
                    code: ErrorCode::TooManyChannels,
                    reason,
                    id: None,
                });
                return;
            }
        };
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
            let added = entry.subscribers.insert(id, subscriber).is_none();
            if presence {
                entry.add_member(&channel, id, user);
            }
            if added {
                state.subscriptions += 1;
            }
        }
    }

    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId) {
        let now = self.clock.now();
        let mut state = self.state();
        let channel: Arc<str> = Arc::from(channel);
        if let Some(entry) = state.channels.get_mut(&channel) {
            let removed = entry.subscribers.remove(&subscriber).is_some();
            entry.touched = now;
            if entry.members.contains_key(&subscriber) {
                entry.remove_member(&channel, subscriber);
            }
            if removed {
                state.subscriptions -= 1;
            }
        }
        state.queue_for_expiry(&channel, &self.retention);
        state.sweep(now, &self.retention);
    }

    fn publish(&self, request: PublishRequest) {
        let PublishRequest {
            channel,
            payload,
            retain,
            origin,
            ack_id,
            publisher,
        } = request;
        let now = self.clock.now();
        let mut state = self.state();
        if state.moved {
            if let Some(origin) = &origin {
                origin.deliver(Outbound::Error {
                    code: ErrorCode::Unavailable,
                    reason: "the channels have moved to the server's new process (a live \
                             upgrade); publish again"
                        .to_owned(),
                    id: ack_id,
                });
            }
            return;
        }
        state.sweep(now, &self.retention);
        if let (Some(origin), Some(id)) = (&origin, &ack_id) {
            if let Some(seq) = state.recent_ids.get(&publisher, &channel, id) {
                // An id is remembered no longer than its channel's history.
                let epoch = state
                    .channels
                    .get(&channel)
                    .map_or_else(|| Arc::from(""), |entry| entry.epoch.clone());
                origin.deliver(Outbound::Ack {
                    id: id.clone(),
                    seq,
                    epoch,
                    duplicate: true,
                });
                return;
            }
        }
        let retention = self.retention;
        let creator = origin.as_ref().map(|mailbox| mailbox.id());
        let entry = match state.channel(&channel, now, creator, &self.holdings, &retention) {
            Ok(entry) => entry,
            Err(TooManyChannels(reason)) => {
                if let Some(origin) = &origin {
                    origin.deliver(Outbound::Error {
                        code: ErrorCode::TooManyChannels,
                        reason,
                        id: ack_id,
                    });
                }
                return;
            }
        };
        entry.seq += 1;
        entry.touched = now;
        let entry_epoch = entry.epoch.clone();
        let message = Arc::new(Publication::new(
            channel.clone(),
            entry.seq,
            payload,
            origin.as_ref().map(|mailbox| mailbox.id()),
        ));
        if retain && !retention.persist_for.is_zero() {
            entry.retained = Some((message.clone(), now + retention.persist_for));
        }
        // A full mailbox marks its connection a slow consumer, which then closes
        // itself and unsubscribes; the others are not held up by it.
        for subscriber in entry.subscribers.values() {
            subscriber.deliver(Outbound::Message(message.clone()));
        }
        if retention.history_size > 0 {
            state.keep(&channel, &message, &retention, &self.holdings);
        }
        if let (Some(origin), Some(id)) = (&origin, ack_id) {
            let max_ids = self.holdings.max_publish_ids;
            let key = (&publisher, &channel, id.as_str());
            state.recent_ids.insert(key, message.seq, now, max_ids);
            origin.deliver(Outbound::Ack {
                id,
                seq: message.seq,
                epoch: entry_epoch,
                duplicate: false,
            });
        }
    }

    fn channels(&self) -> Vec<(Arc<str>, usize)> {
        self.state()
            .channels
            .iter()
            .filter(|(_, entry)| !entry.subscribers.is_empty())
            .map(|(name, entry)| (name.clone(), entry.subscribers.len()))
            .collect()
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

    fn health(&self) -> BrokerHealth {
        let state = self.state();
        BrokerHealth {
            up: true,
            channels: state.channels.len(),
            subscriptions: state.subscriptions,
            ..BrokerHealth::default()
        }
    }

    fn hand_over_channels(&self, handed_over: &HashSet<ConnectionId>) -> Vec<ChannelState> {
        let now = self.clock.now();
        let mut state = self.state();
        state.moved = true;
        let message = |message: &Arc<Publication>| MessageState {
            seq: message.seq,
            payload: match &message.payload {
                Payload::Json(data) => PayloadState::Json(data.get().to_owned()),
                Payload::Text(text) => PayloadState::Text(text.to_string()),
            },
            origin: message.origin,
        };
        let mut ids: HashMap<&Arc<str>, Vec<PublishIdState>> = HashMap::new();
        for (publisher, channel, id, seq, age) in state.recent_ids.export(now) {
            ids.entry(channel).or_default().push(PublishIdState {
                publisher: publisher.to_string(),
                id: id.to_owned(),
                seq,
                age,
            });
        }
        state
            .channels
            .iter()
            .map(|(name, channel)| ChannelState {
                name: name.to_string(),
                epoch: channel.epoch.to_string(),
                seq: channel.seq,
                history: channel.history.iter().map(message).collect(),
                publish_ids: ids.remove(name).unwrap_or_default(),
                members: channel
                    .members
                    .iter()
                    .filter(|(session, _)| handed_over.contains(session))
                    .map(|(session, user)| MemberState {
                        session: *session,
                        user: user.as_deref().map(str::to_owned),
                    })
                    .collect(),
                retained: channel
                    .retained
                    .as_ref()
                    .filter(|(_, expires)| *expires > now)
                    .map(|(retained, expires)| RetainedState {
                        message: message(retained),
                        expires_in: *expires - now,
                    }),
            })
            .collect()
    }

    fn keep_channels(&self) {
        self.state().moved = false;
    }

    fn adopt_channels(&self, channels: Vec<ChannelState>) {
        let now = self.clock.now();
        let mut state = self.state();
        let mut ids = Vec::new();
        for adopted in channels {
            let name: Arc<str> = Arc::from(adopted.name);
            ids.extend(adopted.publish_ids.into_iter().map(|id| (name.clone(), id)));
            let Ok(channel) = state.channel(&name, now, None, &self.holdings, &self.retention)
            else {
                tracing::warn!(channel = %name, "live upgrade: channel over max-channels, not taken over");
                continue;
            };
            channel.epoch = Arc::from(adopted.epoch);
            channel.seq = adopted.seq;
            for member in adopted.members {
                // Not announced: they were members before, and stay so.
                channel.restore_member(member.session, member.user.map(Arc::from));
            }
            channel.retained = adopted.retained.and_then(|retained| {
                let message = publication(&name, retained.message)?;
                Some((message, now + retained.expires_in))
            });
            for message in adopted.history {
                if let Some(message) = publication(&name, message) {
                    state.keep(&name, &message, &self.retention, &self.holdings);
                }
            }
        }
        // Oldest first, as they expire.
        ids.sort_by_key(|(_, id)| std::cmp::Reverse(id.age));
        for (channel, id) in ids {
            let publisher: Arc<str> = Arc::from(id.publisher);
            let seen = now.checked_sub(id.age).unwrap_or(now);
            let key = (&publisher, &channel, id.id.as_str());
            let max = self.holdings.max_publish_ids;
            state.recent_ids.insert(key, id.seq, seen, max);
        }
    }
}

/// A message of channel `name` as another process handed it over; `None` when its
/// JSON does not parse (it did in the process that sent it).
fn publication(name: &Arc<str>, message: MessageState) -> Option<Arc<Publication>> {
    let payload = match message.payload {
        PayloadState::Json(text) => Payload::Json(RawValue::from_string(text).ok()?),
        PayloadState::Text(text) => Payload::Text(text.into()),
    };
    Some(Arc::new(Publication::new(
        name.clone(),
        message.seq,
        payload,
        message.origin,
    )))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
                Outbound::Ack {
                    id, seq, duplicate, ..
                } => format!("ack {id} {seq} {duplicate}"),
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
                Outbound::Unsubscribe { channel } => format!("unsubscribe {channel}"),
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
            publisher: Arc::from(origin.map_or(0, |(mailbox, _)| mailbox.id()).to_string()),
        });
    }

    fn epoch_of(broker: &MemoryBroker, channel: &str) -> String {
        broker.state().channels[channel].epoch.to_string()
    }

    #[test]
    fn channels_handed_over_keep_their_epoch_history_and_publish_ids() {
        let old = MemoryBroker::new(retention());
        let publisher = mailbox(1);
        for (text, id) in [("one", "p1"), ("two", "p2"), ("three", "p3")] {
            publish(&old, "news", text, Some((&publisher, id)));
        }
        drain(&publisher);
        let new = MemoryBroker::new(retention());
        new.adopt_channels(old.hand_over_channels(&HashSet::new()));
        assert_eq!(epoch_of(&new, "news"), epoch_of(&old, "news"));
        let reader = mailbox(2);
        let since = Position {
            epoch: epoch_of(&old, "news"),
            seq: 1,
        };
        subscribe(&new, "news", &reader, Some(since));
        assert_eq!(
            drain(&reader),
            [
                "subscribed news 3 recovered=true",
                "message 2 two",
                "message 3 three"
            ]
        );
        // A publish sent again after the upgrade is not published twice.
        publish(&new, "news", "two", Some((&publisher, "p2")));
        assert_eq!(drain(&publisher), ["ack p2 2 true"]);
        publish(&new, "news", "four", Some((&publisher, "p4")));
        assert_eq!(drain(&reader), ["message 4 four"]);
    }

    #[test]
    fn a_publish_after_the_channels_moved_is_refused_until_they_stay() {
        let old = MemoryBroker::new(retention());
        let (publisher, reader) = (mailbox(1), mailbox(2));
        subscribe(&old, "news", &reader, None);
        drain(&reader);
        let moved = old.hand_over_channels(&HashSet::new());
        assert_eq!(moved.len(), 1);
        // Taken here it would reach nobody: the publisher hears so and publishes again.
        publish(&old, "news", "late", Some((&publisher, "p1")));
        assert_eq!(
            drain(&publisher),
            [
                "error the channels have moved to the server's new process (a live upgrade); publish again"
            ]
        );
        assert!(drain(&reader).is_empty());
        // The new process failed: this one goes on, and so do its channels.
        old.keep_channels();
        publish(&old, "news", "late", Some((&publisher, "p1")));
        assert_eq!(drain(&publisher), ["ack p1 1 false"]);
        assert_eq!(drain(&reader), ["message 1 late"]);
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
    fn the_subscription_count_follows_every_subscribe_and_unsubscribe() {
        let broker = MemoryBroker::new(retention());
        let mailboxes: Vec<_> = (1..=4).map(mailbox).collect();
        let channels = ["a", "b", "c"];
        let mut held = HashSet::new();
        // A fixed walk of subscribes (some repeated) and unsubscribes (some of
        // nothing held), from a small linear congruential generator.
        let mut seed: u32 = 7;
        for _ in 0..500 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let who = &mailboxes[(seed >> 8) as usize % mailboxes.len()];
            let channel = channels[(seed >> 12) as usize % channels.len()];
            if (seed >> 16) % 3 == 0 {
                broker.unsubscribe(channel, who.id());
                held.remove(&(channel, who.id()));
            } else {
                subscribe(&broker, channel, who, None);
                held.insert((channel, who.id()));
            }
            drain(who);
            assert_eq!(broker.health().subscriptions, held.len());
        }
        broker.unsubscribe("never", 1);
        assert_eq!(broker.health().subscriptions, held.len());
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
    fn another_epoch_without_history_is_told_the_latest_seq() {
        let broker = MemoryBroker::new(Retention {
            history_size: 0,
            ..retention()
        });
        for n in 1..=3 {
            publish(&broker, "room", &n.to_string(), None);
        }
        let stranger = mailbox(1);
        let since = Position {
            epoch: "not-this-one".into(),
            seq: 1,
        };
        subscribe(&broker, "room", &stranger, Some(since));
        assert_eq!(drain(&stranger), ["subscribed room 3 recovered=false"]);
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
        for _ in 0..4 {
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
            for _ in 0..4 {
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
    fn a_retained_message_moves_with_its_channel_for_what_is_left_of_its_time() {
        let retention = Retention {
            persist_for: Duration::from_secs(60),
            history_ttl: Duration::from_secs(3600),
            ..retention()
        };
        let clock = HandClock(Arc::new(Mutex::new(Instant::now())));
        let old = MemoryBroker::with_clock(retention, clock.clone());
        publish(&old, "broadcast:news", "first", None);
        publish(&old, "broadcast:news", "second", None);
        *clock.0.lock() += Duration::from_secs(50);
        let new = MemoryBroker::with_clock(retention, clock.clone());
        new.adopt_channels(old.hand_over_channels(&HashSet::new()));
        let late = mailbox(7);
        subscribe(&new, "broadcast:news", &late, None);
        assert_eq!(
            drain(&late),
            ["subscribed broadcast:news 2", "message 2 second"]
        );
        // Kept 60 s from its publish, not 60 s from the upgrade.
        *clock.0.lock() += Duration::from_secs(10);
        let later = mailbox(8);
        subscribe(&new, "broadcast:news", &later, None);
        assert_eq!(drain(&later), ["subscribed broadcast:news 2"]);
    }

    #[test]
    fn unused_channels_are_forgotten_and_come_back_in_a_new_epoch() {
        let broker = MemoryBroker::new(Retention {
            history_ttl: Duration::ZERO,
            ..retention()
        });
        publish(&broker, "room", "1", None);
        let epoch = epoch_of(&broker, "room");
        for _ in 0..4 {
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
    fn members_handed_over_are_not_announced_again_when_they_subscribe_again() {
        let old = MemoryBroker::new(retention());
        let (ada, bob, tls) = (mailbox(1), mailbox(2), mailbox(3));
        join(&old, &ada, Some("ada"));
        join(&old, &bob, None);
        join(&old, &tls, None);
        // The third connection stays in the old process (over TLS it cannot move).
        let channels = old.hand_over_channels(&HashSet::from([1, 2]));
        let new = MemoryBroker::new(retention());
        new.adopt_channels(channels);
        let (ada, bob) = (mailbox(1), mailbox(2));
        join(&new, &ada, Some("ada"));
        join(&new, &bob, None);
        new.presence(Arc::from("room"), bob.clone());
        assert_eq!(
            drain(&bob),
            ["subscribed room 0", "presence [\"1@ada\", \"2\"]"]
        );
        // Ada's last connection leaving is announced, once: she was counted once.
        new.unsubscribe("room", 1);
        assert_eq!(drain(&bob), ["leave 1@ada"]);
        assert_eq!(drain(&ada), ["subscribed room 0"]);
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

    fn holdings() -> Holdings {
        Holdings {
            history_max_bytes: 10 * (MESSAGE_OVERHEAD + 100),
            history_total_bytes: 25 * (MESSAGE_OVERHEAD + 100),
            ..Holdings::default()
        }
    }

    fn bounded(retention: Retention, holdings: Holdings) -> MemoryBroker {
        MemoryBroker::new(retention).with_holdings(holdings)
    }

    fn history_of(broker: &MemoryBroker, channel: &str) -> Vec<u64> {
        let state = broker.state();
        state.channels[channel]
            .history
            .iter()
            .map(|m| m.seq)
            .collect()
    }

    #[test]
    fn history_is_bounded_in_bytes_per_channel_and_in_total() {
        let broker = bounded(
            Retention {
                history_size: 1000,
                ..retention()
            },
            holdings(),
        );
        let hundred = "x".repeat(100);
        for _ in 0..30 {
            publish(&broker, "a", &hundred, None);
        }
        assert_eq!(history_of(&broker, "a"), (21..=30).collect::<Vec<_>>());
        for _ in 0..10 {
            publish(&broker, "b", &hundred, None);
        }
        for _ in 0..10 {
            publish(&broker, "c", &hundred, None);
        }
        // 30 messages fit the channels' bounds; the total keeps 25, dropping a's first.
        assert_eq!(history_of(&broker, "a"), (26..=30).collect::<Vec<_>>());
        assert_eq!(history_of(&broker, "b").len(), 10);
        assert_eq!(history_of(&broker, "c").len(), 10);
        let state = broker.state();
        assert_eq!(state.ledger.bytes, 25 * (MESSAGE_OVERHEAD + 100));
    }

    #[test]
    fn a_message_larger_than_the_channel_bound_is_still_delivered_and_kept_alone() {
        let broker = bounded(retention(), holdings());
        let reader = mailbox(1);
        subscribe(&broker, "a", &reader, None);
        publish(&broker, "a", "small", None);
        publish(&broker, "a", &"y".repeat(5000), None);
        assert_eq!(drain(&reader).len(), 3);
        assert_eq!(history_of(&broker, "a"), [2]);
    }

    #[test]
    fn expired_channels_give_their_bytes_back_and_the_ledger_stays_small() {
        let clock = HandClock(Arc::new(Mutex::new(Instant::now())));
        let broker = MemoryBroker::with_clock(retention(), clock.clone());
        for round in 0..3000 {
            publish(&broker, &format!("c{round}"), "z", None);
            *clock.0.lock() += Duration::from_secs(1);
        }
        let state = broker.state();
        // A channel lives 60 s here: about 60 remain, each with its one message.
        assert!(state.channels.len() <= 80, "{}", state.channels.len());
        assert_eq!(
            state.ledger.bytes,
            state.channels.len() * (MESSAGE_OVERHEAD + 1)
        );
        assert!(!state.ledger.needs_compaction());
    }

    #[test]
    fn channels_are_capped_in_all_and_per_creating_connection() {
        let broker = bounded(
            retention(),
            Holdings {
                max_channels: 5,
                max_created_channels: 3,
                ..Holdings::default()
            },
        );
        let (one, two) = (mailbox(1), mailbox(2));
        for channel in ["a", "b", "c", "d"] {
            publish(&broker, channel, "x", Some((&one, channel)));
        }
        assert_eq!(
            drain(&one)[3],
            "error cannot create channel d: this connection created 3 channels that the server still holds (max-created-channels)"
        );
        // Existing channels take any publisher.
        publish(&broker, "a", "x", Some((&two, "again")));
        for channel in ["e", "f", "g"] {
            subscribe(&broker, channel, &two, None);
        }
        let answers = drain(&two);
        assert!(
            answers.last().unwrap().contains("holds 5 channels"),
            "{answers:?}"
        );
        assert_eq!(broker.state().channels.len(), 5);
    }

    #[test]
    fn publish_ids_belong_to_their_publisher_and_are_bounded_in_number() {
        let broker = bounded(
            retention(),
            Holdings {
                max_publish_ids: 3,
                ..Holdings::default()
            },
        );
        let (mallory, alice) = (mailbox(1), mailbox(2));
        // Mallory claims the id alice will use: alice is published all the same.
        publish(&broker, "room", "claim", Some((&mallory, "a-1")));
        publish(&broker, "room", "real", Some((&alice, "a-1")));
        assert_eq!(drain(&alice), ["ack a-1 2 false"]);
        for id in ["m-1", "m-2", "m-3"] {
            publish(&broker, "room", "x", Some((&mallory, id)));
        }
        assert_eq!(broker.state().recent_ids.len(), 3);
        // The oldest ids were forgotten early: a-1 of alice is new again.
        publish(&broker, "room", "real", Some((&alice, "a-1")));
        assert_eq!(drain(&alice), ["ack a-1 6 false"]);
    }

    #[test]
    fn an_operation_expires_a_few_channels_never_all_of_them() {
        let clock = HandClock(Arc::new(Mutex::new(Instant::now())));
        let broker = MemoryBroker::with_clock(retention(), clock.clone());
        for n in 0..10_000 {
            publish(&broker, &format!("c{n}"), "x", None);
        }
        *clock.0.lock() += Duration::from_secs(3600);
        broker.unsubscribe("elsewhere", 1);
        assert_eq!(broker.state().channels.len(), 10_000 - SWEEP_BUDGET);
        for _ in 0..10_000 / SWEEP_BUDGET {
            broker.unsubscribe("elsewhere", 1);
        }
        assert!(broker.state().channels.is_empty());
    }
}
