//! The broker's periodic jobs: keeping the history of used channels alive, and
//! keeping this node alive among the nodes on every shard while sweeping the
//! members of dead ones (see [`presence`](super::presence)). Each shard's answer to
//! the liveness refresh also says whether it is reachable (for a cluster, whose
//! links come and go with its channels).

use std::sync::{Arc, Weak};

use super::commands;
use super::presence::live_members;
use super::shared::{PROBE_EVERY, Shared};

/// Waits for the next tick; `None` once the broker is gone.
async fn next_tick(tick: &mut tokio::time::Interval, shared: &Weak<Shared>) -> Option<Arc<Shared>> {
    tick.tick().await;
    shared
        .upgrade()
        .filter(|shared| !shared.closed().is_cancelled())
}

/// Refreshes the history's expiry of every channel with local subscribers, so that
/// a quiet channel keeps its epoch while anyone listens.
pub(super) async fn keep_history_alive(shared: Weak<Shared>) {
    let every = {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.history_ttl() / 4
    };
    let mut tick = tokio::time::interval(every);
    while let Some(shared) = next_tick(&mut tick, &shared).await {
        let in_use = shared.channels().in_use();
        for channel in in_use {
            let names = shared.names(&channel);
            let call = commands::touch(&names, shared.retention());
            if let Err(err) = shared.shard_for(&channel).invoke::<i64>(&call).await {
                tracing::debug!(%err, %channel, "cannot refresh a channel's history");
            }
        }
    }
}

/// Keeps this node's liveness key fresh on every shard, and sweeps the members of
/// dead nodes from the channels this node has members on, every [`PROBE_EVERY`].
pub(super) async fn keep_node_alive(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    while let Some(shared) = next_tick(&mut tick, &shared).await {
        let refresh = commands::refresh_node(shared.node());
        for (index, shard) in shared.shards().iter().enumerate() {
            let answered = tokio::time::timeout(PROBE_EVERY, shard.query::<()>(&refresh)).await;
            let reachable = matches!(answered, Ok(Ok(())));
            if !reachable {
                tracing::debug!(shard = %shard.name(), "cannot refresh the node's liveness key");
            }
            shared.set_reachable(index, reachable);
        }
        let memberships = shared.channels().memberships();
        for (channel, _) in memberships {
            if let Err(err) = live_members(&shared, &channel).await {
                tracing::debug!(%err, %channel, "cannot sweep a channel's members");
            }
        }
    }
}
