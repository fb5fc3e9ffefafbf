//! Presence across nodes: who is subscribed to a channel whose members are tracked.
//!
//! Each channel has a Redis hash `#members` of session → node (and user), and a hash
//! `#users` of user → how many members it is. A node adds its member (`HSET`, then
//! `PUBLISH j {session}` on the channel's `#presence`) once the subscription is live,
//! and removes it (`HDEL`, `PUBLISH l {session}`) when the connection unsubscribes or
//! closes. A member with a user counts in `#users` (`HINCRBY`), and only the user's
//! first member is announced joining, its last leaving (`j {session} {user}`,
//! `l {session} {user}`): one script does the count and the announcement, so every
//! node sees a user arrive and go once, whichever nodes its connections are on. Every node keeps a liveness key
//! `hw#node:{node}` that expires after [`NODE_TTL`](super::commands::NODE_TTL) unless
//! refreshed each [`PROBE_EVERY`](super::shared::PROBE_EVERY). A node that dies stops
//! refreshing it; the next sweep of a surviving node (every `PROBE_EVERY` for the
//! channels it has members on, see [`upkeep`](super::upkeep), and on every `presence`
//! query) removes its members and publishes their leave. A dead node's members
//! therefore leave within `NODE_TTL` plus one sweep.
//!
//! The scripts are in [`scripts`](super::scripts); this file holds what the broker's
//! tasks do with them.

use std::sync::Arc;

use super::names::ChannelNames;
use super::shared::Shared;
use crate::mailbox::Member;

/// Adds a new member in Redis; takes it out again if it left meanwhile.
pub(super) async fn announce_member(
    shared: &Shared,
    channel: &str,
    names: &ChannelNames,
    member: &Member,
) {
    if let Err(err) = shared.add_member(names, member).await {
        // The next reconnect adds this node's members again.
        tracing::warn!(%err, %channel, "cannot add a member");
        return;
    }
    if !shared.channels().is_member(channel, member.session) {
        if let Err(err) = shared.remove_member(names, member.session).await {
            tracing::warn!(%err, %channel, "cannot remove a member");
        }
    }
}

/// Adds this node's members again after Redis came back (it may have lost them).
pub(super) async fn rejoin(shared: Arc<Shared>) {
    let memberships = shared.channels().memberships();
    for (names, members) in memberships {
        for member in members {
            if let Err(err) = shared.add_member(&names, &member).await {
                tracing::warn!(%err, "cannot add a member again after reconnecting");
                return;
            }
        }
    }
}
