//! The Redis broker: several `heartwire serve` nodes share channels through Redis.
//!
//! `seq` comes from Redis (`INCR` in the publish script), never from a node, so every
//! node delivers a channel's messages in one order; the stream (`XADD … MAXLEN`) is the
//! history that resuming clients read from, on any node. Publishes go through one
//! queue per node, sent in pipelines, so one connection's publishes keep their order.
//!
//! This file is the facade, [`RedisBroker`]; the parts beneath it:
//! - [`names`]: where a channel lives in Redis (django-websocket-redis conventions);
//! - [`scripts`]: every Lua script, each one channel operation in one atomic step;
//! - [`commands`]: the script calls and commands, built from plain values;
//! - [`replies`]: what Redis sends back (script replies, envelopes, presence events);
//! - [`channels`] and [`local_channel`]: this node's subscribers, and the ordering
//!   rules (join, resync);
//! - [`shared`]: what every task shares (connections, channels, whether Redis is up);
//! - [`join_barrier`]: a connection's publishes wait behind its own joins, so it sees
//!   its message;
//! - the tasks: [`publisher`] (the publish queue), [`subscriber`] (the one pub/sub
//!   connection, and its reconnects), [`join`] and [`resync`] (bringing a channel up
//!   to date), [`presence`] (who is subscribed, across nodes), [`upkeep`] (periodic
//!   jobs).

mod channels;
mod commands;
mod join;
mod join_barrier;
mod local_channel;
mod names;
mod presence;
mod publisher;
mod replies;
mod resync;
mod scripts;
mod shared;
mod subscriber;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use heartwire_core::ErrorCode;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::contract::{Broker, BrokerHealth, PublishRequest, SubscribeRequest};
use crate::config::Retention;
use crate::error::Error;
use crate::id::ConnectionId;
use crate::mailbox::{Mailbox, Outbound};
use join_barrier::JoinBarrier;
use publisher::{PUBLISH_QUEUE, UNREACHABLE, refuse};
use shared::{PROBE_EVERY, Shared};
use subscriber::Command;

/// How long one Redis command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the Redis broker connects and how it names things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// A `redis://` URL.
    pub url: String,
    /// django-websocket-redis's `WS4REDIS_PREFIX` (empty: none).
    pub prefix: String,
}

/// Channels shared by every node on one Redis. See the [module docs](self).
pub struct RedisBroker {
    shared: Arc<Shared>,
    subscriber: mpsc::UnboundedSender<Command>,
    /// The publish queue, behind each connection's joins.
    publishes: Arc<JoinBarrier>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node", &self.shared.node_id())
            .field("up", &self.shared.is_up())
            .field("reconnects", &self.shared.reconnects())
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Starts the broker's tasks on the current Tokio runtime. Redis need not be up
    /// yet: the node runs degraded until it is reachable.
    pub fn start(config: &RedisConfig, retention: Retention) -> Result<Self, Error> {
        let redis_error = |source| Error::Redis {
            url: config.url.clone(),
            source,
        };
        let client = redis::Client::open(config.url.as_str()).map_err(redis_error)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_EVERY);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(redis_error)?;
        let shared = Arc::new(Shared::new(client, commands, &config.prefix, retention));
        let (subscriber, commands) = mpsc::unbounded_channel();
        tokio::spawn(subscriber::run(shared.clone(), commands));
        let (publisher, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher::publish_in_order(shared.clone(), queue));
        tokio::spawn(upkeep::keep_history_alive(Arc::downgrade(&shared)));
        tokio::spawn(upkeep::keep_node_alive(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            subscriber,
            publishes: JoinBarrier::new(publisher),
        })
    }
}

impl Broker for RedisBroker {
    fn subscribe(&self, request: SubscribeRequest) {
        let joining = self.shared.channels().join(
            &request.channel,
            request.subscriber.id(),
            request.presence,
        );
        let guard = self.publishes.join_started(request.subscriber.id());
        let (shared, subscriber) = (self.shared.clone(), self.subscriber.clone());
        tokio::spawn(async move {
            join::join(shared, subscriber, request, joining).await;
            drop(guard);
        });
    }

    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId) {
        let (left, names) = {
            let mut channels = self.shared.channels();
            (channels.leave(channel, subscriber), channels.names(channel))
        };
        if left.was_member {
            let shared = self.shared.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move {
                if let Err(err) = shared.remove_member(&names, subscriber).await {
                    // A node that cannot reach Redis is swept as dead, with its members.
                    tracing::warn!(%err, %channel, "cannot remove a member");
                }
            });
        }
        if let Some(pubsub) = left.unsubscribe {
            let _ = self
                .subscriber
                .send(Command::Unsubscribe(Arc::from(channel), pubsub));
        }
    }

    fn presence(&self, channel: Arc<str>, asker: Arc<Mailbox>) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let names = shared.channels().names(&channel);
            match shared.members(&names).await {
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
        if !self.shared.is_up() {
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

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            up: self.shared.is_up(),
            reconnects: self.shared.reconnects(),
        }
    }
}
