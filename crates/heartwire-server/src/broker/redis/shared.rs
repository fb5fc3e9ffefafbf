//! What every task of the Redis broker shares: the connections to Redis, this node's
//! channels, whether Redis is up, and the running of each command.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use heartwire_core::protocol::Position;
use parking_lot::{Mutex, MutexGuard};
use redis::aio::{ConnectionManager, PubSub};
use redis::{ErrorKind, ServerErrorKind};
use tokio::sync::watch;

use super::channels::Channels;
use super::commands;
use super::names::{ChannelNames, NodeNames};
use super::replies::{Published, Snapshot, parse_members};
use crate::broker::contract::PublishRequest;
use crate::config::Retention;
use crate::id::{ConnectionId, random_id};
use crate::mailbox::Member;

/// How often Redis is probed (the pub/sub connection, this node's liveness key), how
/// long a probe may take, and how long a step that failed waits before it is tried
/// again.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What every task of the broker shares.
pub(super) struct Shared {
    client: redis::Client,
    commands: ConnectionManager,
    channels: Mutex<Channels>,
    up: watch::Sender<bool>,
    reconnects: AtomicU64,
    retention: Retention,
    node: NodeNames,
}

impl Shared {
    /// The state of a node that has not reached Redis yet; `prefix` is
    /// `WS4REDIS_PREFIX`.
    pub(super) fn new(
        client: redis::Client,
        commands: ConnectionManager,
        prefix: &str,
        retention: Retention,
    ) -> Self {
        Self {
            client,
            commands,
            channels: Mutex::new(Channels::new(prefix.to_owned())),
            up: watch::Sender::new(false),
            reconnects: AtomicU64::new(0),
            retention,
            node: NodeNames::new(prefix, random_id()),
        }
    }

    /// This node's channels.
    pub(super) fn channels(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock()
    }

    /// This node's id among the nodes.
    pub(super) fn node_id(&self) -> &str {
        &self.node.id
    }

    /// Whether Redis is reachable.
    pub(super) fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Marks Redis reachable or not.
    pub(super) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Waits until Redis is reachable.
    pub(super) async fn wait_up(&self) {
        let mut up = self.up.subscribe();
        let _ = up.wait_for(|up| *up).await;
    }

    /// Counts one reconnect to Redis.
    pub(super) fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Times the link to Redis was lost and made again.
    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// How long a channel's history outlives its last use.
    pub(super) fn history_ttl(&self) -> Duration {
        Duration::from_millis(commands::history_ttl_ms(&self.retention))
    }

    /// Opens a new pub/sub connection.
    pub(super) async fn open_pubsub(&self) -> redis::RedisResult<PubSub> {
        self.client.get_async_pubsub().await
    }

    /// PINGs on the command connection.
    pub(super) async fn ping_commands(&self) -> redis::RedisResult<()> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.commands.clone())
            .await
            .map(drop)
    }

    /// Reads the channel named by `names`: see [`commands::snapshot`].
    pub(super) async fn snapshot(
        &self,
        channel: &Arc<str>,
        names: &ChannelNames,
        since: Option<&Position>,
        with_retained: bool,
    ) -> redis::RedisResult<Snapshot> {
        let call = commands::snapshot(names, since, with_retained, &self.retention, random_id());
        let reply: Vec<String> = call
            .invocation()
            .invoke_async(&mut self.commands.clone())
            .await?;
        Snapshot::parse(channel, reply).ok_or_else(malformed_reply)
    }

    /// Publishes `requests` in one pipeline, in their order.
    pub(super) async fn publish_batch(
        &self,
        requests: &[PublishRequest],
    ) -> redis::RedisResult<Vec<Published>> {
        let calls: Vec<_> = requests
            .iter()
            .map(|request| {
                let names = self.channels().names(&request.channel);
                commands::publish(&names, request, &self.retention, random_id())
            })
            .collect();
        let mut pipeline = redis::pipe();
        for call in &calls {
            pipeline.invoke_script(&call.invocation());
        }
        let mut connection = self.commands.clone();
        let replies: Vec<Vec<String>> = match pipeline.query_async(&mut connection).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // Redis lost its scripts (it restarted): none of them ran.
                if let Some(call) = calls.first() {
                    call.script().load_async(&mut connection).await?;
                }
                pipeline.query_async(&mut connection).await?
            }
            result => result?,
        };
        replies
            .iter()
            .map(|reply| Published::parse(reply).ok_or_else(malformed_reply))
            .collect()
    }

    /// Keeps the history of the channel named by `names` for another history ttl.
    pub(super) async fn touch(&self, names: &ChannelNames) -> redis::RedisResult<()> {
        commands::touch(names, &self.retention)
            .invocation()
            .invoke_async::<i64>(&mut self.commands.clone())
            .await
            .map(drop)
    }

    /// Adds `member` to the members of the channel named by `names`.
    pub(super) async fn add_member(
        &self,
        names: &ChannelNames,
        member: &Member,
    ) -> redis::RedisResult<()> {
        commands::add_member(names, member, &self.node, &self.retention)
            .invocation()
            .invoke_async::<i64>(&mut self.commands.clone())
            .await
            .map(drop)
    }

    /// Removes `session` from the members of the channel named by `names`.
    pub(super) async fn remove_member(
        &self,
        names: &ChannelNames,
        session: ConnectionId,
    ) -> redis::RedisResult<()> {
        commands::remove_member(names, session)
            .invocation()
            .invoke_async::<i64>(&mut self.commands.clone())
            .await
            .map(drop)
    }

    /// The live members of the channel named by `names`, sorted, after removing
    /// those of dead nodes.
    pub(super) async fn members(&self, names: &ChannelNames) -> redis::RedisResult<Vec<Member>> {
        let reply: Vec<String> = commands::live_members(names, &self.node, &self.retention)
            .invocation()
            .invoke_async(&mut self.commands.clone())
            .await?;
        let mut members = parse_members(&reply).ok_or_else(malformed_reply)?;
        members.sort_unstable();
        Ok(members)
    }

    /// Proves this node alive for another [`NODE_TTL`](commands::NODE_TTL).
    pub(super) async fn refresh_node(&self) -> redis::RedisResult<()> {
        commands::refresh_node(&self.node)
            .query_async::<()>(&mut self.commands.clone())
            .await
    }
}

fn malformed_reply() -> redis::RedisError {
    redis::RedisError::from((ErrorKind::Parse, "unexpected reply from a heartwire script"))
}
