//! Where a channel lives in Redis.
//!
//! The raw channel follows django-websocket-redis: a heartwire channel `broadcast:chat`
//! (the facility `chat` of `/ws/chat`) is the Redis channel and key
//! `{prefix}broadcast:chat`, where the prefix is `WS4REDIS_PREFIX + ":"` when one is
//! set, else empty; so are the identity audiences `user:{name}:chat`,
//! `group:{name}:chat` and `session:{key}:chat`. Raw text is published there, and
//! its last value is kept there with `SETEX`, so Django's publisher and subscribers
//! interoperate unchanged. These names are Django's and never change, in any
//! topology.
//!
//! heartwire's own keys carry a `#`, which no channel name may contain, so they can
//! never collide with a channel: `{prefix}hw:{channel}#seq`, `#epoch`, `#stream`,
//! `#bytes`, `#id:{publish id}`, `#members`, `#users`, and the pub/sub channel `#live` that carries
//! sequenced envelopes between nodes and `#presence` that carries join and leave
//! events. Each node proves it is alive with the key `{prefix}hw#node:{node}`.
//!
//! In a Redis Cluster the channel's part of those names is a hash tag,
//! `{prefix}hw:{{channel}}#seq` (braces included), so every key and shard channel of
//! one channel hashes to one slot and its scripts run on one node. The tag is the
//! whole channel name: a brace in it (an identity channel's user or group name may
//! hold one; other channel names cannot) is written `#(` or `#)`, since Redis would
//! end the tag at the first `}`. No channel name holds a `#`, so two channels never
//! share a tag. The raw ws4redis channel and key keep Django's names and hash to a
//! slot of their own.

/// The prefixes of ws4redis audiences among channel names.
const WS4REDIS_AUDIENCES: [&str; 4] = ["broadcast:", "user:", "group:", "session:"];

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
    /// The stream's byte count, `{e} {b}`: the bytes counted through its newest
    /// message, and at most where its oldest message starts.
    pub(super) bytes: String,
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
    /// The names of `channel` under `prefix` (`WS4REDIS_PREFIX`, without the colon),
    /// with the channel as a hash tag when `tagged`.
    pub(super) fn new(prefix: &str, channel: &str, tagged: bool) -> Self {
        let prefix = redis_prefix(prefix);
        let own = if tagged {
            let tag = channel.replace('{', "#(").replace('}', "#)");
            format!("{prefix}hw:{{{tag}}}#")
        } else {
            format!("{prefix}hw:{channel}#")
        };
        Self {
            raw: format!("{prefix}{channel}"),
            live: format!("{own}live"),
            seq: format!("{own}seq"),
            epoch: format!("{own}epoch"),
            stream: format!("{own}stream"),
            bytes: format!("{own}bytes"),
            members: format!("{own}members"),
            users: format!("{own}users"),
            presence: format!("{own}presence"),
            id_prefix: format!("{own}id:"),
        }
    }

    /// The key remembering publish `id` of `publisher` within the dedup window (the
    /// publisher's length first, so no two pairs make one key).
    pub(super) fn publish_id(&self, publisher: &str, id: &str) -> String {
        format!("{}{}:{publisher}:{id}", self.id_prefix, publisher.len())
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
    /// What the key of a session reaped for silence starts with; the session follows.
    pub(super) reaped_prefix: String,
}

impl NodeNames {
    /// The names of node `id` under `prefix` (`WS4REDIS_PREFIX`, without the colon).
    pub(super) fn new(prefix: &str, id: String) -> Self {
        let key_prefix = format!("{}hw#node:", redis_prefix(prefix));
        Self {
            key: format!("{key_prefix}{id}"),
            id,
            key_prefix,
            reaped_prefix: format!("{}hw#reaped:", redis_prefix(prefix)),
        }
    }

    /// The key that says a node reaped `session` for silence lately.
    pub(super) fn reaped(&self, session: &str) -> String {
        format!("{}{session}", self.reaped_prefix)
    }

    /// The liveness key of node `id`.
    pub(super) fn key_of(&self, id: &str) -> String {
        format!("{}{id}", self.key_prefix)
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
            ChannelNames::new("", "broadcast:chat", false).raw,
            "broadcast:chat"
        );
        let prefixed = ChannelNames::new("ws4redis", "broadcast:chat", false);
        assert_eq!(prefixed.raw, "ws4redis:broadcast:chat");
        assert_eq!(prefixed.seq, "ws4redis:hw:broadcast:chat#seq");
        assert_eq!(
            prefixed.publish_id("u:a", "7"),
            "ws4redis:hw:broadcast:chat#id:3:u:a:7"
        );
        for audience in [
            "broadcast:chat",
            "user:ada:chat",
            "group:staff:chat",
            "session:k:chat",
        ] {
            assert!(is_ws4redis(audience), "{audience}");
            assert_eq!(
                ChannelNames::new("p", audience, false).raw,
                format!("p:{audience}")
            );
        }
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
            &names.bytes,
            &names.members,
            &names.users,
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
            &names.bytes,
            &names.members,
            &names.users,
            &names.presence,
            &names.publish_id("u:a", "p-1"),
        ] {
            assert_eq!(Slot::for_key(own), slot, "{own}");
        }
        assert!(!names.raw.contains('{'), "Django's names carry no tag");
    }

    #[test]
    fn in_a_cluster_a_user_or_group_name_with_braces_or_spaces_is_the_whole_tag() {
        use redis::cluster_routing::Slot;
        let naming = Naming::new("", true);
        let channels = [
            "user:{ada}:chat",
            "user:}ada{:chat",
            "user:a}b:chat",
            "user:a}c:chat",
            "group:Support Team:chat",
            "group:{ops} {eu}:chat",
        ];
        let mut own_names = std::collections::HashSet::new();
        for channel in channels {
            let names = naming.channel(channel);
            assert_eq!(names.raw, channel, "Django's name stays as it is");
            // Redis hashes what lies between the first `{` and the next `}`: here the
            // whole channel, its braces written `#(` and `#)`.
            let tag = channel.replace('{', "#(").replace('}', "#)");
            assert_eq!(names.seq, format!("hw:{{{tag}}}#seq"));
            let slot = Slot::for_key(&tag);
            for own in [
                &names.live,
                &names.seq,
                &names.epoch,
                &names.stream,
                &names.bytes,
                &names.members,
                &names.users,
                &names.presence,
                &names.publish_id("u:a", "p-1"),
            ] {
                assert_eq!(Slot::for_key(own), slot, "{own} of {channel}");
                assert!(own_names.insert(own.clone()), "{own} is another's too");
            }
        }
    }
}
