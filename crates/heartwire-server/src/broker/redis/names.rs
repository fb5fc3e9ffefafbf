//! Where a channel lives in Redis.
//!
//! The raw channel follows django-websocket-redis: a heartwire channel `broadcast:chat`
//! (the facility `chat` of `/ws/chat`) is the Redis channel and key
//! `{prefix}broadcast:chat`, where the prefix is `WS4REDIS_PREFIX + ":"` when one is
//! set, else empty; so are the identity audiences `user:{name}:chat`,
//! `group:{name}:chat` and `session:{key}:chat`. Raw text is published there, and
//! its last value is kept there with `SETEX`, so Django's publisher and subscribers
//! interoperate unchanged.
//!
//! heartwire's own keys carry a `#`, which no channel name may contain, so they can
//! never collide with a channel: `{prefix}hw:{channel}#seq`, `#epoch`, `#stream`,
//! `#id:{publish id}`, `#members`, `#users`, and the pub/sub channel `#live` that carries
//! sequenced envelopes between nodes and `#presence` that carries join and leave
//! events. Each node proves it is alive with the key `{prefix}hw#node:{node}`.

/// The prefixes of ws4redis audiences among channel names.
const WS4REDIS_AUDIENCES: [&str; 4] = ["broadcast:", "user:", "group:", "session:"];

/// The Redis names of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChannelNames {
    /// The raw channel and key of django-websocket-redis.
    pub(super) raw: String,
    /// The pub/sub channel of sequenced envelopes.
    pub(super) live: String,
    /// The counter of the latest `seq`.
    pub(super) seq: String,
    /// The channel's epoch.
    pub(super) epoch: String,
    /// The stream of recent messages, entry id `0-{seq}`.
    pub(super) stream: String,
    /// The hash of members: session → node, then a space and the user when it has
    /// one.
    pub(super) members: String,
    /// The hash of users: user → how many of the members it is.
    pub(super) users: String,
    /// The pub/sub channel of join (`j {session}`, or `j {session} {user}`) and
    /// leave (`l …`) events.
    pub(super) presence: String,
    /// What every publish id key starts with.
    id_prefix: String,
}

impl ChannelNames {
    /// The names of `channel` under `prefix` (`WS4REDIS_PREFIX`, without the colon).
    pub(super) fn new(prefix: &str, channel: &str) -> Self {
        let prefix = redis_prefix(prefix);
        let own = format!("{prefix}hw:{channel}#");
        Self {
            raw: format!("{prefix}{channel}"),
            live: format!("{own}live"),
            seq: format!("{own}seq"),
            epoch: format!("{own}epoch"),
            stream: format!("{own}stream"),
            members: format!("{own}members"),
            users: format!("{own}users"),
            presence: format!("{own}presence"),
            id_prefix: format!("{own}id:"),
        }
    }

    /// The key remembering publish `id` within the dedup window.
    pub(super) fn publish_id(&self, id: &str) -> String {
        format!("{}{id}", self.id_prefix)
    }
}

/// The string put before every name: `WS4REDIS_PREFIX + ":"`, or nothing.
fn redis_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}:")
    }
}

/// This node among the nodes on one Redis: its id, and where nodes prove themselves
/// alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeNames {
    /// This node's id.
    pub(super) id: String,
    /// This node's liveness key.
    pub(super) key: String,
    /// What every node's liveness key starts with; the node id follows.
    pub(super) key_prefix: String,
}

impl NodeNames {
    /// The names of node `id` under `prefix` (`WS4REDIS_PREFIX`, without the colon).
    pub(super) fn new(prefix: &str, id: String) -> Self {
        let key_prefix = format!("{}hw#node:", redis_prefix(prefix));
        Self {
            key: format!("{key_prefix}{id}"),
            id,
            key_prefix,
        }
    }
}

/// Whether messages of `channel` are also published raw, for django-websocket-redis.
pub(super) fn is_ws4redis(channel: &str) -> bool {
    WS4REDIS_AUDIENCES
        .iter()
        .any(|audience| channel.starts_with(audience))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_follow_django_websocket_redis() {
        assert_eq!(
            ChannelNames::new("", "broadcast:chat").raw,
            "broadcast:chat"
        );
        let prefixed = ChannelNames::new("ws4redis", "broadcast:chat");
        assert_eq!(prefixed.raw, "ws4redis:broadcast:chat");
        assert_eq!(prefixed.seq, "ws4redis:hw:broadcast:chat#seq");
        assert_eq!(prefixed.publish_id("7"), "ws4redis:hw:broadcast:chat#id:7");
        for audience in [
            "broadcast:chat",
            "user:ada:chat",
            "group:staff:chat",
            "session:k:chat",
        ] {
            assert!(is_ws4redis(audience), "{audience}");
            assert_eq!(
                ChannelNames::new("p", audience).raw,
                format!("p:{audience}")
            );
        }
        assert!(!is_ws4redis("room:1"));
    }

    #[test]
    fn heartwires_own_keys_cannot_be_channels() {
        let names = ChannelNames::new("", "room:1");
        for own in [
            &names.live,
            &names.seq,
            &names.epoch,
            &names.stream,
            &names.members,
            &names.users,
            &names.presence,
        ] {
            assert!(own.starts_with("hw:room:1#"), "{own}");
        }
        let node = NodeNames::new("ws4redis", "0123456789abcdef".into());
        assert_eq!(node.key, "ws4redis:hw#node:0123456789abcdef");
        assert!(node.key.starts_with(&node.key_prefix));
        assert_eq!(NodeNames::new("", "n".into()).key, "hw#node:n");
    }
}
