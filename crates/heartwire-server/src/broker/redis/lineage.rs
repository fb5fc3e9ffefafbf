//! A channel's history across fail-overs: reading its snapshot, and judging a channel
//! whose epoch stamp names another replication history (see
//! [`scripts`](super::scripts)).
//!
//! A stamp that is the current replication id of a live master (and that no master
//! was promoted from) means the channel's keys were moved intact from that master
//! (a resharding): the channel is adopted
//! with [`RESTAMP`](super::scripts::RESTAMP), and the new stamp must reach this
//! master's replicas before anything is published under it, so that a fail-over right
//! after cannot bring the old stamp back with messages missing. Any other stamp
//! names a history that no live master continues: what was published in it may be
//! gone, so the channel gets a new epoch with [`RENEW`](super::scripts::RENEW).

use std::sync::Arc;

use heartwire_core::protocol::Position;
use redis::ErrorKind;

use super::commands;
use super::names::ChannelNames;
use super::replies::{Checked, Snapshot};
use super::shared::{PROBE_EVERY, Shared};
use crate::broker::contract::SubscribeRequest;
use crate::id::random_id;

/// How many times a call stopped by a stamp is judged and tried again before it
/// fails.
pub(super) const STALE_ROUNDS: usize = 3;

/// Reads `channel`: its epoch and latest `seq`, the messages after `since`, and its
/// retained value when `with_retained`.
pub(super) async fn snapshot(
    shared: &Shared,
    channel: &Arc<str>,
    since: Option<&Position>,
    with_retained: bool,
) -> redis::RedisResult<Snapshot> {
    let names = shared.names(channel);
    let shard = shared.shard_for(channel);
    let cluster = shared.is_cluster();
    for _ in 0..STALE_ROUNDS {
        let call = commands::snapshot(
            &names,
            since,
            with_retained,
            shared.retention(),
            random_id(),
            cluster,
        );
        let reply: Vec<String> = shard.invoke(&call).await?;
        match Snapshot::parse(channel, reply).ok_or_else(malformed_reply)? {
            Checked::Done(mut snapshot) => {
                if snapshot.renewed {
                    shared.count_renewed(channel);
                }
                if with_retained && cluster {
                    // The raw key hashes to a slot of its own.
                    snapshot.retained = shard.query(&commands::read_retained(&names)).await?;
                }
                return Ok(snapshot);
            }
            Checked::Stale(stamp) => judge(shared, channel, &names, &stamp).await?,
        }
    }
    Err(still_stale())
}

/// [`snapshot`] for a subscriber at `since`. When `since` is of another epoch (Redis
/// lost its data, a fail-over cut the history, the channel was forgotten) the old
/// epoch's messages are gone, but the new epoch's are all new to the subscriber: when
/// the stream still holds them from the first, the snapshot carries them all, with
/// `seq` 0 and `recovered: false`, so nothing published in the new epoch is skipped.
pub(super) async fn resume(
    shared: &Shared,
    channel: &Arc<str>,
    since: Option<&Position>,
    with_retained: bool,
) -> redis::RedisResult<Snapshot> {
    let mut snapshot = snapshot(shared, channel, since, with_retained).await?;
    let other_epoch = since.is_some_and(|since| {
        *since.epoch != *snapshot.epoch && !SubscribeRequest::is_unreplayable(since)
    });
    if other_epoch && snapshot.recovered == Some(false) {
        let start = Position {
            epoch: snapshot.epoch.to_string(),
            seq: 0,
        };
        let mut whole = self::snapshot(shared, channel, Some(&start), false).await?;
        if whole.recovered == Some(true) && whole.epoch == snapshot.epoch {
            whole.seq = 0;
            whole.recovered = Some(false);
            whole.retained = snapshot.retained.take();
            whole.renewed |= snapshot.renewed;
            snapshot = whole;
        }
    }
    Ok(snapshot)
}

/// Decides what a channel stamped with another history becomes: adopted when a
/// live master continues that history (its keys were moved here intact), else
/// given a new epoch.
pub(super) async fn judge(
    shared: &Shared,
    channel: &str,
    names: &ChannelNames,
    stamp: &str,
) -> redis::RedisResult<()> {
    let shard = shared.shard_for(channel);
    let masters = shard.master_histories().await?;
    // A history some master was promoted from may have lost its tail, even when its
    // old master still answers as if it led.
    let continued = masters.iter().any(|(own, _)| own == stamp)
        && !masters.iter().any(|(_, before)| before == stamp);
    if continued && adopt(shared, channel, names, stamp).await? {
        tracing::info!(%channel, "the channel's keys were moved here intact; adopted");
        return Ok(());
    }
    let renewed: i64 = shard
        .invoke(&commands::renew(
            names,
            stamp,
            shared.retention(),
            random_id(),
        ))
        .await?;
    if renewed == 1 {
        shared.count_renewed(channel);
    }
    Ok(())
}

/// Makes this master's history the channel's stamp, and waits until its replicas
/// hold it. Returns false when they did not confirm in time: the channel must then
/// get a new epoch.
async fn adopt(
    shared: &Shared,
    channel: &str,
    names: &ChannelNames,
    stamp: &str,
) -> redis::RedisResult<bool> {
    let shard = shared.shard_for(channel);
    let replicas: i64 = shard.invoke(&commands::restamp(names, stamp)).await?;
    let Ok(replicas) = u32::try_from(replicas) else {
        // Another node judged it first.
        return Ok(true);
    };
    if replicas == 0 {
        return Ok(true);
    }
    // WAIT goes with a keyed call so that a cluster sends it to this channel's node.
    let touch = commands::touch(names, shared.retention());
    let wait = commands::wait_for_replicas(replicas, PROBE_EVERY);
    let replies = shard.pipeline(&[touch], Some(&wait)).await?;
    let acked = match replies.last() {
        Some(redis::Value::Int(acked)) => *acked,
        _ => 0,
    };
    Ok(acked >= i64::from(replicas))
}

fn malformed_reply() -> redis::RedisError {
    redis::RedisError::from((ErrorKind::Parse, "unexpected reply from a heartwire script"))
}

fn still_stale() -> redis::RedisError {
    redis::RedisError::from((
        ErrorKind::Io,
        "the channel's replication history is still being judged; try again",
    ))
}
