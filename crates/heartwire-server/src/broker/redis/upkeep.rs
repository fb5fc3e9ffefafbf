//! The broker's periodic jobs, run while Redis is up: keeping the history of used
//! channels alive, and keeping this node alive among the nodes while sweeping the
//! members of dead ones (see [`presence`](super::presence)).

use std::sync::{Arc, Weak};

use super::shared::{PROBE_EVERY, Shared};

/// Waits for the next tick at which Redis is up; `None` once the broker is gone.
async fn next_tick_while_up(
    tick: &mut tokio::time::Interval,
    shared: &Weak<Shared>,
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
pub(super) async fn keep_history_alive(shared: Weak<Shared>) {
    let every = {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.history_ttl() / 4
    };
    let mut tick = tokio::time::interval(every);
    while let Some(shared) = next_tick_while_up(&mut tick, &shared).await {
        let in_use = shared.channels().in_use();
        for names in in_use {
            if let Err(err) = shared.touch(&names).await {
                tracing::debug!(%err, "cannot refresh a channel's history");
            }
        }
    }
}

/// Keeps this node's liveness key fresh, and sweeps the members of dead nodes from
/// the channels this node has members on, every [`PROBE_EVERY`].
pub(super) async fn keep_node_alive(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    while let Some(shared) = next_tick_while_up(&mut tick, &shared).await {
        if let Err(err) = shared.refresh_node().await {
            tracing::debug!(%err, "cannot refresh the node's liveness key");
            continue;
        }
        let memberships = shared.channels().memberships();
        for (names, _) in memberships {
            if let Err(err) = shared.members(&names).await {
                tracing::debug!(%err, "cannot sweep a channel's members");
            }
        }
    }
}
