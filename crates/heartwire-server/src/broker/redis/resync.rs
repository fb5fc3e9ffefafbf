//! A channel's resync after Redis came back, following the ordering rules of
//! [`channels`](super::channels): what was missed while the node was away is read
//! from the stream, then the live messages buffered meanwhile are delivered.

use std::sync::Arc;

use heartwire_core::protocol::Position;

use super::shared::{PROBE_EVERY, Shared};

/// Catches `channel` up after reconnect `generation`, from `position`. Retries while
/// Redis fails; gives way to a newer reconnect, or ends when the channel has no
/// subscriber left.
pub(super) async fn resync(
    shared: Arc<Shared>,
    channel: Arc<str>,
    generation: u64,
    position: Option<Position>,
) {
    let names = shared.channels().names(&channel);
    loop {
        {
            let channels = shared.channels();
            if channels.generation() != generation || !channels.contains(&channel) {
                return;
            }
        }
        match shared
            .snapshot(&channel, &names, position.as_ref(), false)
            .await
        {
            Ok(snapshot) => {
                let recovered = snapshot.recovered;
                let missed = snapshot.missed.len();
                tracing::info!(%channel, ?recovered, missed, "channel resynced after reconnect");
                shared
                    .channels()
                    .finish_resync(&channel, generation, snapshot);
                return;
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot resync the channel yet");
                tokio::time::sleep(PROBE_EVERY).await;
                shared.wait_up().await;
            }
        }
    }
}
