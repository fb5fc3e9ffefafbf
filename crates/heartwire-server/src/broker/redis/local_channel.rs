//! One channel as this node sees it: its live subscribers, its joiners and what is
//! buffered for them, the position delivered so far, and how each message reaches
//! them under the ordering rules of [`channels`](super::channels).

use std::collections::HashMap;
use std::sync::Arc;

use heartwire_core::protocol::Position;

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
            twins: 0,
            presence,
            members: HashMap::new(),
        }
    }

    /// The channel's Redis names.
    pub(super) fn names(&self) -> &ChannelNames {
        &self.names
    }

    /// Whether the channel's members are tracked.
    pub(super) fn tracks_presence(&self) -> bool {
        self.presence
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
            let after = match &self.position {
                Some((known, last)) if *known == epoch => (*last).max(seq),
                _ => seq,
            };
            if self.position.is_none() {
                self.position = Some((epoch, seq));
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

    /// Removes `subscriber`; returns whether it was a member.
    pub(super) fn leave(&mut self, subscriber: ConnectionId) -> bool {
        self.live.remove(&subscriber);
        self.joining.remove(&subscriber);
        self.members.remove(&subscriber).is_some()
    }

    /// Starts a resync: live messages wait in the backlog until it is done. Returns
    /// the position this node delivered up to.
    pub(super) fn begin_resync(&mut self) -> Option<Position> {
        self.resync_backlog.get_or_insert_with(Vec::new);
        self.twins = 0;
        self.position.as_ref().map(|(epoch, seq)| Position {
            epoch: epoch.to_string(),
            seq: *seq,
        })
    }

    /// Ends the resync: delivers what was missed (or tells each subscriber its
    /// position is lost), then the backlog.
    pub(super) fn finish_resync(&mut self, channel: &str, snapshot: Snapshot) {
        if snapshot.recovered != Some(false) {
            for message in snapshot.missed {
                self.deliver((Some(snapshot.epoch.clone()), message));
            }
            if self.position.is_none() {
                self.position = Some((snapshot.epoch, snapshot.seq));
            }
        } else {
            for subscriber in self.live.values_mut() {
                subscriber.after = snapshot.seq;
                subscriber.mailbox.deliver(Outbound::Subscribed {
                    channel: Arc::from(channel),
                    seq: snapshot.seq,
                    epoch: snapshot.epoch.clone(),
                    recovered: Some(false),
                });
            }
            self.position = Some((snapshot.epoch, snapshot.seq));
        }
        for live in self.resync_backlog.take().unwrap_or_default() {
            self.deliver(live);
        }
    }

    /// A message of `channel` arrived on its Redis channel `redis_channel`.
    pub(super) fn on_pubsub(&mut self, channel: &Arc<str>, redis_channel: &str, text: String) {
        if redis_channel == self.names.presence {
            match PresenceEvent::parse(&text) {
                Some(event) => self.announce(channel, event),
                None => tracing::warn!(redis_channel, "dropping a malformed presence event"),
            }
        } else if redis_channel == self.names.live {
            let Some((envelope, body_at)) =
                Envelope::parse(&text).map(|(envelope, body)| (envelope, text.len() - body.len()))
            else {
                tracing::warn!(redis_channel, "dropping a malformed envelope");
                return;
            };
            if envelope.raw_follows {
                self.twins += 1;
            }
            // The body stays in the buffer it arrived in: the header is cut off in place.
            let mut body = text;
            body.replace_range(..body_at, "");
            if let Some(message) = envelope.publication(channel.clone(), body) {
                self.receive((Some(envelope.epoch), Arc::new(message)));
            }
        } else if self.twins > 0 {
            // heartwire's own message, already delivered from its envelope.
            self.twins -= 1;
        } else {
            let message = Publication::new(channel.clone(), 0, Payload::Text(text.into()), None);
            self.receive((None, Arc::new(message)));
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

    fn receive(&mut self, live: Live) {
        match &mut self.resync_backlog {
            Some(backlog) => backlog.push(live),
            None => self.deliver(live),
        }
    }
}
