//! The Redis broker: several `heartwire serve` nodes share channels through Redis.
//!
//! - [`names`]: where a channel lives in Redis (django-websocket-redis conventions);
//! - [`scripts`]: the Lua scripts that sequence, store and fan out a message in one
//!   atomic step, and read a channel's snapshot;
//! - [`channels`]: this node's subscribers and the ordering rules (join, resync);
//! - [`subscriber`]: the node's one pub/sub connection, and its reconnects.
//!
//! `seq` comes from Redis (`INCR` in the publish script), never from a node, so every
//! node delivers a channel's messages in one order; the stream (`XADD … MAXLEN`) is the
//! history that resuming clients read from, on any node. Publishes go through one
//! queue per node, so one connection's publishes keep their order.

mod channels;
mod names;
mod scripts;
mod subscriber;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use heartwire_core::ErrorCode;
use heartwire_core::protocol::Position;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Broker, BrokerHealth, PublishRequest, Retention, SubscribeRequest};
use crate::Error;
use crate::server::mailbox::{ConnectionId, Mailbox, Outbound};
use channels::Channels;
use names::{ChannelNames, is_ws4redis};
use scripts::{PUBLISH, Published, SNAPSHOT, Snapshot, TOUCH, encode_payload};
use subscriber::{Command, PROBE_EVERY};

/// Publishes that may wait for Redis on one node before more are refused.
const PUBLISH_QUEUE: usize = 4096;

/// How long one Redis command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Attempts to resync a channel after Redis came back, [`PROBE_EVERY`] apart.
const RESYNC_ATTEMPTS: u32 = 10;

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

    async fn publish(&self, request: &PublishRequest) -> Result<Published, redis::RedisError> {
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
        let mut connection = self.commands.clone();
        let reply: Vec<String> = invocation.invoke_async(&mut connection).await?;
        Published::parse(&reply).ok_or_else(malformed_reply)
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
    publisher: mpsc::Sender<PublishRequest>,
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
        });
        let (subscriber, commands) = mpsc::unbounded_channel();
        tokio::spawn(subscriber::run(shared.clone(), commands));
        let (publisher, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish_in_order(shared.clone(), queue));
        tokio::spawn(keep_history_alive(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            subscriber,
            publisher,
        })
    }
}

/// Runs this node's publishes one after the other, answering each origin.
async fn publish_in_order(shared: Arc<Shared>, mut queue: mpsc::Receiver<PublishRequest>) {
    while let Some(request) = queue.recv().await {
        let result = shared.publish(&request).await;
        let (Some(origin), ack_id) = (&request.origin, request.ack_id) else {
            if let Err(err) = result {
                tracing::warn!(%err, channel = %request.channel, "publish failed");
            }
            continue;
        };
        match (result, ack_id) {
            (Ok(published), Some(id)) => {
                origin.deliver(Outbound::Ack {
                    id,
                    seq: published.seq,
                    duplicate: published.duplicate,
                });
            }
            (Ok(_), None) => {}
            (Err(err), id) => refuse(origin, id, &format!("Redis failed the publish: {err}")),
        }
    }
}

fn refuse(origin: &Mailbox, id: Option<String>, reason: &str) {
    origin.deliver(Outbound::Error {
        code: ErrorCode::Unavailable,
        reason: format!("{reason}; nothing was published, send it again"),
        id,
    });
}

/// Refreshes the history's expiry of every channel with local subscribers, so that
/// a quiet channel keeps its epoch while anyone listens.
async fn keep_history_alive(shared: std::sync::Weak<Shared>) {
    let every = {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        Duration::from_millis(shared.ttl_ms() / 3)
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.is_up() {
            continue;
        }
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
    pubsub: Vec<String>,
) {
    let SubscribeRequest {
        channel,
        subscriber: mailbox,
        with_retained,
        since,
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
        match shared
            .snapshot(&channel, &names, since.as_ref(), with_retained)
            .await
        {
            Ok(snapshot) => {
                shared.channels().finish_join(&channel, &mailbox, snapshot);
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

/// Catches `channel` up after Redis came back, from `position`.
async fn resync(shared: Arc<Shared>, channel: Arc<str>, position: Option<Position>) {
    let names = shared.channels().names(&channel);
    for _ in 0..RESYNC_ATTEMPTS {
        match shared
            .snapshot(&channel, &names, position.as_ref(), false)
            .await
        {
            Ok(snapshot) => {
                let recovered = snapshot.recovered;
                let missed = snapshot.missed.len();
                tracing::info!(%channel, ?recovered, missed, "channel resynced after reconnect");
                shared.channels().finish_resync(&channel, Some(snapshot));
                return;
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot resync the channel yet");
                tokio::time::sleep(PROBE_EVERY).await;
            }
        }
    }
    tracing::error!(%channel, "gave up resyncing; live messages resume without the missed ones");
    shared.channels().finish_resync(&channel, None);
}

impl Broker for RedisBroker {
    fn subscribe(&self, request: SubscribeRequest) {
        let pubsub = self
            .shared
            .channels()
            .join(&request.channel, request.subscriber.id());
        tokio::spawn(join(
            self.shared.clone(),
            self.subscriber.clone(),
            request,
            pubsub,
        ));
    }

    fn unsubscribe(&self, channel: &str, subscriber: ConnectionId) {
        let left = self.shared.channels().leave(channel, subscriber);
        if let Some(pubsub) = left {
            let _ = self
                .subscriber
                .send(Command::Unsubscribe(Arc::from(channel), pubsub));
        }
    }

    fn publish(&self, request: PublishRequest) {
        if !self.shared.is_up() {
            if let Some(origin) = &request.origin {
                refuse(origin, request.ack_id, "Redis is unreachable");
            }
            return;
        }
        if let Err(err) = self.publisher.try_send(request) {
            let request = err.into_inner();
            if let Some(origin) = &request.origin {
                refuse(origin, request.ack_id, "too many publishes wait for Redis");
            }
        }
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
