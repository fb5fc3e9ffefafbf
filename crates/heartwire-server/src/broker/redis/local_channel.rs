//! One channel as this node sees it: its live subscribers, its joiners and what is
//! buffered for them, the position delivered so far, the link its messages come on,
//! and how each message reaches them under the ordering rules of
//! [`channels`](super::channels).

use std::collections::HashMap;
use std::sync::Arc;

use heartwire_core::protocol::Position;

use super::links::LinkKey;
use super::names::ChannelNames;
use super::replies::{Envelope, PresenceEvent, Snapshot};
use crate::id::ConnectionId;
use crate::mailbox::{Mailbox, Member, Outbound};
use crate::publication::{Payload, Publication};

/// A live message with the epoch it was published in (none for a raw one).
type Live = (Option<Arc<str>>, Arc<Publication>);

#[derive(Debug)]
struct Subscriber {
    mailbox: Arc<Mailbox>,
    /// Messages up to this `seq` reached it before it went live.
    after: u64,
}

/// One channel as this node sees it. See the [module docs](self).
#[derive(Debug)]
pub(super) struct LocalChannel {
    names: ChannelNames,
    live: HashMap<ConnectionId, Subscriber>,
    /// Joiners and the live messages buffered for them.
    joining: HashMap<ConnectionId, Vec<Live>>,
    /// The epoch and latest `seq` delivered here.
    position: Option<(Arc<str>, u64)>,
    /// Live messages that arrive while the channel resyncs, delivered after it.
    resync_backlog: Option<Vec<Live>>,
    /// Numbers the resyncs: only the latest one's snapshot is used.
    resync_token: u64,
    /// The pub/sub link that carries the channel (none while it is being placed).
    link: Option<LinkKey>,
    /// Raw copies of heartwire's own messages still to come on the raw channel.
    twins: u32,
    /// Whether the channel's members are tracked.
    presence: bool,
    /// This node's members of the channel, with their users.
    members: HashMap<ConnectionId, Option<Arc<str>>>,
}

impl LocalChannel {
    /// A channel with nobody on it yet, named `names`, with its members tracked when
    /// `presence`.
    pub(super) fn new(names: ChannelNames, presence: bool) -> Self {
        Self {
            names,
            live: HashMap::new(),
            joining: HashMap::new(),
            position: None,
            resync_backlog: None,
            resync_token: 0,
            link: None,
            twins: 0,
            presence,
            members: HashMap::new(),
        }
    }

    /// Its subscribers here, live or joining.
    pub(super) fn subscriber_count(&self) -> usize {
        self.live.len() + self.joining.len()
    }

    /// The channel's Redis names.
    pub(super) fn names(&self) -> &ChannelNames {
        &self.names
    }

    /// Whether the channel's members are tracked.
    pub(super) fn tracks_presence(&self) -> bool {
        self.presence
    }

    /// The link that carries the channel.
    pub(super) fn link(&self) -> Option<&LinkKey> {
        self.link.as_ref()
    }

    /// Places the channel on `link` (none: it is to be placed again).
    pub(super) fn set_link(&mut self, link: Option<LinkKey>) {
        self.link = link;
    }

    /// Whether nobody is subscribed or joining.
    pub(super) fn is_unused(&self) -> bool {
        self.live.is_empty() && self.joining.is_empty()
    }

    /// Starts a join of `subscriber`. When it was live already (it subscribes
    /// again), returns the position it had reached.
    pub(super) fn start_join(&mut self, subscriber: ConnectionId) -> Option<Position> {
        let resume_from = self.live.remove(&subscriber).and_then(|_| {
            let (epoch, seq) = self.position.as_ref()?;
            Some(Position {
                epoch: epoch.to_string(),
                seq: *seq,
            })
        });
        self.joining.insert(subscriber, Vec::new());
        resume_from
    }

    /// Whether `subscriber` is still joining.
    pub(super) fn is_joining(&self, subscriber: ConnectionId) -> bool {
        self.joining.contains_key(&subscriber)
    }

    /// Whether `subscriber` is a member on this node.
    pub(super) fn is_member(&self, subscriber: ConnectionId) -> bool {
        self.members.contains_key(&subscriber)
    }

    /// This node's members of the channel.
    pub(super) fn members(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|(session, user)| Member {
                session: *session,
                user: user.clone(),
            })
            .collect()
    }

    /// Ends the join of `mailbox` (of `user`) with the snapshot read after the Redis
    /// subscription was in place. Returns the member to announce, when the
    /// subscriber is now a new one.
    pub(super) fn finish_join(
        &mut self,
        channel: &Arc<str>,
        mailbox: &Arc<Mailbox>,
        user: Option<Arc<str>>,
        snapshot: Snapshot,
    ) -> Option<Member> {
        let buffered = self.joining.remove(&mailbox.id())?;
        let Snapshot {
            epoch,
            seq,
            recovered,
            retained,
            missed,
            renewed: _,
        } = snapshot;
        let confirmation = Outbound::Subscribed {
            channel: channel.clone(),
            seq,
            epoch: epoch.clone(),
            recovered,
        };
        // django-websocket-redis publishes raw, then keeps the text as the facility's
        // last message: a raw message published after this node subscribed, and kept
        // before the snapshot read it, is both retained and buffered live. It comes
        // once, live.
        let retained = retained.filter(|text| {
            !buffered.iter().any(|(message_epoch, message)| {
                message_epoch.is_none() && message.payload.raw_text() == text.as_str()
            })
        });
        let retained = retained.map(|text| {
            Arc::new(Publication::new(
                channel.clone(),
                seq,
                Payload::Text(text.into_boxed_str()),
                None,
            ))
        });
        // What the snapshot covers: up to its `seq`, or further when it carries the
        // messages of a new epoch from its first.
        let covered = missed.last().map_or(seq, |last| last.seq.max(seq));
        let later = buffered.into_iter().filter_map(|(message_epoch, message)| {
            let fresh = match &message_epoch {
                Some(message_epoch) => *message_epoch != epoch || message.seq > covered,
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
            let after = match &self.position {
                Some((known, last)) if *known == epoch => (*last).max(covered),
                _ => covered,
            };
            if self.position.is_none() {
                self.position = Some((epoch, covered));
            }
            let subscriber = Subscriber {
                mailbox: mailbox.clone(),
                after,
            };
            self.live.insert(mailbox.id(), subscriber);
            if self.presence && !self.members.contains_key(&mailbox.id()) {
                self.members.insert(mailbox.id(), user.clone());
                return Some(Member {
                    session: mailbox.id(),
                    user,
                });
            }
        }
        None
    }

    /// How many subscribers it has, joining ones included.
    pub(super) fn subscribers(&self) -> usize {
        self.live.len() + self.joining.len()
    }

    /// How many of its subscribers are still joining.
    pub(super) fn joiners(&self) -> usize {
        self.joining.len()
    }

    /// Removes `subscriber`; returns whether it was a member.
    pub(super) fn leave(&mut self, subscriber: ConnectionId) -> bool {
        self.live.remove(&subscriber);
        self.joining.remove(&subscriber);
        self.members.remove(&subscriber).is_some()
    }

    /// Starts a resync: live messages wait in the backlog until it is done. After
    /// a new pub/sub connection (`reconnected`) the raw copies still expected are
    /// forgotten: they went with the old connection. Returns the resync's number and
    /// the position this node delivered up to.
    pub(super) fn begin_resync(&mut self, reconnected: bool) -> (u64, Option<Position>) {
        self.resync_backlog.get_or_insert_with(Vec::new);
        if reconnected {
            self.twins = 0;
        }
        self.resync_token += 1;
        let position = self.position.as_ref().map(|(epoch, seq)| Position {
            epoch: epoch.to_string(),
            seq: *seq,
        });
        (self.resync_token, position)
    }

    /// Whether resync `token` is the one under way.
    pub(super) fn is_resyncing(&self, token: u64) -> bool {
        token == self.resync_token && self.resync_backlog.is_some()
    }

    /// Ends resync `token` (an older one changes nothing): delivers what was missed
    /// (or tells each subscriber its position is lost), then the backlog. Returns a
    /// new resync when the backlog shows another gap.
    pub(super) fn finish_resync(
        &mut self,
        channel: &str,
        token: u64,
        snapshot: Snapshot,
    ) -> Option<(u64, Option<Position>)> {
        if token != self.resync_token || self.resync_backlog.is_none() {
            return None;
        }
        if snapshot.recovered != Some(false) {
            self.replay(&snapshot.epoch, snapshot.missed, None);
            if self.position.is_none() {
                self.position = Some((snapshot.epoch, snapshot.seq));
            }
        } else {
            let notice = Outbound::Subscribed {
                channel: Arc::from(channel),
                seq: snapshot.seq,
                epoch: snapshot.epoch.clone(),
                recovered: Some(false),
            };
            for subscriber in self.live.values_mut() {
                subscriber.after = snapshot.seq;
            }
            self.position = Some((snapshot.epoch.clone(), snapshot.seq));
            // The new epoch's messages from its first, when the stream held them.
            self.replay(&snapshot.epoch, snapshot.missed, Some(notice));
        }
        // The backlog came before the snapshot was read: a message of another epoch
        // in it is of one that the snapshot's replaced, and is dropped.
        let current = self.position.as_ref().map(|(epoch, _)| epoch.clone());
        let mut again = None;
        for live in self.resync_backlog.take().unwrap_or_default() {
            if live.0.is_some() && live.0 != current {
                continue;
            }
            if let Some(resync) = self.receive(live) {
                again = Some(resync);
            }
        }
        again
    }

    /// A message of `channel` arrived on its Redis channel `redis_channel`. Returns
    /// a resync to run when it shows that messages were missed: a `seq` past the next
    /// one, or another epoch.
    pub(super) fn on_pubsub(
        &mut self,
        channel: &Arc<str>,
        redis_channel: &str,
        text: String,
    ) -> Option<(u64, Option<Position>)> {
        if redis_channel == self.names.presence {
            match PresenceEvent::parse(&text) {
                Some(event) => self.announce(channel, event),
                None => tracing::warn!(redis_channel, "dropping a malformed presence event"),
            }
            None
        } else if redis_channel == self.names.live {
            let Some((envelope, body_at)) =
                Envelope::parse(&text).map(|(envelope, body)| (envelope, text.len() - body.len()))
            else {
                tracing::warn!(redis_channel, "dropping a malformed envelope");
                return None;
            };
            if envelope.raw_follows {
                self.twins += 1;
            }
            // The body stays in the buffer it arrived in: the header is cut off in place.
            let mut body = text;
            body.replace_range(..body_at, "");
            let message = envelope.publication(channel.clone(), body)?;
            self.receive((Some(envelope.epoch), Arc::new(message)))
        } else if self.twins > 0 {
            // heartwire's own message, already delivered from its envelope.
            self.twins -= 1;
            None
        } else {
            let message = Publication::new(channel.clone(), 0, Payload::Text(text.into()), None);
            self.receive((None, Arc::new(message)))
        }
    }

    /// Delivers what a resync read from the stream, after `notice` when given, to
    /// each live subscriber in one go (a replay may pass a mailbox's bound once),
    /// and to the joiners' buffers.
    fn replay(
        &mut self,
        epoch: &Arc<str>,
        missed: Vec<Arc<Publication>>,
        notice: Option<Outbound>,
    ) {
        let after_position = match &self.position {
            Some((known, seq)) if known == epoch => *seq,
            _ => 0,
        };
        let fresh: Vec<Arc<Publication>> = missed
            .into_iter()
            .filter(|message| message.seq > after_position)
            .collect();
        for subscriber in self.live.values() {
            let items = notice.iter().cloned().chain(
                fresh
                    .iter()
                    .filter(|message| message.seq > subscriber.after)
                    .map(|message| Outbound::Message(message.clone())),
            );
            // A full mailbox marks a slow consumer, which closes and leaves.
            subscriber.mailbox.deliver_all(items);
        }
        for buffer in self.joining.values_mut() {
            buffer.extend(
                fresh
                    .iter()
                    .map(|message| (Some(epoch.clone()), message.clone())),
            );
        }
        if let Some(last) = fresh.last() {
            self.position = Some((epoch.clone(), last.seq));
        }
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

    fn announce(&self, channel: &Arc<str>, event: PresenceEvent) {
        for (id, subscriber) in &self.live {
            if *id != event.member.session {
                subscriber.mailbox.deliver(Outbound::PresenceChange {
                    channel: channel.clone(),
                    member: event.member.clone(),
                    joined: event.joined,
                });
            }
        }
    }

    /// Delivers a live message, or keeps it for after the resync under way, or
    /// starts a resync when it does not follow what was delivered.
    fn receive(&mut self, live: Live) -> Option<(u64, Option<Position>)> {
        if let Some(backlog) = &mut self.resync_backlog {
            backlog.push(live);
            return None;
        }
        let follows = match (&self.position, &live.0) {
            (Some((known, last)), Some(epoch)) => known == epoch && live.1.seq <= last + 1,
            _ => true,
        };
        if follows {
            self.deliver(live);
            return None;
        }
        let resync = self.begin_resync(false);
        if let Some(backlog) = &mut self.resync_backlog {
            backlog.push(live);
        }
        Some(resync)
    }
}
