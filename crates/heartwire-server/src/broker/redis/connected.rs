//! A pub/sub link while it is connected: the Redis channels subscribed on its
//! connection, the pushes that come on it (messages handed to
//! [`Channels`](super::channels::Channels), a lost connection, a subscription the
//! server dropped), the orders of the node, and the PING after [`PROBE_EVERY`] of
//! silence. Its task, which connects and reconnects it, is
//! [`subscriber`](super::subscriber).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::channels::PubSubName;
use super::links::{Command, LinkKey};
use super::resync::spawn_resync;
use super::shared::{PROBE_EVERY, Shared};
use super::subscriptions::Subscriptions;

/// Why a link stopped serving.
pub(super) enum Ended {
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
pub(super) struct Link<'a> {
    shared: &'a Arc<Shared>,
    key: &'a LinkKey,
    /// The Redis channels of this connection.
    subscriptions: Subscriptions,
    last_heard: Instant,
}

impl<'a> Link<'a> {
    /// A link to `key` that has subscribed nothing yet.
    pub(super) fn new(shared: &'a Arc<Shared>, key: &'a LinkKey) -> Self {
        Self {
            shared,
            key,
            subscriptions: Subscriptions::default(),
            last_heard: Instant::now(),
        }
    }

    /// Serves pushes, orders and probes until the connection is lost or the broker
    /// dropped.
    pub(super) async fn serve(
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
    pub(super) async fn subscribe(
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
                .filter(|pubsub| !self.subscriptions.has(&pubsub.name))
                .collect()
        };
        let Some((first, rest)) = missing.split_first() else {
            return Ok(true);
        };
        // The live channel first, alone: a cluster node that does not hold its slot
        // refuses it, and then nothing of the channel is subscribed here.
        self.subscriptions.sending_subscribe(&first.name);
        let request = send::<Value>(connection, subscribe_command(first));
        match self.reading_meanwhile(request, pushes).await? {
            Ok(_) => {}
            Err(err) if err.kind() == redis::ErrorKind::Io || err.is_timeout() => {
                return Err(Ended::Lost(err.to_string()));
            }
            Err(err) => {
                tracing::info!(%err, %channel, link = %self.key, "the node refused the channel; placing it again");
                self.subscriptions.refused(&first.name);
                self.shared.channels().unplace(channel, self.key);
                return Ok(false);
            }
        }
        if !rest.is_empty() {
            let mut pipeline = redis::pipe();
            for pubsub in rest {
                self.subscriptions.sending_subscribe(&pubsub.name);
                pipeline.add_command(subscribe_command(pubsub));
            }
            let request = send_all(connection, pipeline);
            if let Err(err) = self.reading_meanwhile(request, pushes).await? {
                return Err(Ended::Lost(err.to_string()));
            }
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
            .filter(|pubsub| self.subscriptions.sending_unsubscribe(&pubsub.name))
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
                if !self.subscriptions.dropped(&name) {
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
