//! The Redis broker: several `heartwire serve` nodes share channels through Redis,
//! on one server, several servers, a Redis Cluster, or a master that Sentinel names.
//!
//! `seq` comes from Redis (`INCR` in the publish script), never from a node, so every
//! node delivers a channel's messages in one order; the stream (`XADD … MAXLEN`) is the
//! history that resuming clients read from, on any node. Publishes go through one
//! queue per node, sent in pipelines, so one connection's publishes keep their order.
//! Every topology takes one code path: channels live on *shards*, each with a
//! connection for commands and pub/sub *links* for messages (see [`shard`] and
//! [`subscriber`]).
//!
//! This file is the facade, [`RedisBroker`]; the parts beneath it:
//! - [`topology`]: the configuration, and which shard holds a channel;
//! - [`names`]: where a channel lives in Redis (django-websocket-redis conventions,
//!   and cluster hash tags);
//! - [`scripts`]: every Lua script, each one channel operation in one atomic step,
//!   with the check that a fail-over did not cut the channel's history;
//! - [`commands`]: the script calls and commands, built from plain values;
//! - [`replies`]: what Redis sends back (script replies, envelopes, presence events);
//! - [`shard`] and [`connection`]: a shard's master and its command connection;
//! - [`links`], [`subscriber`] and [`connected`]: the pub/sub links, one per master
//!   that carries this node's channels: their reconnects, and what a connected one
//!   does;
//! - [`placement`]: which link carries a channel (in a cluster, its slot's master);
//! - [`channels`] and [`local_channel`]: this node's subscribers, and the ordering
//!   rules (join, resync);
//! - [`lineage`]: reading a channel, and judging one whose history crossed a
//!   fail-over or a resharding;
//! - [`shared`]: what every task shares, and the health report;
//! - [`join_barrier`]: a connection's publishes wait behind its own joins, so it sees
//!   its message;
//! - the tasks: [`publisher`] (the publish queue), [`join`] and [`resync`] (bringing
//!   a channel up to date), [`presence`] (who is subscribed, across nodes),
//!   [`upkeep`] (periodic jobs);
//! - [`reaped`]: sessions reaped for silence, for any node to judge a client's report.

mod channels;
mod commands;
mod connected;
mod connection;
mod join;
mod join_barrier;
mod lineage;
mod links;
mod local_channel;
mod names;
mod placement;
mod presence;
mod publisher;
mod reaped;
mod replies;
mod resync;
mod scripts;
mod shard;
mod shared;
mod subscriber;
mod subscriptions;
mod topology;
mod upkeep;

use std::sync::Arc;

use heartwire_core::ErrorCode;
use tokio::sync::mpsc;

pub use topology::{RedisConfig, RedisTopology, WaitReplicas};

use super::contract::{Broker, BrokerHealth, PublishRequest, SubscribeRequest};
use crate::config::{Holdings, Retention};
use crate::error::Error;
use crate::id::ConnectionId;
use crate::mailbox::{Mailbox, Outbound};
use join_barrier::JoinBarrier;
use links::{Command, LinkKey};
use publisher::{PUBLISH_QUEUE, UNREACHABLE, refuse};
use shared::Shared;

/// Channels shared by every node on the same Redis. See the [module docs](self).
pub struct RedisBroker {
    shared: Arc<Shared>,
    /// The publish queue, behind each connection's joins.
    publishes: Arc<JoinBarrier>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let health = self.shared.health();
        f.debug_struct("RedisBroker")
            .field("node", &self.shared.node_id())
            .field("up", &health.up)
            .field("reconnects", &health.reconnects)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Starts the broker's tasks on the current Tokio runtime. Redis need not be up
    /// yet: the node runs degraded until it is reachable. Of the `holdings`, the
    /// history's bytes per channel apply: Redis keeps the history, so the node's
    /// total and its counts of channels and ids are Redis's `maxmemory` to bound.
    pub fn start(
        config: &RedisConfig,
        retention: Retention,
        holdings: Holdings,
    ) -> Result<Self, Error> {
        config.validate()?;
        let tls_ca = match &config.tls_ca {
            Some(path) => Some(std::fs::read(path).map_err(|err| {
                Error::Config(format!(
                    "cannot read the Redis CA file {}: {err}",
                    path.display()
                ))
            })?),
            None => None,
        };
        let shared =
            Shared::new(config, tls_ca.as_deref(), retention, holdings).map_err(|source| {
                Error::Redis {
                    url: describe(config),
                    source,
                }
            })?;
        let shared = Arc::new(shared);
        for (index, shard) in shared.shards().iter().enumerate() {
            if !shard.is_cluster() {
                shared.link(&LinkKey::Shard(index));
            }
        }
        let (publisher, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher::publish_in_order(shared.clone(), queue));
        tokio::spawn(upkeep::keep_history_alive(Arc::downgrade(&shared)));
        tokio::spawn(upkeep::keep_node_alive(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            publishes: JoinBarrier::new(publisher),
        })
    }
}

/// The Redis addresses of `config`, for an error message: never a password.
fn describe(config: &RedisConfig) -> String {
    let urls = match &config.topology {
        RedisTopology::Servers(urls) | RedisTopology::Cluster(urls) => urls,
        RedisTopology::Sentinel { sentinels, .. } => sentinels,
    };
    urls.iter()
        .map(|url| topology::address_of(url))
        .collect::<Vec<_>>()
        .join(",")
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.shared.closed().cancel();
    }
}

impl Broker for RedisBroker {
    fn subscribe(&self, request: SubscribeRequest) {
        if self.shared.is_unreachable(&request.channel) {
            // The join waits for Redis; the client hears at once why nothing comes yet.
            request.subscriber.deliver(Outbound::Error {
                code: ErrorCode::Unavailable,
                reason: format!(
                    "cannot subscribe to {} yet: Redis is unreachable; `subscribed` follows when it is back",
                    request.channel
                ),
                id: None,
            });
        }
        let joining = self.shared.channels().join(
            &request.channel,
            request.subscriber.id(),
            request.presence,
        );
        let guard = self.publishes.join_started(request.subscriber.id());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            join::join(shared, request, joining).await;
            drop(guard);
        });
    }

    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId) {
        let left = self.shared.channels().leave(channel, subscriber);
        if left.was_member {
            let shared = self.shared.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move {
                if let Err(err) = presence::remove_member(&shared, &channel, subscriber).await {
                    // A node that cannot reach Redis is swept as dead, with its members.
                    tracing::warn!(%err, %channel, "cannot remove a member");
                }
            });
        }
        if let Some((link, pubsub)) = left.unsubscribe {
            let link = self.shared.link(&link);
            let _ = link
                .orders
                .send(Command::Unsubscribe(Arc::from(channel), pubsub));
        }
    }

    fn channels(&self) -> Vec<(Arc<str>, usize)> {
        self.shared.channels().subscriber_counts()
    }

    fn note_reaped(&self, session: &str, ttl: std::time::Duration) {
        let shared = self.shared.clone();
        let session = session.to_owned();
        tokio::spawn(async move {
            if let Err(err) = reaped::note(&shared, &session, ttl).await {
                tracing::debug!(%err, "cannot note a reaped session");
            }
        });
    }

    fn take_reaped(&self, session: &str, then: Box<dyn FnOnce() + Send>) {
        let shared = self.shared.clone();
        let session = session.to_owned();
        tokio::spawn(async move {
            match reaped::take(&shared, &session).await {
                Ok(true) => then(),
                Ok(false) => {}
                Err(err) => tracing::debug!(%err, "cannot check a reaped session"),
            }
        });
    }

    fn presence(&self, channel: Arc<str>, asker: Arc<Mailbox>) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            match presence::live_members(&shared, &channel).await {
                Ok(members) => {
                    asker.deliver(Outbound::Presence { channel, members });
                }
                Err(err) => {
                    asker.deliver(Outbound::Error {
                        code: ErrorCode::Unavailable,
                        reason: format!("cannot read the members of {channel}: {err}"),
                        id: None,
                    });
                }
            }
        });
    }

    fn publish(&self, request: PublishRequest) {
        if !self.shared.can_publish(&request.channel) {
            if let Some(origin) = &request.origin {
                refuse(origin, request.ack_id, UNREACHABLE);
            }
            return;
        }
        self.publishes.publish(request);
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn node_id(&self) -> &str {
        self.shared.node_id()
    }

    fn health(&self) -> BrokerHealth {
        self.shared.health()
    }
}
