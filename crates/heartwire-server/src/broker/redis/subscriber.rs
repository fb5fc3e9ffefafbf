//! One pub/sub link: a RESP3 connection to one Redis master that carries the
//! subscriptions of the channels placed on it (never one per connection), hands
//! every message to [`Channels`](super::channels::Channels), and survives Redis.
//!
//! Messages arrive as pushes in the order the server sent them, so a channel's
//! envelope and its raw django-websocket-redis copy (published by the same script on
//! the same master) come in order. A PING after [`PROBE_EVERY`] of silence finds a
//! master that stopped answering without closing the connection; pushed messages
//! count as an answer, so a busy link is never probed.
//!
//! A link to a shard's master (one server, or the master Sentinel names) reconnects
//! with full-jitter backoff and keeps its channels: the node is marked down
//! meanwhile (`/healthz` says "degraded", publishes are refused with
//! `unavailable`), and once back it subscribes to every channel again and resyncs
//! each from the stream (see [`super::channels`]). A link to a cluster node ends when
//! it is lost, when the node is no longer a master, or when the node drops
//! subscriptions because their slot moved: its channels are placed again, on the
//! node the cluster now names (see [`placement`](super::placement)), and resynced.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heartwire_core::backoff::{Backoff, BackoffConfig, Delay};
use rand::SeedableRng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::channels::PubSubName;
use super::connection::COMMAND_TIMEOUT;
use super::links::{Command, LinkKey, LinkStatus};
use super::presence::rejoin;
use super::resync::spawn_resync;
use super::shared::{PROBE_EVERY, Shared};

/// The reconnect policy towards Redis: full jitter from 100 ms up to 5 s.
fn backoff() -> Backoff {
    Backoff::new(BackoffConfig {
        delay: Delay::Exponential {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        },
        ..BackoffConfig::default()
    })
}

/// A connected link.
struct Connected {
    connection: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    master: String,
}

/// Runs the link to `key` until the broker is dropped (or, for a cluster node,
/// until the link is lost).
pub(super) async fn run(
    shared: Arc<Shared>,
    key: LinkKey,
    status: Arc<LinkStatus>,
    mut orders: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = backoff();
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let mut was_connected = false;
    loop {
        let connected = tokio::select! {
            connected = tokio::time::timeout(PROBE_EVERY * 2, connect(&shared, &key)) => connected,
            () = shared.closed().cancelled() => return,
        };
        let connected = match connected {
            Ok(Ok(connected)) => connected,
            Ok(Err(err)) => {
                tracing::warn!(%err, link = %key, "cannot reach Redis");
                if let LinkKey::Node(_) = key {
                    return end_node_link(&shared, &key, &status, orders, false);
                }
                let delay = backoff
                    .next_delay(Instant::now(), &mut rng)
                    .unwrap_or(PROBE_EVERY);
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(_) => {
                tracing::warn!(link = %key, "Redis did not answer the connection in time");
                if let LinkKey::Node(_) = key {
                    return end_node_link(&shared, &key, &status, orders, false);
                }
                continue;
            }
        };
        if let LinkKey::Shard(index) = key {
            if !commands_answer(&shared, index).await {
                continue;
            }
        }
        backoff.handle_connected(Instant::now());
        let Connected {
            mut connection,
            mut pushes,
            master,
        } = connected;
        let mut link = Link {
            shared: &shared,
            key: &key,
            subscribed: HashSet::new(),
            unsubscribing: HashSet::new(),
            last_heard: Instant::now(),
        };
        // Resyncs start before the subscriptions: what comes meanwhile waits. Each
        // runs at once; it asks this link for the channel's subscriptions, which it
        // answers once it has made them, or, if the link is lost, places the
        // channel again.
        let channels = shared.channels().on_link(&key);
        for channel in &channels {
            let resync = shared.channels().begin_resync(channel, true);
            if let Some(resync) = resync {
                spawn_resync(&shared, resync);
            }
        }
        let mut lost = None;
        for channel in &channels {
            match link.subscribe(channel, &mut connection, &mut pushes).await {
                Ok(_) => {}
                Err(ended) => {
                    lost = Some(ended);
                    break;
                }
            }
        }
        if let Some(ended) = lost {
            tracing::warn!(reason = %ended, link = %key, "lost the link while subscribing");
            if let LinkKey::Node(_) = key {
                return end_node_link(&shared, &key, &status, orders, false);
            }
            continue;
        }
        if was_connected {
            status.count_reconnect();
            tracing::info!(
                channels = channels.len(),
                link = %key,
                "reconnected to Redis; resyncing channels"
            );
        }
        was_connected = true;
        tokio::spawn(rejoin(shared.clone(), key.clone()));
        status.set_up(true, Some(master));
        let ended = link.serve(&mut connection, &mut pushes, &mut orders).await;
        status.set_up(false, None);
        backoff.handle_disconnected(Instant::now());
        match ended {
            Ended::Lost(reason) => {
                tracing::warn!(%reason, link = %key, "lost the Redis pub/sub link");
                if let LinkKey::Node(_) = key {
                    return end_node_link(&shared, &key, &status, orders, true);
                }
            }
            Ended::Closed => return,
        }
    }
}

/// Connects to what `key` names: a RESP3 connection whose pushes come on a queue.
/// A cluster node must still be a master.
async fn connect(shared: &Shared, key: &LinkKey) -> redis::RedisResult<Connected> {
    let (client, master) = match key {
        LinkKey::Shard(index) => shared.shards()[*index].master().await?,
        LinkKey::Node(address) => (shared.shards()[0].node_client(address)?, address.clone()),
    };
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let (sender, pushes) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_push_sender(sender)
        .set_connection_timeout(Some(PROBE_EVERY * 2))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    if let LinkKey::Node(_) = key {
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
        let is_master = matches!(role.first(), Some(Value::BulkString(role)) if role == b"master")
            || matches!(role.first(), Some(Value::SimpleString(role)) if role == "master");
        if !is_master {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the node is no longer a master",
            )));
        }
    }
    Ok(Connected {
        connection,
        pushes,
        master,
    })
}

/// Whether the command connection of shard `index` answers a PING: it may still
/// hold a socket to the Redis that went away, and finds out (and reconnects) on its
/// first command.
async fn commands_answer(shared: &Shared, index: usize) -> bool {
    let command = redis::cmd("PING");
    for _ in 0..3 {
        let ping = shared.shards()[index].query::<String>(&command);
        match tokio::time::timeout(PROBE_EVERY, ping).await {
            Ok(Ok(_)) => return true,
            Ok(Err(err)) => tracing::debug!(%err, "command connection not back yet"),
            Err(_) => tracing::debug!("command connection did not answer in time"),
        }
    }
    false
}

/// A lost cluster-node link ends: its channels are placed again (on the node the
/// cluster names now) and resynced; orders still queued are dropped, so whoever
/// waits on them places its channel again.
fn end_node_link(
    shared: &Arc<Shared>,
    key: &LinkKey,
    status: &Arc<LinkStatus>,
    orders: mpsc::UnboundedReceiver<Command>,
    was_up: bool,
) {
    drop(orders);
    shared.link_ended(key, status);
    if was_up {
        shared.count_lost_node();
    }
    let channels = shared.channels().on_link(key);
    for channel in channels {
        let resync = {
            let mut all = shared.channels();
            all.unplace(&channel, key);
            all.begin_resync(&channel, true)
        };
        if let Some(resync) = resync {
            shared.count_move();
            spawn_resync(shared, resync);
        }
    }
}

/// Why a link stopped serving.
enum Ended {
    /// The connection is gone, or no longer to be trusted.
    Lost(String),
    /// The broker was dropped.
    Closed,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost(reason) => f.write_str(reason),
            Self::Closed => f.write_str("the broker was dropped"),
        }
    }
}

/// A link's state while connected.
struct Link<'a> {
    shared: &'a Arc<Shared>,
    key: &'a LinkKey,
    /// The Redis channels subscribed on this connection.
    subscribed: HashSet<String>,
    /// Redis channels this link unsubscribed from, whose confirmation (a push too)
    /// is still to come.
    unsubscribing: HashSet<String>,
    last_heard: Instant,
}

impl Link<'_> {
    async fn serve(
        &mut self,
        connection: &mut MultiplexedConnection,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
        orders: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let mut probe = tokio::time::interval(PROBE_EVERY);
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else {
                        return Ended::Lost("the connection closed".into());
                    };
                    if let Err(ended) = self.on_push(push) {
                        return ended;
                    }
                }
                order = orders.recv() => match order {
                    None => return Ended::Closed,
                    Some(Command::Subscribe(channel, done)) => {
                        match self.subscribe(&channel, connection, pushes).await {
                            Ok(placed) => { let _ = done.send(placed); }
                            Err(ended) => return ended,
                        }
                    }
                    Some(Command::Unsubscribe(channel, names)) => {
                        if let Err(ended) = self.unsubscribe(&channel, names, connection, pushes).await {
                            return ended;
                        }
                    }
                },
                _ = probe.tick() => {
                    // Pushed messages prove the connection alive: probe only after silence.
                    if self.last_heard.elapsed() < PROBE_EVERY {
                        continue;
                    }
                    let ping = tokio::time::timeout(
                        PROBE_EVERY,
                        send::<Value>(connection, redis::cmd("PING")),
                    );
                    match self.reading_meanwhile(ping, pushes).await {
                        Ok(Ok(Ok(_))) => self.last_heard = Instant::now(),
                        Ok(Ok(Err(err))) => return Ended::Lost(err.to_string()),
                        Ok(Err(_)) => return Ended::Lost("Redis did not answer a PING in time".into()),
                        Err(ended) => return ended,
                    }
                }
                () = self.shared.closed().cancelled() => return Ended::Closed,
            }
        }
    }

    /// Subscribes to what `channel` needs that is not in place yet, one Redis channel
    /// per command (a reply per channel). Returns whether the channel is in place
    /// here; a cluster node that refuses (the slot moved) leaves it to be placed
    /// again.
    async fn subscribe(
        &mut self,
        channel: &Arc<str>,
        connection: &mut MultiplexedConnection,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    ) -> Result<bool, Ended> {
        let missing: Vec<PubSubName> = {
            let channels = self.shared.channels();
            if !channels.is_on(channel, self.key) {
                return Ok(false);
            }
            let Some(names) = channels.subscriptions(channel) else {
                return Ok(false);
            };
            names
                .into_iter()
                .filter(|pubsub| !self.subscribed.contains(&pubsub.name))
                .collect()
        };
        let Some((first, rest)) = missing.split_first() else {
            return Ok(true);
        };
        // The live channel first, alone: a cluster node that does not hold its slot
        // refuses it, and then nothing of the channel is subscribed here.
        let request = send::<Value>(connection, subscribe_command(first));
        match self.reading_meanwhile(request, pushes).await? {
            Ok(_) => {}
            Err(err) if err.kind() == redis::ErrorKind::Io || err.is_timeout() => {
                return Err(Ended::Lost(err.to_string()));
            }
            Err(err) => {
                tracing::info!(%err, %channel, link = %self.key, "the node refused the channel; placing it again");
                self.shared.channels().unplace(channel, self.key);
                return Ok(false);
            }
        }
        self.subscribed.insert(first.name.clone());
        if !rest.is_empty() {
            let mut pipeline = redis::pipe();
            for pubsub in rest {
                pipeline.add_command(subscribe_command(pubsub));
            }
            let request = send_all(connection, pipeline);
            if let Err(err) = self.reading_meanwhile(request, pushes).await? {
                return Err(Ended::Lost(err.to_string()));
            }
            self.subscribed
                .extend(rest.iter().map(|pubsub| pubsub.name.clone()));
        }
        Ok(true)
    }

    /// Unsubscribes from `names`, unless `channel` came back meanwhile.
    async fn unsubscribe(
        &mut self,
        channel: &str,
        names: Vec<PubSubName>,
        connection: &mut MultiplexedConnection,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    ) -> Result<(), Ended> {
        if self.shared.channels().contains(channel) {
            return Ok(());
        }
        let names: Vec<PubSubName> = names
            .into_iter()
            .filter(|pubsub| self.subscribed.remove(&pubsub.name))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for pubsub in &names {
            let verb = if pubsub.sharded {
                "SUNSUBSCRIBE"
            } else {
                "UNSUBSCRIBE"
            };
            pipeline.cmd(verb).arg(&pubsub.name);
            self.unsubscribing.insert(pubsub.name.clone());
        }
        let request = send_all(connection, pipeline);
        match self.reading_meanwhile(request, pushes).await? {
            Ok(_) => Ok(()),
            Err(err) => Err(Ended::Lost(err.to_string())),
        }
    }

    /// Handles one push: a message is delivered; the loss of the connection, or a
    /// subscription the server dropped by itself (its slot moved away), ends the
    /// link, whose replies can no longer be matched to its requests.
    fn on_push(&mut self, push: PushInfo) -> Result<(), Ended> {
        self.last_heard = Instant::now();
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = push.data.into_iter();
                let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
                    return Ok(());
                };
                let (Some(channel), Some(payload)) = (text(channel), text(payload)) else {
                    return Ok(());
                };
                let resync = self.shared.channels().on_pubsub(&channel, payload);
                if let Some(resync) = resync {
                    tracing::info!(channel = %resync.channel, link = %self.key, "a live message does not follow the last one; resyncing");
                    spawn_resync(self.shared, resync);
                }
                Ok(())
            }
            PushKind::Disconnection => Err(Ended::Lost("the connection closed".into())),
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                let Some(name) = push.data.into_iter().next().and_then(text) else {
                    return Ok(());
                };
                if self.unsubscribing.remove(&name) || !self.subscribed.contains(&name) {
                    return Ok(());
                }
                Err(Ended::Lost(format!(
                    "Redis dropped the subscription to {name} (its slot moved)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Awaits a request on the link while still handling what Redis pushes, so a
    /// flood of messages never holds up the node's view of its channels.
    async fn reading_meanwhile<T>(
        &mut self,
        request: impl Future<Output = T>,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    ) -> Result<T, Ended> {
        let mut request = std::pin::pin!(request);
        loop {
            tokio::select! {
                reply = &mut request => return Ok(reply),
                push = pushes.recv() => match push {
                    Some(push) => self.on_push(push)?,
                    None => return Err(Ended::Lost("the connection closed".into())),
                },
            }
        }
    }
}

/// Sends `command` on the link's connection.
fn send<T: redis::FromRedisValue>(
    connection: &MultiplexedConnection,
    command: redis::Cmd,
) -> impl Future<Output = redis::RedisResult<T>> + use<T> {
    let mut connection = connection.clone();
    async move { command.query_async(&mut connection).await }
}

/// Sends `pipeline` on the link's connection.
fn send_all(
    connection: &MultiplexedConnection,
    pipeline: redis::Pipeline,
) -> impl Future<Output = redis::RedisResult<Vec<Value>>> {
    let mut connection = connection.clone();
    async move { pipeline.query_async(&mut connection).await }
}

/// The command that subscribes to `pubsub`.
fn subscribe_command(pubsub: &PubSubName) -> redis::Cmd {
    let verb = if pubsub.sharded {
        "SSUBSCRIBE"
    } else {
        "SUBSCRIBE"
    };
    let mut command = redis::cmd(verb);
    command.arg(&pubsub.name);
    command
}

/// A push's text field.
fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(
            String::from_utf8(bytes)
                .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned()),
        ),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}
