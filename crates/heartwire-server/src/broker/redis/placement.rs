//! Which link carries a channel, and getting its subscriptions in place there.
//!
//! On servers (one, several, or Sentinel's) a channel's link is its shard's, fixed by
//! its name. In a cluster it is the link to the master node of its slot, which the
//! library's cluster connection names (after a keyed read that lets it follow a
//! redirection); the channel keeps that link until the link is lost or the node
//! refuses the channel, and is then placed again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::links::{Command, LinkKey};
use super::shared::{PROBE_EVERY, Shared};

/// The first wait after a failed placement; it doubles up to [`PROBE_EVERY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// How subscribing a channel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    /// Its Redis channels are subscribed on its link.
    Subscribed,
    /// It has no subscriber left on this node (or the broker is gone).
    Gone,
}

/// Gets `channel`'s subscriptions in place on the link that should carry it,
/// waiting through Redis outages and fail-overs.
pub(super) async fn subscribe(shared: &Arc<Shared>, channel: &Arc<str>) -> Placed {
    let mut retry = FIRST_RETRY;
    loop {
        if shared.closed().is_cancelled() || !shared.channels().contains(channel) {
            return Placed::Gone;
        }
        let key = match link_for(shared, channel).await {
            Ok(key) => key,
            Err(err) => {
                tracing::debug!(%err, %channel, "cannot place the channel yet");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(PROBE_EVERY);
                continue;
            }
        };
        let link = shared.link(&key);
        shared.channels().place(channel, key);
        let (done, confirmed) = oneshot::channel();
        if link
            .orders
            .send(Command::Subscribe(channel.clone(), done))
            .is_ok()
            && confirmed.await == Ok(true)
        {
            return Placed::Subscribed;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(PROBE_EVERY);
    }
}

/// The link that should carry `channel`.
async fn link_for(shared: &Shared, channel: &str) -> redis::RedisResult<LinkKey> {
    if !shared.is_cluster() {
        return Ok(LinkKey::Shard(shared.shard_index(channel)));
    }
    if let Some(key) = shared.channels().link_of(channel) {
        return Ok(key);
    }
    let names = shared.names(channel);
    let address = shared.shards()[0].cluster_master_of(&names.live).await?;
    Ok(LinkKey::Node(address))
}
