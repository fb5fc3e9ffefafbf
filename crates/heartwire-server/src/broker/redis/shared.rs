//! What every task of the Redis broker shares: the shards, the pub/sub links, this
//! node's channels, the counters of fail-overs, and the health report made of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use super::channels::Channels;
use super::commands;
use super::links::{Link, LinkKey, LinkStatus, Links};
use super::names::{ChannelNames, Naming, NodeNames};
use super::shard::Shard;
use super::subscriber;
use super::topology::{RedisConfig, RedisTopology, WaitReplicas, shard_of};
use crate::broker::contract::{BrokerHealth, ShardHealth};
use crate::config::{Holdings, Retention};
use crate::id::random_id;

/// How often Redis is probed (the pub/sub links, this node's liveness key), how
/// long a probe may take, and how long a step that failed waits before it is tried
/// again.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What every task of the broker shares.
pub(super) struct Shared {
    shards: Vec<Shard>,
    /// Whether each shard answered its last liveness refresh.
    reachable: Vec<AtomicBool>,
    links: Links,
    channels: Mutex<Channels>,
    naming: Naming,
    retention: Retention,
    /// Bytes of history kept per channel (`--history-max-bytes`).
    history_max_bytes: usize,
    wait: Option<WaitReplicas>,
    node: NodeNames,
    closed: CancellationToken,
    /// Channels of a cluster moved to another node after theirs was lost.
    moves: AtomicU64,
    /// Links to cluster nodes lost after they were up.
    lost_nodes: AtomicU64,
    /// Channels given a new epoch because a fail-over cut their history.
    renewed: AtomicU64,
}

impl Shared {
    /// The state of a node that has not reached Redis yet.
    /// `tls_ca` is the PEM of the CA for `rediss://` servers, read by the caller.
    pub(super) fn new(
        config: &RedisConfig,
        tls_ca: Option<&[u8]>,
        retention: Retention,
        holdings: Holdings,
    ) -> redis::RedisResult<Self> {
        let shards = match &config.topology {
            RedisTopology::Servers(urls) => urls
                .iter()
                .map(|url| Shard::server(url, tls_ca))
                .collect::<redis::RedisResult<Vec<_>>>()?,
            RedisTopology::Cluster(seeds) => vec![Shard::cluster(seeds)?],
            RedisTopology::Sentinel { sentinels, master } => {
                vec![Shard::sentinel(sentinels, master)?]
            }
        };
        let naming = Naming::new(&config.prefix, config.is_cluster());
        Ok(Self {
            reachable: shards.iter().map(|_| AtomicBool::new(false)).collect(),
            shards,
            links: Links::default(),
            channels: Mutex::new(Channels::new(naming.clone())),
            node: naming.node(random_id()),
            naming,
            retention,
            history_max_bytes: holdings.history_max_bytes,
            wait: config.wait,
            closed: CancellationToken::new(),
            moves: AtomicU64::new(0),
            lost_nodes: AtomicU64::new(0),
            renewed: AtomicU64::new(0),
        })
    }

    /// This node's channels.
    pub(super) fn channels(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock()
    }

    /// This node's names among the nodes.
    pub(super) fn node(&self) -> &NodeNames {
        &self.node
    }

    /// This node's id among the nodes.
    pub(super) fn node_id(&self) -> &str {
        &self.node.id
    }

    /// What is kept of each channel.
    pub(super) fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Bytes of history kept per channel.
    pub(super) fn history_max_bytes(&self) -> usize {
        self.history_max_bytes
    }

    /// Replicas each pipeline of publishes waits for.
    pub(super) fn wait(&self) -> Option<WaitReplicas> {
        self.wait
    }

    /// How long a channel's history outlives its last use.
    pub(super) fn history_ttl(&self) -> Duration {
        Duration::from_millis(commands::history_ttl_ms(&self.retention))
    }

    /// Every shard, by index.
    pub(super) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The index of the shard that holds `channel`.
    pub(super) fn shard_index(&self, channel: &str) -> usize {
        shard_of(channel, self.shards.len())
    }

    /// The shard that holds `channel`.
    pub(super) fn shard_for(&self, channel: &str) -> &Shard {
        &self.shards[self.shard_index(channel)]
    }

    /// Whether the channels live in a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        self.naming.is_cluster()
    }

    /// Notes whether shard `index` answered its liveness refresh.
    pub(super) fn set_reachable(&self, index: usize, reachable: bool) {
        self.reachable[index].store(reachable, Ordering::Relaxed);
    }

    /// Fires once the broker is dropped: every task ends.
    pub(super) fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Whether a publish on `channel` can be tried now: its shard's link is up
    /// (in a cluster, the command decides).
    /// Whether the link that carries `channel` found Redis unreachable (and has not
    /// reached it since); false while a first attempt is under way, and in a cluster.
    pub(super) fn is_unreachable(&self, channel: &str) -> bool {
        if self.is_cluster() {
            return false;
        }
        let key = LinkKey::Shard(self.shard_index(channel));
        self.links
            .status_of(&key)
            .is_some_and(|status| status.is_unreachable())
    }

    pub(super) fn can_publish(&self, channel: &str) -> bool {
        if self.is_cluster() {
            return true;
        }
        let key = LinkKey::Shard(self.shard_index(channel));
        self.links
            .status_of(&key)
            .is_some_and(|status| status.is_up())
    }

    /// The link to `key`, started if it was not running.
    pub(super) fn link(self: &Arc<Self>, key: &LinkKey) -> Link {
        let (link, queue) = self.links.get_or_add(key);
        if let Some(queue) = queue {
            tokio::spawn(subscriber::run(
                self.clone(),
                key.clone(),
                link.status.clone(),
                queue,
            ));
        }
        link
    }

    /// Forgets an ended link.
    pub(super) fn link_ended(&self, key: &LinkKey, status: &Arc<LinkStatus>) {
        self.links.remove(key, status);
    }

    /// Counts a channel of a cluster moved to another node after its node was lost.
    pub(super) fn count_move(&self) {
        self.moves.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a link to a cluster node lost after it was up.
    pub(super) fn count_lost_node(&self) {
        self.lost_nodes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a channel given a new epoch because a fail-over cut its history.
    pub(super) fn count_renewed(&self, channel: &str) {
        tracing::warn!(
            %channel,
            "the channel's history was cut by a Redis fail-over: new epoch, subscribers are told recovered: false"
        );
        self.renewed.fetch_add(1, Ordering::Relaxed);
    }

    /// The names of `channel`.
    pub(super) fn names(&self, channel: &str) -> ChannelNames {
        self.channels().names(channel)
    }

    /// The broker's health: every shard (in a cluster, every master node linked),
    /// and the counters of fail-overs.
    pub(super) fn health(&self) -> BrokerHealth {
        let links = self.links.all();
        let census = self.channels().census();
        let unplaced = census.unplaced;
        let mut shards = Vec::new();
        let mut up = true;
        for (index, shard) in self.shards.iter().enumerate() {
            if shard.is_cluster() {
                let reachable = self.reachable[index].load(Ordering::Relaxed);
                up &= reachable && unplaced == 0;
                shards.push(ShardHealth {
                    name: shard.name(),
                    master: None,
                    up: reachable,
                    reconnects: self.lost_nodes.load(Ordering::Relaxed),
                    failovers: self.moves.load(Ordering::Relaxed),
                    channels: unplaced,
                });
                continue;
            }
            let key = LinkKey::Shard(index);
            let status = links.iter().find(|(link, _)| *link == key);
            let link_up = status.is_some_and(|(_, status)| status.is_up());
            up &= link_up;
            shards.push(ShardHealth {
                name: shard.name(),
                master: shard.master_address(),
                up: link_up,
                reconnects: status.map_or(0, |(_, status)| status.reconnects()),
                failovers: shard.failovers(),
                channels: census.by_link.get(&key).copied().unwrap_or(0),
            });
        }
        for (key, status) in &links {
            if let LinkKey::Node(address) = key {
                up &= status.is_up();
                shards.push(ShardHealth {
                    name: address.clone(),
                    master: status.master(),
                    up: status.is_up(),
                    reconnects: status.reconnects(),
                    failovers: 0,
                    channels: census.by_link.get(key).copied().unwrap_or(0),
                });
            }
        }
        BrokerHealth {
            up,
            reconnects: shards.iter().map(|shard| shard.reconnects).sum(),
            failovers: shards.iter().map(|shard| shard.failovers).sum(),
            epochs_renewed: self.renewed.load(Ordering::Relaxed),
            shards,
            channels: census.held,
            subscriptions: census.subscriptions,
            joining: census.joining,
        }
    }
}
