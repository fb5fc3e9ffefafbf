//! A subscriber's join, following the ordering rules of
//! [`channels`](super::channels): the node's Redis subscription first, then the
//! snapshot, so that nothing published meanwhile is missed.

use std::sync::Arc;

use super::channels::Joining;
use super::lineage;
use super::placement::{Placed, subscribe};
use super::presence::announce_member;
use super::shared::{PROBE_EVERY, Shared};
use crate::broker::contract::SubscribeRequest;

/// Joins `request.subscriber` to its channel: Redis subscription first, then the
/// snapshot. Waits for Redis while it is away; ends early when the subscriber leaves.
pub(super) async fn join(shared: Arc<Shared>, request: SubscribeRequest, joining: Joining) {
    let Joining { resume_from } = joining;
    let SubscribeRequest {
        channel,
        subscriber: mailbox,
        with_retained,
        since,
        presence: _,
        user,
    } = request;
    while shared.channels().is_joining(&channel, mailbox.id()) {
        if subscribe(&shared, &channel).await == Placed::Gone {
            return;
        }
        let from = since.as_ref().or(resume_from.as_ref());
        match lineage::resume(&shared, &channel, from, with_retained).await {
            Ok(mut snapshot) => {
                if since.is_none() && snapshot.recovered == Some(true) {
                    // The position was this node's, not asked by the client.
                    snapshot.recovered = None;
                }
                let member = shared
                    .channels()
                    .finish_join(&channel, &mailbox, user, snapshot);
                if let Some(member) = member {
                    announce_member(&shared, &channel, &member).await;
                }
                return;
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot read the channel; retrying");
                tokio::time::sleep(PROBE_EVERY).await;
            }
        }
    }
}
