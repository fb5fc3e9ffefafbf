//! Where a channel lives in Redis.
//!
//! The raw channel follows django-websocket-redis: a heartwire channel `broadcast:chat`
//! (the facility `chat` of `/ws/chat`) is the Redis channel and key
//! `{prefix}broadcast:chat`, where the prefix is `WS4REDIS_PREFIX + ":"` when one is
//! set, else empty. Raw text is published there, and its last value is kept there
//! with `SETEX`, so Django's publisher and subscribers interoperate unchanged. These
//! names are Django's and never change, in any topology.
//!
//! heartwire's own keys carry a `#`, which no channel name may contain, so they can
//! never collide with a channel: `{prefix}hw:{channel}#seq`, `#epoch`, `#stream`,
//! `#id:{publish id}`, `#members`, and the pub/sub channel `#live` that carries
//! sequenced envelopes between nodes and `#presence` that carries join and leave
//! events. Each node proves it is alive with the key `{prefix}hw#node:{node}`.
//!
//! In a Redis Cluster the channel's part of those names is a hash tag,
//! `{prefix}hw:{{channel}}#seq` (braces included), so every key and shard channel of
//! one channel hashes to one slot and its scripts run on one node. Channel names
//! cannot hold braces, so the tag is always the whole channel name. The raw ws4redis
//! channel and key keep Django's names and hash to a slot of their own.

/// The prefix of ws4redis facilities among channel names.
const BROADCAST: &str = "broadcast:";

/// How names are made: the ws4redis prefix, and whether heartwire's own names carry
/// a hash tag (Redis Cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Naming {
    /// `WS4REDIS_PREFIX`, without the colon (empty: none).
    prefix: String,
    /// Whether the channel part of heartwire's names is a cluster hash tag.
    tagged: bool,
}

impl Naming {
    /// Names under `prefix`, with hash tags when `tagged`.
    pub(super) fn new(prefix: &str, tagged: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            tagged,
        }
    }

    /// The names of `channel`.
    pub(super) fn channel(&self, channel: &str) -> ChannelNames {
        ChannelNames::new(&self.prefix, channel, self.tagged)
    }

    /// The names of node `id`.
    pub(super) fn node(&self, id: String) -> NodeNames {
        NodeNames::new(&self.prefix, id)
    }

    /// Whether the names are for a Redis Cluster: tagged keys, sharded pub/sub
    /// (`SPUBLISH`), and the raw ws4redis key out of the channel's scripts.
    pub(super) fn is_cluster(&self) -> bool {
        self.tagged
    }
}

/// The Redis names of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChannelNames {
    /// The raw channel and key of django-websocket-redis.
    pub(super) raw: String,
    /// The pub/sub channel of sequenced envelopes.
    pub(super) live: String,
    /// The counter of the latest `seq`.
    pub(super) seq: String,
    /// The channel's epoch, with the replication history it was last written in.
    pub(super) epoch: String,
    /// The stream of recent messages, entry id `0-{seq}`.
    pub(super) stream: String,
    /// The hash of members: session → node.
    pub(super) members: String,
    /// The pub/sub channel of join (`j {session}`) and leave (`l {session}`) events.
    pub(super) presence: String,
    /// What every publish id key starts with.
    id_prefix: String,
}

impl ChannelNames {
    /// The names of `channel` under `prefix` (`WS4REDIS_PREFIX`, without the colon),
    /// with the channel as a hash tag when `tagged`.
    pub(super) fn new(prefix: &str, channel: &str, tagged: bool) -> Self {
        let prefix = redis_prefix(prefix);
        let own = if tagged {
            format!("{prefix}hw:{{{channel}}}#")
        } else {
            format!("{prefix}hw:{channel}#")
        };
        Self {
            raw: format!("{prefix}{channel}"),
            live: format!("{own}live"),
            seq: format!("{own}seq"),
            epoch: format!("{own}epoch"),
            stream: format!("{own}stream"),
            members: format!("{own}members"),
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

    /// The liveness key of node `id`.
    pub(super) fn key_of(&self, id: &str) -> String {
        format!("{}{id}", self.key_prefix)
    }
}

/// Whether messages of `channel` are also published raw, for django-websocket-redis.
pub(super) fn is_ws4redis(channel: &str) -> bool {
    channel.starts_with(BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_follow_django_websocket_redis() {
        assert_eq!(
            ChannelNames::new("", "broadcast:chat", false).raw,
            "broadcast:chat"
        );
        let prefixed = ChannelNames::new("ws4redis", "broadcast:chat", false);
        assert_eq!(prefixed.raw, "ws4redis:broadcast:chat");
        assert_eq!(prefixed.seq, "ws4redis:hw:broadcast:chat#seq");
        assert_eq!(prefixed.publish_id("7"), "ws4redis:hw:broadcast:chat#id:7");
        assert!(is_ws4redis("broadcast:chat"));
        assert!(!is_ws4redis("room:1"));
    }

    #[test]
    fn heartwires_own_keys_cannot_be_channels() {
        let names = ChannelNames::new("", "room:1", false);
        for own in [
            &names.live,
            &names.seq,
            &names.epoch,
            &names.stream,
            &names.members,
            &names.presence,
        ] {
            assert!(own.starts_with("hw:room:1#"), "{own}");
        }
        let node = NodeNames::new("ws4redis", "0123456789abcdef".into());
        assert_eq!(node.key, "ws4redis:hw#node:0123456789abcdef");
        assert!(node.key.starts_with(&node.key_prefix));
        assert_eq!(node.key_of("ab"), "ws4redis:hw#node:ab");
        assert_eq!(NodeNames::new("", "n".into()).key, "hw#node:n");
    }

    #[test]
    fn in_a_cluster_every_own_name_of_a_channel_hashes_to_one_slot_and_django_names_stay() {
        use redis::cluster_routing::Slot;
        let names = Naming::new("ws4redis", true).channel("broadcast:chat");
        assert_eq!(names.raw, "ws4redis:broadcast:chat");
        assert_eq!(names.seq, "ws4redis:hw:{broadcast:chat}#seq");
        let slot = Slot::for_key(&names.seq);
        for own in [
            &names.live,
            &names.epoch,
            &names.stream,
            &names.members,
            &names.presence,
            &names.publish_id("p-1"),
        ] {
            assert_eq!(Slot::for_key(own), slot, "{own}");
        }
        assert!(!names.raw.contains('{'), "Django's names carry no tag");
    }
}
