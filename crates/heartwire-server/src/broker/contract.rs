//! What every broker promises the connections: the [`Broker`] trait, and the
//! requests it takes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use heartwire_core::protocol::Position;

use crate::handover::state::ChannelState;
use crate::id::ConnectionId;
use crate::mailbox::Mailbox;
use crate::publication::Payload;

/// Bytes a message in history is counted for beyond its payload, against
/// `--history-max-bytes` and `--history-total-bytes`: in process, the publication and
/// its place in the history and in the ledger. The Redis broker counts the same, so
/// the bound means one thing whichever broker keeps the history.
pub(crate) const MESSAGE_OVERHEAD: usize = 160;

/// A request to publish.
#[derive(Debug)]
pub struct PublishRequest {
    /// The channel.
    pub channel: Arc<str>,
    /// The body.
    pub payload: Payload,
    /// Keep this message as the channel's last, for late ws4redis joiners.
    pub retain: bool,
    /// The publishing connection: it receives the `ack` (when `ack_id` is set) or
    /// the error.
    pub origin: Option<Arc<Mailbox>>,
    /// The id to acknowledge.
    pub ack_id: Option<String>,
    /// Who publishes (a user, or an anonymous client's address): an `ack_id` is
    /// remembered for its publisher only, so no one can claim another's ids.
    pub publisher: Arc<str>,
}

/// A request to subscribe.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// The channel.
    pub channel: Arc<str>,
    /// The subscribing connection.
    pub subscriber: Arc<Mailbox>,
    /// Deliver the channel's retained message first, when one is fresh (ws4redis).
    pub with_retained: bool,
    /// Deliver first every message after this position, or say that it cannot.
    pub since: Option<Position>,
    /// The channel's members are tracked: others learn that this subscriber joined
    /// and, when it unsubscribes, that it left (for an identified subscriber, when
    /// it is its user's first connection on the channel, and its last).
    pub presence: bool,
    /// The subscriber's user, by which presence counts it; `None` when anonymous.
    pub user: Option<Arc<str>>,
}

impl SubscribeRequest {
    /// The position of a subscriber that may not have the history replayed: its
    /// epoch is no channel's (epochs are hex digits), so a subscription `since` it is
    /// confirmed with `recovered: false` and replays nothing.
    pub(crate) fn unreplayable() -> Position {
        Position {
            epoch: "-".into(),
            seq: 0,
        }
    }

    /// Whether `since` is [`unreplayable`](Self::unreplayable).
    pub(crate) fn is_unreplayable(since: &Position) -> bool {
        since.epoch == "-"
    }
}

/// How a broker's link to other nodes is doing, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerHealth {
    /// Messages reach other nodes (always true for a broker of one node).
    pub up: bool,
    /// Times a link was lost and made again.
    pub reconnects: u64,
    /// Times a master changed under the broker (a fail-over it followed).
    pub failovers: u64,
    /// Channels given a new epoch because a fail-over cut their history; their
    /// subscribers were told `recovered: false`.
    pub epochs_renewed: u64,
    /// Each shard (a Redis master, or a cluster and its master nodes).
    pub shards: Vec<ShardHealth>,
    /// Channels this node holds (with subscribers, or history kept in process).
    pub channels: usize,
    /// Subscriptions of this node's connections, over all channels.
    pub subscriptions: usize,
    /// Of those, the ones still joining: subscribed in Redis, their snapshot not yet
    /// read, so their live messages wait (always 0 for the in-process broker).
    pub joining: usize,
}

/// One shard of a broker that spreads channels over several Redis masters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHealth {
    /// Its name: an address, `sentinel:{name}`, or `cluster`; never a password.
    pub name: String,
    /// The address of its master now, when known.
    pub master: Option<String>,
    /// Whether its messages flow.
    pub up: bool,
    /// Times its link was lost and made again.
    pub reconnects: u64,
    /// Times its master changed (for a cluster: channels moved to another node).
    pub failovers: u64,
    /// Channels this node has on it (for a cluster: channels waiting for a node).
    pub channels: usize,
}

/// Fans channel messages out to subscribed connections.
///
/// Its methods never wait: results come back as [`Outbound`](crate::Outbound) items
/// in the caller's [`Mailbox`](crate::Mailbox), so a broker that crosses the network
/// answers the same way as the in-process one.
pub trait Broker: Send + Sync + 'static {
    /// Adds the subscriber to the channel (with `presence`, as a member whose
    /// arrival every other subscriber learns). The broker then delivers
    /// [`Outbound::Subscribed`](crate::mailbox::Outbound::Subscribed); then the
    /// channel's retained message when asked for and fresh; then, when `since` was
    /// given and the history covers it, every message after it; then every later
    /// message, each exactly once and in `seq` order.
    fn subscribe(&self, request: SubscribeRequest);

    /// Removes the connection `subscriber` from `channel`. When it was a member
    /// (subscribed with `presence`), every other subscriber learns that it left.
    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId);

    /// Delivers [`Outbound::Presence`](crate::mailbox::Outbound::Presence) to `asker`:
    /// the members of `channel`, on every node of this broker.
    fn presence(&self, channel: Arc<str>, asker: Arc<Mailbox>);

    /// Publishes a message to every subscriber of its channel, in one order for all.
    /// A request whose `ack_id` its publisher published on the channel within the
    /// dedup window is not published again: its origin gets the first `seq`, marked duplicate.
    fn publish(&self, request: PublishRequest);

    /// The channels that have subscribers on this node, with how many.
    fn channels(&self) -> Vec<(Arc<str>, usize)>;

    /// A name for `/healthz` and logs, such as `memory`.
    fn name(&self) -> &'static str;

    /// This node's id among the nodes that share channels (random, made at start),
    /// for `/healthz` and logs.
    fn node_id(&self) -> &str;

    /// The state of the link to other nodes, and what this node holds.
    fn health(&self) -> BrokerHealth;

    /// This node reaped `session` for silence: other nodes may judge its client's
    /// report by it for `ttl`. A broker without other nodes keeps nothing (the node
    /// remembers its own reaps).
    fn note_reaped(&self, _session: &str, _ttl: Duration) {}

    /// Whether another node reaped `session` for silence lately: `then` is called,
    /// once and later, when it did, and the reap is forgotten so it counts once.
    /// A broker without other nodes never calls it.
    fn take_reaped(&self, _session: &str, _then: Box<dyn FnOnce() + Send>) {}

    /// The channels a live upgrade hands to the new process: those kept in this
    /// process (none for a broker whose history is elsewhere, as in Redis), with
    /// their presence members among the connections `handed_over`. From
    /// then on a publish here is refused as unavailable (it would reach nobody),
    /// until [`keep_channels`](Self::keep_channels).
    fn hand_over_channels(&self, _handed_over: &HashSet<ConnectionId>) -> Vec<ChannelState> {
        Vec::new()
    }

    /// The handover of the channels did not happen after all: this process goes on
    /// with them (a broker whose history is elsewhere has nothing to do).
    fn keep_channels(&self) {}

    /// Takes over the channels of the process this one replaces, before any
    /// connection subscribes.
    fn adopt_channels(&self, _channels: Vec<ChannelState>) {}
}
