//! This node's publish queue: publishes go to Redis in order, in pipelines, and each
//! origin hears how its publish went.
//!
//! One queue per node keeps one connection's publishes in their order; pipelines of
//! up to [`PUBLISH_BATCH`] keep a busy node from paying a round trip per message.

use std::sync::Arc;

use heartwire_core::ErrorCode;
use tokio::sync::mpsc;

use super::shared::Shared;
use crate::broker::contract::PublishRequest;
use crate::mailbox::{Mailbox, Outbound};

/// Publishes that may wait for Redis on one node before more are refused.
pub(super) const PUBLISH_QUEUE: usize = 16_384;

/// Publishes sent to Redis in one pipeline at most.
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

/// Runs this node's publishes in order, in pipelines of up to [`PUBLISH_BATCH`],
/// answering each origin.
pub(super) async fn publish_in_order(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<PublishRequest>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        if !shared.is_up() {
            // Redis went away while these waited: answer now rather than time out.
            for request in batch.drain(..) {
                if let Some(origin) = &request.origin {
                    refuse(origin, request.ack_id, UNREACHABLE);
                }
            }
            continue;
        }
        match shared.publish_batch(&batch).await {
            Ok(published) => {
                for (request, published) in batch.drain(..).zip(published) {
                    if let (Some(origin), Some(id)) = (request.origin, request.ack_id) {
                        origin.deliver(Outbound::Ack {
                            id,
                            seq: published.seq,
                            duplicate: published.duplicate,
                        });
                    }
                }
            }
            Err(err) => {
                tracing::warn!(%err, publishes = batch.len(), "publishing to Redis failed");
                let reason = format!(
                    "Redis failed the publish ({err}); it may not have been published: send it again with its id, and it is published once"
                );
                for request in batch.drain(..) {
                    if let Some(origin) = &request.origin {
                        refuse(origin, request.ack_id, &reason);
                    }
                }
            }
        }
    }
}
