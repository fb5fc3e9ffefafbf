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

use std::sync::Arc;
use std::time::{Duration, Instant};

use heartwire_core::backoff::{Backoff, BackoffConfig, Delay};
use rand::SeedableRng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, Value};
use tokio::sync::mpsc;

use super::connected::{Ended, Link};
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
                status.set_unreachable();
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
                status.set_unreachable();
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
        let mut link = Link::new(&shared, &key);
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
            backoff.handle_disconnected(Instant::now());
            let delay = backoff
                .next_delay(Instant::now(), &mut rng)
                .unwrap_or(PROBE_EVERY);
            tokio::time::sleep(delay).await;
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
