//! This node's publish queue: publishes go to Redis in order, in pipelines, and each
//! origin hears how its publish went.
//!
//! One queue per node keeps one connection's publishes in their order. A batch of up
//! to [`PUBLISH_BATCH`] is split by where its channels live (a shard, and in a cluster
//! a slot, since a pipeline reaches one node) and the parts go out at once, each in
//! one pipeline; each part keeps the order of its publishes, so every channel's
//! publishes keep theirs. With `--redis-wait-replicas`, once the parts are done each
//! shard gets one `WAIT` (in a cluster, every master, and the fewest replicas count),
//! and the batch's publishes are acknowledged only if that many replicas hold them.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use heartwire_core::ErrorCode;
use redis::cluster_routing::Slot;
use tokio::sync::mpsc;

use super::commands;
use super::lineage::{STALE_ROUNDS, judge};
use super::names::is_ws4redis;
use super::replies::{Checked, Published};
use super::shared::Shared;
use crate::broker::contract::PublishRequest;
use crate::id::random_id;
use crate::mailbox::{Mailbox, Outbound};

/// Publishes that may wait for Redis on one node before more are refused.
pub(super) const PUBLISH_QUEUE: usize = 16_384;

/// Publishes sent to Redis in one batch at most.
const PUBLISH_BATCH: usize = 256;

/// Why a publish is refused while Redis is away.
pub(super) const UNREACHABLE: &str = "Redis is unreachable; nothing was published, send it again";

/// Tells `origin` that its publish (with `id`, if it had one) was refused.
pub(super) fn refuse(origin: &Mailbox, id: Option<String>, reason: &str) {
    origin.deliver(Outbound::Error {
        code: ErrorCode::Unavailable,
        reason: reason.to_owned(),
        id,
    });
}

/// How one publish went: published (or found a duplicate), or why not.
type Outcome = Result<Published, String>;

/// Runs this node's publishes in order, in batches of up to [`PUBLISH_BATCH`],
/// answering each origin.
pub(super) async fn publish_in_order(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<PublishRequest>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let outcomes = publish_batch(&shared, &batch).await;
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            let Some(origin) = request.origin else {
                continue;
            };
            match (outcome, request.ack_id) {
                (Ok(published), Some(id)) => {
                    origin.deliver(Outbound::Ack {
                        id,
                        seq: published.seq,
                        epoch: published.epoch,
                        duplicate: published.duplicate,
                    });
                }
                (Ok(_), None) => {}
                (Err(reason), id) => refuse(&origin, id, &reason),
            }
        }
    }
}

/// Where a publish goes: its shard, and in a cluster its slot.
type Route = (usize, Option<Slot>);

/// Publishes `batch`, each part of it at once; the outcomes come in its order.
async fn publish_batch(shared: &Shared, batch: &[PublishRequest]) -> Vec<Outcome> {
    let mut parts: HashMap<Route, Vec<usize>> = HashMap::new();
    for (index, request) in batch.iter().enumerate() {
        let shard = shared.shard_index(&request.channel);
        let slot = shared
            .is_cluster()
            .then(|| Slot::for_key(shared.names(&request.channel).seq));
        parts.entry((shard, slot)).or_default().push(index);
    }
    let mut outcomes: Vec<Outcome> = batch.iter().map(|_| Err(String::new())).collect();
    let done = join_all(
        parts
            .into_values()
            .map(|indices| publish_part(shared, batch, indices)),
    )
    .await;
    for (index, outcome) in done.into_iter().flatten() {
        outcomes[index] = outcome;
    }
    if let Some(wait) = shared.wait() {
        confirm(shared, batch, &mut outcomes, wait).await;
    }
    outcomes
}

/// Waits until `wait.replicas` replicas hold the batch's publishes, one `WAIT` per
/// shard that took some; the publishes of a shard whose replicas did not confirm
/// in time are answered with `unavailable` (they were published: sent again with
/// their id, they are acknowledged as duplicates).
async fn confirm(
    shared: &Shared,
    batch: &[PublishRequest],
    outcomes: &mut [Outcome],
    wait: super::topology::WaitReplicas,
) {
    let mut shards: Vec<usize> = batch
        .iter()
        .zip(outcomes.iter())
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(request, _)| shared.shard_index(&request.channel))
        .collect();
    shards.sort_unstable();
    shards.dedup();
    let command = commands::wait_for_replicas(wait.replicas, wait.timeout);
    let acked = join_all(shards.iter().map(|&index| {
        let command = &command;
        async move {
            let acked = shared.shards()[index].query::<i64>(command).await;
            (index, acked.unwrap_or(0))
        }
    }))
    .await;
    for (index, acked) in acked {
        if acked >= i64::from(wait.replicas) {
            continue;
        }
        let reason = format!(
            "published, but only {acked} of {} replicas confirmed it within {:?}: a Redis fail-over now could lose it; send it again with its id, and it is published once",
            wait.replicas, wait.timeout
        );
        for (request, outcome) in batch.iter().zip(outcomes.iter_mut()) {
            if outcome.is_ok() && shared.shard_index(&request.channel) == index {
                *outcome = Err(reason.clone());
            }
        }
    }
}

/// Publishes the requests of `batch` at `indices` (one shard, one slot) in one
/// pipeline, in order; judges the channels a stamp stopped, and sends those again.
async fn publish_part(
    shared: &Shared,
    batch: &[PublishRequest],
    mut indices: Vec<usize>,
) -> Vec<(usize, Outcome)> {
    let mut outcomes = Vec::with_capacity(indices.len());
    let channel = batch[indices[0]].channel.clone();
    if !shared.can_publish(&channel) {
        // Redis went away while these waited: answer now rather than time out.
        return indices
            .into_iter()
            .map(|index| (index, Err(UNREACHABLE.to_owned())))
            .collect();
    }
    let shard = shared.shard_for(&channel);
    let cluster = shared.is_cluster();
    for _ in 0..STALE_ROUNDS {
        let calls: Vec<_> = indices
            .iter()
            .map(|&index| {
                let request = &batch[index];
                let names = shared.names(&request.channel);
                commands::publish(
                    &names,
                    request,
                    shared.retention(),
                    shared.history_max_bytes(),
                    random_id(),
                    cluster,
                )
            })
            .collect();
        let replies = match shard.pipeline(&calls, None).await {
            Ok(replies) => replies,
            Err(err) => {
                tracing::warn!(%err, publishes = indices.len(), "publishing to Redis failed");
                let reason = format!(
                    "Redis failed the publish ({err}); it may not have been published: send it again with its id, and it is published once"
                );
                outcomes.extend(
                    indices
                        .into_iter()
                        .map(|index| (index, Err(reason.clone()))),
                );
                return outcomes;
            }
        };
        let mut stale: Vec<(usize, String)> = Vec::new();
        for (&index, reply) in indices.iter().zip(replies) {
            let parsed = redis::from_redis_value::<Vec<String>>(reply)
                .ok()
                .and_then(|reply| Published::parse(&reply));
            match parsed {
                Some(Checked::Done(published)) => {
                    if published.renewed {
                        shared.count_renewed(&batch[index].channel);
                    }
                    if !published.duplicate {
                        persist_raw(shared, &batch[index]).await;
                    }
                    outcomes.push((index, Ok(published)));
                }
                Some(Checked::Stale(stamp)) => stale.push((index, stamp)),
                None => outcomes.push((
                    index,
                    Err("unexpected reply from Redis to a publish".to_owned()),
                )),
            }
        }
        if stale.is_empty() {
            return outcomes;
        }
        let mut judged: Vec<&str> = Vec::new();
        for (index, stamp) in &stale {
            let channel = &batch[*index].channel;
            if judged.contains(&channel.as_ref()) {
                continue;
            }
            judged.push(channel);
            if let Err(err) = judge(shared, channel, &shared.names(channel), stamp).await {
                tracing::warn!(%err, %channel, "cannot judge the channel's history yet");
            }
        }
        indices = stale.into_iter().map(|(index, _)| index).collect();
    }
    let reason = "the channel's history was being judged after a Redis fail-over; nothing was published, send it again";
    outcomes.extend(
        indices
            .into_iter()
            .map(|index| (index, Err(reason.to_owned()))),
    );
    outcomes
}

/// Keeps a facility's last message where Django reads it. On one server the publish
/// script does it; in a cluster the raw key hashes to another slot, so it is set
/// here, after the publish.
async fn persist_raw(shared: &Shared, request: &PublishRequest) {
    let seconds = shared.retention().persist_for.as_secs();
    if !shared.is_cluster() || !request.retain || seconds == 0 || !is_ws4redis(&request.channel) {
        return;
    }
    let names = shared.names(&request.channel);
    let text = request.payload.raw_text();
    let command = commands::persist_raw(&names, &text, seconds);
    if let Err(err) = shared
        .shard_for(&request.channel)
        .query::<()>(&command)
        .await
    {
        tracing::warn!(%err, channel = %request.channel, "cannot keep the facility's last message");
    }
}
