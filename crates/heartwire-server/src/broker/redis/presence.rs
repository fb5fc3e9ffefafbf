//! Presence across nodes: who is subscribed to a channel whose members are tracked.
//!
//! Each channel has a Redis hash `#members` of session → node (and user), and a hash
//! `#users` of user → how many members it is. A node adds its member (`HSET`, then a
//! `j {session}` event on the channel's `#presence`) once the subscription is live,
//! and removes it (`HDEL`, `l {session}`) when the connection unsubscribes or
//! closes. A member with a user counts in `#users` (`HINCRBY`), and only the user's
//! first member is announced joining, its last leaving (`j {session} {user}`,
//! `l {session} {user}`): one script does the count and the announcement, so every
//! node sees a user arrive and go once, whichever nodes its connections are on. In a
//! cluster `#users` carries the channel's hash tag like the other two, so those
//! scripts run on the channel's slot.
//!
//! Every node keeps a liveness key `hw#node:{node}` on every shard, which expires
//! after [`NODE_TTL`](super::commands::NODE_TTL) unless refreshed each
//! [`PROBE_EVERY`](super::shared::PROBE_EVERY). A node that dies stops refreshing
//! it; the next sweep of a surviving node (every `PROBE_EVERY` for the channels it
//! has members on, see [`upkeep`](super::upkeep), and on every `presence` query)
//! finds the members whose node key is gone, removes them and publishes their leave
//! (a user's only with its last member). A dead node's members therefore leave
//! within `NODE_TTL` plus one sweep. The liveness check is a read of its own (in a
//! cluster the node keys hash to other slots than the channel's); each removal is
//! atomic, and announced once.
//!
//! The scripts are in [`scripts`](super::scripts); this file holds what the broker's
//! tasks do with them.

use std::collections::HashMap;
use std::sync::Arc;

use heartwire_core::protocol::{parse_session_name, session_name};

use super::commands;
use super::links::LinkKey;
use super::replies::member_entries;
use super::shared::Shared;
use crate::id::ConnectionId;
use crate::mailbox::Member;

/// Adds a new member in Redis; takes it out again if it left meanwhile.
pub(super) async fn announce_member(shared: &Shared, channel: &str, member: &Member) {
    if let Err(err) = add_member(shared, channel, member).await {
        // The next reconnect adds this node's members again.
        tracing::warn!(%err, %channel, "cannot add a member");
        return;
    }
    if !shared.channels().is_member(channel, member.session) {
        if let Err(err) = remove_member(shared, channel, member.session).await {
            tracing::warn!(%err, %channel, "cannot remove a member");
        }
    }
}

/// Adds `member` to the members of `channel`, after proving this node alive on
/// the channel's shard (so no sweep takes the new member for a dead node's).
async fn add_member(shared: &Shared, channel: &str, member: &Member) -> redis::RedisResult<()> {
    let shard = shared.shard_for(channel);
    shard
        .query::<()>(&commands::refresh_node(shared.node()))
        .await?;
    let names = shared.names(channel);
    let call = commands::add_member(
        &names,
        member,
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
) -> redis::RedisResult<Vec<Member>> {
    let shard = shared.shard_for(channel);
    let names = shared.names(channel);
    let reply: Vec<String> = shard
        .invoke(&commands::members(&names, shared.retention()))
        .await?;
    let mut alive: HashMap<String, bool> = HashMap::new();
    alive.insert(shared.node_id().to_owned(), true);
    let mut members = Vec::new();
    for entry in member_entries(reply) {
        let is_alive = match alive.get(&entry.node) {
            Some(known) => *known,
            None => {
                let key = shared.node().key_of(&entry.node);
                let exists: i64 = shard.query(&commands::node_alive(&key)).await?;
                alive.insert(entry.node, exists == 1);
                exists == 1
            }
        };
        if is_alive {
            members.extend(parse_session_name(&entry.session).map(|session| Member {
                session,
                user: entry.user,
            }));
        } else {
            let call = commands::remove_member(&names, &entry.session, shared.is_cluster());
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
        for member in members {
            if let Err(err) = add_member(&shared, &channel, &member).await {
                tracing::warn!(%err, "cannot add a member again after reconnecting");
                return;
            }
        }
    }
}
