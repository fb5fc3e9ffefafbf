//! The Redis broker: several `heartwire serve` nodes share channels through Redis.
//!
//! - [`names`]: where a channel lives in Redis (django-websocket-redis conventions);
//! - [`scripts`]: the Lua scripts that sequence, store and fan out a message in one
//!   atomic step, and read a channel's snapshot;
//! - [`channels`]: this node's subscribers and the ordering rules (join, resync);
//! - [`held`]: a connection's publishes wait for its own joins, so it sees its message;
//! - [`subscriber`]: the node's one pub/sub connection, and its reconnects;
//! - [`presence`]: who is subscribed to a channel, across nodes.
//!
//! `seq` comes from Redis (`INCR` in the publish script), never from a node, so every
//! node delivers a channel's messages in one order; the stream (`XADD … MAXLEN`) is the
//! history that resuming clients read from, on any node. Publishes go through one
//! queue per node, sent in pipelines, so one connection's publishes keep their order.

mod channels;
mod held;
mod names;
mod presence;
mod scripts;
mod subscriber;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use heartwire_core::ErrorCode;
use heartwire_core::protocol::Position;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, ScriptInvocation, ServerErrorKind};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Broker, BrokerHealth, PublishRequest, Retention, SubscribeRequest};
use crate::Error;
use crate::mailbox::{ConnectionId, Mailbox, Outbound};
use channels::{Channels, Joining};
use held::Held;
use names::{ChannelNames, is_ws4redis, node_key_prefix};
use scripts::{PUBLISH, Published, SNAPSHOT, Snapshot, TOUCH, encode_payload};
use subscriber::{Command, PROBE_EVERY};

/// Publishes that may wait for Redis on one node before more are refused.
const PUBLISH_QUEUE: usize = 16_384;

/// Publishes sent to Redis in one pipeline at most.
const PUBLISH_BATCH: usize = 256;

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

/// What every task of the broker shares.
struct Shared {
    client: redis::Client,
    commands: ConnectionManager,
    channels: Mutex<Channels>,
    up: watch::Sender<bool>,
    reconnects: AtomicU64,
    retention: Retention,
    /// This node's id among the nodes (random).
    node: String,
    /// Where the liveness keys of nodes are.
    node_key_prefix: String,
}

impl Shared {
    fn channels(&self) -> MutexGuard<'_, Channels> {
        // The lock is never held across anything that can panic.
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    async fn wait_up(&self) {
        let mut up = self.up.subscribe();
        let _ = up.wait_for(|up| *up).await;
    }

    fn ttl_ms(&self) -> u64 {
        // Redis forgets a key with a zero expiry at once; keep history at least 1 s.
        u64::try_from(self.retention.history_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1000)
    }

    async fn snapshot(
        &self,
        channel: &Arc<str>,
        names: &ChannelNames,
        since: Option<&Position>,
        with_retained: bool,
    ) -> Result<Snapshot, redis::RedisError> {
        let mut invocation = SNAPSHOT.prepare_invoke();
        invocation
            .key(&names.seq)
            .key(&names.epoch)
            .key(&names.stream)
            .key(&names.raw)
            .arg(fresh_epoch())
            .arg(since.map_or("", |since| since.epoch.as_str()))
            .arg(since.map_or(0, |since| since.seq))
            .arg(if with_retained { "1" } else { "0" })
            .arg(self.ttl_ms());
        let mut connection = self.commands.clone();
        let reply: Vec<String> = invocation.invoke_async(&mut connection).await?;
        Snapshot::parse(channel, reply).ok_or_else(malformed_reply)
    }

    /// The publish script's call for `request`.
    fn publish_invocation(&self, request: &PublishRequest) -> ScriptInvocation<'static> {
        let names = self.channels().names(&request.channel);
        let (kind, body) = encode_payload(&request.payload);
        let raw = if is_ws4redis(&request.channel) {
            request.payload.raw_text()
        } else {
            Cow::Borrowed("")
        };
        let persist = if request.retain {
            self.retention.persist_for.as_secs()
        } else {
            0
        };
        let id_key = match &request.ack_id {
            Some(id) => names.publish_id(id),
            None => names.seq.clone(),
        };
        let origin = request
            .origin
            .as_ref()
            .map_or_else(|| "-".to_owned(), |mailbox| mailbox.id().to_string());
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(&names.seq)
            .key(&names.epoch)
            .key(&names.stream)
            .key(&id_key)
            .key(&names.live)
            .key(&names.raw)
            .arg(body)
            .arg(kind)
            .arg(origin)
            .arg(raw.as_ref())
            .arg(persist)
            .arg(self.retention.history_size)
            .arg(self.ttl_ms())
            .arg(self.retention.dedup_window.as_secs().max(1))
            .arg(fresh_epoch())
            .arg(if request.ack_id.is_some() { "1" } else { "0" });
        invocation
    }

    /// Publishes `requests` in one pipeline, in their order.
    async fn publish_batch(
        &self,
        requests: &[PublishRequest],
    ) -> redis::RedisResult<Vec<Published>> {
        let invocations: Vec<_> = requests
            .iter()
            .map(|request| self.publish_invocation(request))
            .collect();
        let mut pipeline = redis::pipe();
        for invocation in &invocations {
            pipeline.invoke_script(invocation);
        }
        let mut connection = self.commands.clone();
        let replies: Vec<Vec<String>> = match pipeline.query_async(&mut connection).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // Redis lost its scripts (it restarted): none of them ran.
                PUBLISH.prepare_invoke().load_async(&mut connection).await?;
                pipeline.query_async(&mut connection).await?
            }
            result => result?,
        };
        replies
            .iter()
            .map(|reply| Published::parse(reply).ok_or_else(malformed_reply))
            .collect()
    }
}

fn malformed_reply() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from a heartwire script",
    ))
}

fn fresh_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Channels shared by every node on one Redis. See the [module docs](self).
pub struct RedisBroker {
    shared: Arc<Shared>,
    subscriber: mpsc::UnboundedSender<Command>,
    /// The publish queue, behind each connection's joins.
    held: Arc<Held>,
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
        let shared = Arc::new(Shared {
            client,
            commands,
            channels: Mutex::new(Channels::new(config.prefix.clone())),
            up: watch::Sender::new(false),
            reconnects: AtomicU64::new(0),
            retention,
            node: format!("{:016x}", rand::random::<u64>()),
            node_key_prefix: node_key_prefix(&config.prefix),
        });
        let (subscriber, commands) = mpsc::unbounded_channel();
        tokio::spawn(subscriber::run(shared.clone(), commands));
        let (publisher, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish_in_order(shared.clone(), queue));
        tokio::spawn(keep_history_alive(Arc::downgrade(&shared)));
        tokio::spawn(presence::keep_node_alive(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            subscriber,
            held: Held::new(publisher),
        })
    }
}

/// Runs this node's publishes in order, in pipelines of up to [`PUBLISH_BATCH`],
/// answering each origin.
async fn publish_in_order(shared: Arc<Shared>, mut queue: mpsc::Receiver<PublishRequest>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        if !shared.is_up() {
            // Redis went away while these waited: answer now rather than time out.
            for request in batch.drain(..) {
                if let Some(origin) = &request.origin {
                    refuse(origin, request.ack_id, UNREACHABLE);
                }
            }
            continue;
        }
        match shared.publish_batch(&batch).await {
            Ok(published) => {
                for (request, published) in batch.drain(..).zip(published) {
                    if let (Some(origin), Some(id)) = (request.origin, request.ack_id) {
                        origin.deliver(Outbound::Ack {
                            id,
                            seq: published.seq,
                            duplicate: published.duplicate,
                        });
                    }
                }
            }
            Err(err) => {
                tracing::warn!(%err, publishes = batch.len(), "publishing to Redis failed");
                let reason = format!(
                    "Redis failed the publish ({err}); it may not have been published: send it again with its id, and it is published once"
                );
                for request in batch.drain(..) {
                    if let Some(origin) = &request.origin {
                        refuse(origin, request.ack_id, &reason);
                    }
                }
            }
        }
    }
}

/// Why a publish is refused while Redis is away.
const UNREACHABLE: &str = "Redis is unreachable; nothing was published, send it again";

fn refuse(origin: &Mailbox, id: Option<String>, reason: &str) {
    origin.deliver(Outbound::Error {
        code: ErrorCode::Unavailable,
        reason: reason.to_owned(),
        id,
    });
}

/// Waits for the next tick at which Redis is up, for the periodic jobs of a broker;
/// `None` once the broker is gone.
async fn next_tick_while_up(
    tick: &mut tokio::time::Interval,
    shared: &std::sync::Weak<Shared>,
) -> Option<Arc<Shared>> {
    loop {
        tick.tick().await;
        let shared = shared.upgrade()?;
        if shared.is_up() {
            return Some(shared);
        }
    }
}

/// Refreshes the history's expiry of every channel with local subscribers, so that
/// a quiet channel keeps its epoch while anyone listens.
async fn keep_history_alive(shared: std::sync::Weak<Shared>) {
    let every = {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        Duration::from_millis(shared.ttl_ms() / 4)
    };
    let mut tick = tokio::time::interval(every);
    while let Some(shared) = next_tick_while_up(&mut tick, &shared).await {
        let in_use = shared.channels().in_use();
        for names in in_use {
            let mut invocation = TOUCH.prepare_invoke();
            invocation
                .key(&names.seq)
                .key(&names.epoch)
                .key(&names.stream)
                .arg(shared.ttl_ms());
            let mut connection = shared.commands.clone();
            if let Err(err) = invocation.invoke_async::<i64>(&mut connection).await {
                tracing::debug!(%err, "cannot refresh a channel's history");
            }
        }
    }
}

/// Joins `request.subscriber` to its channel: Redis subscription first, then the
/// snapshot. Waits for Redis while it is away; ends early when the subscriber leaves.
async fn join(
    shared: Arc<Shared>,
    subscriber: mpsc::UnboundedSender<Command>,
    request: SubscribeRequest,
    joining: Joining,
) {
    let Joining {
        pubsub,
        resume_from,
    } = joining;
    let SubscribeRequest {
        channel,
        subscriber: mailbox,
        with_retained,
        since,
        presence: _,
    } = request;
    let names = shared.channels().names(&channel);
    while shared.channels().is_joining(&channel, mailbox.id()) {
        let (done, confirmed) = oneshot::channel();
        if subscriber
            .send(Command::Subscribe(pubsub.clone(), done))
            .is_err()
        {
            return;
        }
        if confirmed.await.is_err() {
            shared.wait_up().await;
            continue;
        }
        let from = since.as_ref().or(resume_from.as_ref());
        match shared.snapshot(&channel, &names, from, with_retained).await {
            Ok(mut snapshot) => {
                if since.is_none() && snapshot.recovered == Some(true) {
                    // The position was this node's, not asked by the client.
                    snapshot.recovered = None;
                }
                let member = shared.channels().finish_join(&channel, &mailbox, snapshot);
                if member {
                    announce_member(&shared, &channel, &names, mailbox.id()).await;
                }
                return;
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot read the channel; retrying");
                tokio::time::sleep(PROBE_EVERY).await;
                shared.wait_up().await;
            }
        }
    }
}

/// Adds a new member in Redis; takes it out again if it left meanwhile.
async fn announce_member(shared: &Shared, channel: &str, names: &ChannelNames, id: ConnectionId) {
    if let Err(err) = shared.add_member(names, id).await {
        // The next reconnect adds this node's members again.
        tracing::warn!(%err, %channel, "cannot add a member");
        return;
    }
    if !shared.channels().is_member(channel, id) {
        if let Err(err) = shared.remove_member(names, id).await {
            tracing::warn!(%err, %channel, "cannot remove a member");
        }
    }
}

/// Catches `channel` up after reconnect `generation`, from `position`. Retries while
/// Redis fails; gives way to a newer reconnect, or ends when the channel has no
/// subscriber left.
async fn resync(
    shared: Arc<Shared>,
    channel: Arc<str>,
    generation: u64,
    position: Option<Position>,
) {
    let names = shared.channels().names(&channel);
    loop {
        {
            let channels = shared.channels();
            if channels.generation() != generation || !channels.contains(&channel) {
                return;
            }
        }
        match shared
            .snapshot(&channel, &names, position.as_ref(), false)
            .await
        {
            Ok(snapshot) => {
                let recovered = snapshot.recovered;
                let missed = snapshot.missed.len();
                tracing::info!(%channel, ?recovered, missed, "channel resynced after reconnect");
                shared
                    .channels()
                    .finish_resync(&channel, generation, snapshot);
                return;
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot resync the channel yet");
                tokio::time::sleep(PROBE_EVERY).await;
                shared.wait_up().await;
            }
        }
    }
}

impl Broker for RedisBroker {
    fn subscribe(&self, request: SubscribeRequest) {
        let joining = self.shared.channels().join(
            &request.channel,
            request.subscriber.id(),
            request.presence,
        );
        let guard = self.held.join_started(request.subscriber.id());
        let (shared, subscriber) = (self.shared.clone(), self.subscriber.clone());
        tokio::spawn(async move {
            join(shared, subscriber, request, joining).await;
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
        self.held.publish(request);
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth {
            up: self.shared.is_up(),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }
}
