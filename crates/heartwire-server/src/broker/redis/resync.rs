//! A channel's resync, following the ordering rules of [`channels`](super::channels):
//! its subscriptions are put in place (again), what was missed is read from the
//! stream, then the live messages buffered meanwhile are delivered.
//!
//! When the channel's epoch changed (Redis lost its data, or a fail-over cut its
//! history), what was missed of the old epoch is gone, but the new epoch's messages
//! are all new to the subscribers: they are told `recovered: false` with `seq` 0 of
//! the new epoch, then get its messages from the stream, when it still holds them
//! from the first.

use std::sync::Arc;

use super::channels::Resync;
use super::lineage;
use super::placement::{Placed, subscribe};
use super::shared::{PROBE_EVERY, Shared};

/// Runs `resync` in its own task.
pub(super) fn spawn_resync(shared: &Arc<Shared>, resync: Resync) {
    tokio::spawn(run(shared.clone(), resync));
}

/// Catches the channel up from its position. Retries while Redis fails; gives way
/// to a newer resync of the channel, or ends when the channel has no subscriber
/// left.
async fn run(shared: Arc<Shared>, resync: Resync) {
    let Resync {
        channel,
        mut token,
        mut position,
    } = resync;
    loop {
        if !shared.channels().is_resyncing(&channel, token) {
            return;
        }
        if subscribe(&shared, &channel).await == Placed::Gone {
            return;
        }
        match lineage::resume(&shared, &channel, position.as_ref(), false).await {
            Ok(snapshot) => {
                let recovered = snapshot.recovered;
                let missed = snapshot.missed.len();
                tracing::info!(%channel, ?recovered, missed, "channel resynced");
                match shared.channels().finish_resync(&channel, token, snapshot) {
                    Some(next) => (token, position) = (next.token, next.position),
                    None => return,
                }
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot resync the channel yet");
                tokio::time::sleep(PROBE_EVERY).await;
            }
        }
    }
}
