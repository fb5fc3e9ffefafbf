//! Presence across nodes: who is subscribed to a channel whose members are tracked.
//!
//! Each channel has a Redis hash `#members` of session → node. A node adds its
//! member (`HSET`, then a `j {session}` event on the channel's `#presence`) once
//! the subscription is live, and removes it (`HDEL`, `l {session}`) when the
//! connection unsubscribes or closes. Every node keeps a liveness key
//! `hw#node:{node}` on every shard, which expires after
//! [`NODE_TTL`](super::commands::NODE_TTL) unless refreshed each
//! [`PROBE_EVERY`](super::shared::PROBE_EVERY). A node that dies stops refreshing
//! it; the next sweep of a surviving node (every `PROBE_EVERY` for the channels it
//! has members on, see [`upkeep`](super::upkeep), and on every `presence` query)
//! finds the members whose node key is gone, removes them and publishes their leave.
//! A dead node's members therefore leave within `NODE_TTL` plus one sweep. The
//! liveness check is a read of its own (in a cluster the node keys hash to other
//! slots than the channel's); each removal is atomic, and announced once.
//!
//! The scripts are in [`scripts`](super::scripts); this file holds what the broker's
//! tasks do with them.

use std::collections::HashMap;
use std::sync::Arc;

use heartwire_core::protocol::{parse_session_name, session_name};

use super::commands;
use super::links::LinkKey;
use super::replies::member_pairs;
use super::shared::Shared;
use crate::id::ConnectionId;

/// Adds a new member in Redis; takes it out again if it left meanwhile.
pub(super) async fn announce_member(shared: &Shared, channel: &str, id: ConnectionId) {
    if let Err(err) = add_member(shared, channel, id).await {
        // The next reconnect adds this node's members again.
        tracing::warn!(%err, %channel, "cannot add a member");
        return;
    }
    if !shared.channels().is_member(channel, id) {
        if let Err(err) = remove_member(shared, channel, id).await {
            tracing::warn!(%err, %channel, "cannot remove a member");
        }
    }
}

/// Adds `session` to the members of `channel`, after proving this node alive on
/// the channel's shard (so no sweep takes the new member for a dead node's).
async fn add_member(
    shared: &Shared,
    channel: &str,
    session: ConnectionId,
) -> redis::RedisResult<()> {
    let shard = shared.shard_for(channel);
    shard
        .query::<()>(&commands::refresh_node(shared.node()))
        .await?;
    let names = shared.names(channel);
    let call = commands::add_member(
        &names,
        session,
        shared.node(),
        shared.retention(),
        shared.is_cluster(),
    );
    shard.invoke::<i64>(&call).await.map(drop)
}

/// Removes `session` from the members of `channel`.
pub(super) async fn remove_member(
    shared: &Shared,
    channel: &str,
    session: ConnectionId,
) -> redis::RedisResult<()> {
    let names = shared.names(channel);
    let call = commands::remove_member(&names, &session_name(session), shared.is_cluster());
    shared
        .shard_for(channel)
        .invoke::<i64>(&call)
        .await
        .map(drop)
}

/// The live members of `channel`, sorted, after removing (and announcing the leave
/// of) those whose node is dead.
pub(super) async fn live_members(
    shared: &Shared,
    channel: &str,
) -> redis::RedisResult<Vec<ConnectionId>> {
    let shard = shared.shard_for(channel);
    let names = shared.names(channel);
    let reply: Vec<String> = shard
        .invoke(&commands::members(&names, shared.retention()))
        .await?;
    let pairs = member_pairs(reply);
    let mut alive: HashMap<String, bool> = HashMap::new();
    alive.insert(shared.node_id().to_owned(), true);
    let mut members = Vec::new();
    for (session, node) in pairs {
        let is_alive = match alive.get(&node) {
            Some(known) => *known,
            None => {
                let key = shared.node().key_of(&node);
                let exists: i64 = shard.query(&commands::node_alive(&key)).await?;
                alive.insert(node, exists == 1);
                exists == 1
            }
        };
        if is_alive {
            members.extend(parse_session_name(&session));
        } else {
            let call = commands::remove_member(&names, &session, shared.is_cluster());
            shard.invoke::<i64>(&call).await?;
        }
    }
    members.sort_unstable();
    Ok(members)
}

/// Adds this node's members of the channels on `link` again after it reconnected
/// (Redis may have lost them).
pub(super) async fn rejoin(shared: Arc<Shared>, link: LinkKey) {
    let memberships = {
        let channels = shared.channels();
        let mut memberships = channels.memberships();
        memberships.retain(|(channel, _)| channels.is_on(channel, &link));
        memberships
    };
    for (channel, members) in memberships {
        for session in members {
            if let Err(err) = add_member(&shared, &channel, session).await {
                tracing::warn!(%err, "cannot add a member again after reconnecting");
                return;
            }
        }
    }
}
