//! A subscriber's join, following the ordering rules of
//! [`channels`](super::channels): the node's Redis subscription first, then the
//! snapshot, so that nothing published meanwhile is missed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::channels::Joining;
use super::presence::announce_member;
use super::shared::{PROBE_EVERY, Shared};
use super::subscriber::Command;
use crate::broker::contract::SubscribeRequest;

/// Joins `request.subscriber` to its channel: Redis subscription first, then the
/// snapshot. Waits for Redis while it is away; ends early when the subscriber leaves.
pub(super) async fn join(
    shared: Arc<Shared>,
    subscriber: mpsc::UnboundedSender<Command>,
    request: SubscribeRequest,
    joining: Joining,
) {
    let Joining {
        pubsub,
        resume_from,
    } = joining;
    let SubscribeRequest {
        channel,
        subscriber: mailbox,
        with_retained,
        since,
        presence: _,
        user,
    } = request;
    let names = shared.channels().names(&channel);
    while shared.channels().is_joining(&channel, mailbox.id()) {
        let (done, confirmed) = oneshot::channel();
        if subscriber
            .send(Command::Subscribe(pubsub.clone(), done))
            .is_err()
        {
            return;
        }
        if confirmed.await.is_err() {
            shared.wait_up().await;
            continue;
        }
        let from = since.as_ref().or(resume_from.as_ref());
        match shared.snapshot(&channel, &names, from, with_retained).await {
            Ok(mut snapshot) => {
                if since.is_none() && snapshot.recovered == Some(true) {
                    // The position was this node's, not asked by the client.
                    snapshot.recovered = None;
                }
                let member = shared
                    .channels()
                    .finish_join(&channel, &mailbox, user, snapshot);
                if let Some(member) = member {
                    announce_member(&shared, &channel, &names, &member).await;
                }
                return;
            }
            Err(err) => {
                tracing::warn!(%err, %channel, "cannot read the channel; retrying");
                tokio::time::sleep(PROBE_EVERY).await;
                shared.wait_up().await;
            }
        }
    }
}
