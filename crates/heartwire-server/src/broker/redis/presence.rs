//! Presence across nodes: who is subscribed to a channel whose members are tracked.
//!
//! Each channel has a Redis hash `#members` of session → node. A node adds its
//! member (`HSET`, then `PUBLISH j {session}` on the channel's `#presence`) once
//! the subscription is live, and removes it (`HDEL`, `PUBLISH l {session}`) when
//! the connection unsubscribes or closes. Every node keeps a liveness key
//! `hw#node:{node}` that expires after [`NODE_TTL`] unless refreshed each
//! [`PROBE_EVERY`](super::subscriber::PROBE_EVERY). A node that dies stops
//! refreshing it; the next sweep of a surviving node (every `PROBE_EVERY` for the
//! channels it has subscribers on, and on every `presence` query) removes its
//! members and publishes their leave. A dead node's members therefore leave within
//! `NODE_TTL` plus one sweep.

use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use redis::Script;

use super::Shared;
use super::names::ChannelNames;
use super::subscriber::PROBE_EVERY;
use crate::mailbox::{ConnectionId, session_name};

/// How long a node's members stay without a sign of life from it.
pub(super) const NODE_TTL: Duration = Duration::from_secs(5);

/// KEYS: members, presence channel, node key. ARGV: session, node, node ttl in ms,
/// members ttl in ms. Adds the member; announces it when it is new.
pub(super) static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if added == 1 then redis.call('PUBLISH', KEYS[2], 'j ' .. ARGV[1]) end
return added
"#,
    )
});

/// KEYS: members, presence channel. ARGV: session. Removes the member; announces it
/// when it was there.
pub(super) static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', KEYS[2], 'l ' .. ARGV[1]) end
return removed
"#,
    )
});

/// KEYS: members, presence channel. ARGV: node key prefix, members ttl in ms.
/// Removes (and announces the leave of) members whose node is gone; returns the
/// sessions left. Node keys are read by name, so this needs a single Redis (no
/// cluster).
pub(super) static MEMBERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local all = redis.call('HGETALL', KEYS[1])
local alive, members = {}, {}
for i = 1, #all, 2 do
    local session, node = all[i], all[i + 1]
    if alive[node] == nil then
        alive[node] = redis.call('EXISTS', ARGV[1] .. node) == 1
    end
    if alive[node] then
        table.insert(members, session)
    else
        redis.call('HDEL', KEYS[1], session)
        redis.call('PUBLISH', KEYS[2], 'l ' .. session)
    end
end
if #members > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return members
"#,
    )
});

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Shared {
    fn node_key(&self) -> String {
        format!("{}{}", self.node_key_prefix, self.node)
    }

    /// Adds `session` to the members of the channel named by `names`.
    pub(super) async fn add_member(
        &self,
        names: &ChannelNames,
        session: ConnectionId,
    ) -> redis::RedisResult<()> {
        let mut invocation = JOIN.prepare_invoke();
        invocation
            .key(&names.members)
            .key(&names.presence)
            .key(self.node_key())
            .arg(session_name(session))
            .arg(&self.node)
            .arg(millis(NODE_TTL))
            .arg(self.ttl_ms());
        invocation
            .invoke_async::<i64>(&mut self.commands.clone())
            .await
            .map(drop)
    }

    /// Removes `session` from the members of the channel named by `names`.
    pub(super) async fn remove_member(
        &self,
        names: &ChannelNames,
        session: ConnectionId,
    ) -> redis::RedisResult<()> {
        let mut invocation = LEAVE.prepare_invoke();
        invocation
            .key(&names.members)
            .key(&names.presence)
            .arg(session_name(session));
        invocation
            .invoke_async::<i64>(&mut self.commands.clone())
            .await
            .map(drop)
    }

    /// The live members of the channel named by `names`, after removing those of
    /// dead nodes.
    pub(super) async fn members(
        &self,
        names: &ChannelNames,
    ) -> redis::RedisResult<Vec<ConnectionId>> {
        let mut invocation = MEMBERS.prepare_invoke();
        invocation
            .key(&names.members)
            .key(&names.presence)
            .arg(&self.node_key_prefix)
            .arg(self.ttl_ms());
        let sessions: Vec<String> = invocation.invoke_async(&mut self.commands.clone()).await?;
        let mut members: Vec<ConnectionId> = sessions
            .iter()
            .filter_map(|session| parse_session(session))
            .collect();
        members.sort_unstable();
        Ok(members)
    }

    /// Proves this node alive for another [`NODE_TTL`].
    pub(super) async fn refresh_node(&self) -> redis::RedisResult<()> {
        let mut command = redis::cmd("SET");
        command
            .arg(self.node_key())
            .arg("1")
            .arg("PX")
            .arg(millis(NODE_TTL));
        command.query_async::<()>(&mut self.commands.clone()).await
    }
}

/// Adds this node's members again after Redis came back (it may have lost them).
pub(super) async fn rejoin(shared: Arc<Shared>) {
    let memberships = shared.channels().memberships();
    for (names, members) in memberships {
        for session in members {
            if let Err(err) = shared.add_member(&names, session).await {
                tracing::warn!(%err, "cannot add a member again after reconnecting");
                return;
            }
        }
    }
}

/// Keeps this node's liveness key fresh, and sweeps the members of dead nodes from
/// the channels this node has members on, every [`PROBE_EVERY`].
pub(super) async fn keep_node_alive(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    while let Some(shared) = super::next_tick_while_up(&mut tick, &shared).await {
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

/// A join or leave announced on a channel's `#presence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PresenceEvent {
    /// The session (connection id).
    pub(super) session: u64,
    /// Whether it joined (else it left).
    pub(super) joined: bool,
}

impl PresenceEvent {
    /// Reads `j {session}` or `l {session}`.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let (kind, session) = text.split_once(' ')?;
        let joined = match kind {
            "j" => true,
            "l" => false,
            _ => return None,
        };
        let session = parse_session(session)?;
        Some(Self { session, joined })
    }
}

/// A session id as on the wire (16 hex digits) back to its connection id.
pub(super) fn parse_session(session: &str) -> Option<u64> {
    u64::from_str_radix(session, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::session_name;

    #[test]
    fn events_name_the_session() {
        let session = session_name(0xa1);
        assert_eq!(
            PresenceEvent::parse(&format!("j {session}")),
            Some(PresenceEvent {
                session: 0xa1,
                joined: true
            })
        );
        assert_eq!(
            PresenceEvent::parse("l 00000000000000ff").map(|event| event.joined),
            Some(false)
        );
        assert!(PresenceEvent::parse("x 1").is_none());
        assert!(PresenceEvent::parse("j not-hex").is_none());
    }
}
