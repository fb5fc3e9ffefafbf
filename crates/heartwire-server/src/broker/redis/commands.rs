//! The commands the broker sends to Redis, built from plain values: what each one
//! carries can be read (and tested) without a Redis. Each script call lists its
//! `KEYS` and `ARGV` in the order its Lua (in [`scripts`](super::scripts)) reads them.

use std::borrow::Cow;
use std::time::Duration;

use heartwire_core::protocol::{Position, millis, session_name};
use redis::{Script, ScriptInvocation};

use super::names::{ChannelNames, NodeNames, is_ws4redis};
use super::scripts::{
    ADD_MEMBER, MEMBERS, PUBLISH, REMOVE_MEMBER, RENEW, RESTAMP, SNAPSHOT, TOUCH,
};
use crate::broker::contract::{MESSAGE_OVERHEAD, PublishRequest};
use crate::config::Retention;
use crate::mailbox::Member;
use crate::publication::Payload;

/// How long a node's members stay without a sign of life from it.
pub(super) const NODE_TTL: Duration = Duration::from_secs(5);

/// The shortest history expiry: Redis forgets a key with a zero expiry at once.
const MIN_HISTORY_TTL_MS: u64 = 1000;

/// One call of a Lua script, with its keys and arguments.
pub(super) struct ScriptCall<'a> {
    script: &'static Script,
    keys: Vec<String>,
    args: Vec<Cow<'a, str>>,
}

impl<'a> ScriptCall<'a> {
    fn new(script: &'static Script) -> Self {
        Self {
            script,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    fn key(mut self, key: &str) -> Self {
        self.keys.push(key.to_owned());
        self
    }

    fn arg(mut self, arg: impl Into<Cow<'a, str>>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn number(self, arg: u64) -> Self {
        self.arg(arg.to_string())
    }

    fn flag(self, arg: bool) -> Self {
        self.arg(if arg { "1" } else { "0" })
    }

    /// The script, to load it again when Redis lost it.
    pub(super) fn script(&self) -> &'static Script {
        self.script
    }

    /// The call as the Redis client sends it (`EVALSHA`, loading the script first
    /// when Redis does not have it).
    pub(super) fn invocation(&self) -> ScriptInvocation<'static> {
        let mut invocation = self.script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        for arg in &self.args {
            invocation.arg(arg.as_ref());
        }
        invocation
    }
}

/// How long a channel's history and epoch outlive its last use, in milliseconds.
pub(super) fn history_ttl_ms(retention: &Retention) -> u64 {
    millis(retention.history_ttl).max(MIN_HISTORY_TTL_MS)
}

/// The kind letter and body sent for `payload`.
fn encode_payload(payload: &Payload) -> (&'static str, &str) {
    match payload {
        Payload::Json(data) => ("j", data.get()),
        Payload::Text(text) => ("t", text),
    }
}

/// The command that publishes on heartwire's own pub/sub channels: sharded in a
/// cluster, so a message goes only to the nodes of its slot's shard.
fn publish_command(cluster: bool) -> &'static str {
    if cluster { "SPUBLISH" } else { "PUBLISH" }
}

/// Publishes `request` on the channel named by `names`, keeping at most
/// `history_max_bytes` of its history as [`MESSAGE_OVERHEAD`] counts them;
/// `fresh_epoch` starts the channel's epoch if it has none (or if a fail-over cut
/// its history).
pub(super) fn publish<'a>(
    names: &ChannelNames,
    request: &'a PublishRequest,
    retention: &Retention,
    history_max_bytes: usize,
    fresh_epoch: String,
    cluster: bool,
) -> ScriptCall<'a> {
    let (kind, body) = encode_payload(&request.payload);
    let raw = if is_ws4redis(&request.channel) {
        request.payload.raw_text()
    } else {
        Cow::Borrowed("")
    };
    let persist_secs = if request.retain {
        retention.persist_for.as_secs()
    } else {
        0
    };
    let id_key = match &request.ack_id {
        Some(id) => names.publish_id(&request.publisher, id),
        None => names.seq.clone(),
    };
    let origin = request
        .origin
        .as_ref()
        .map_or_else(|| "-".to_owned(), |mailbox| mailbox.id().to_string());
    let call = ScriptCall::new(&PUBLISH)
        .key(&names.seq)
        .key(&names.epoch)
        .key(&names.stream)
        .key(&id_key)
        .key(&names.live)
        .key(&names.bytes);
    // In a cluster the raw key hashes elsewhere: the node keeps its value apart.
    let call = if cluster { call } else { call.key(&names.raw) };
    call.arg(body)
        .arg(kind)
        .arg(origin)
        .arg(raw)
        .number(persist_secs)
        .number(retention.history_size as u64)
        .number(history_ttl_ms(retention))
        .number(retention.dedup_window.as_secs().max(1))
        .arg(fresh_epoch)
        .flag(request.ack_id.is_some())
        .arg(publish_command(cluster))
        .arg(names.raw.clone())
        .number(history_max_bytes as u64)
        .number(MESSAGE_OVERHEAD as u64)
}

/// Reads the channel named by `names`: its epoch and latest `seq`, the messages after
/// `since`, and (on one server) its retained value when `with_retained`.
pub(super) fn snapshot(
    names: &ChannelNames,
    since: Option<&Position>,
    with_retained: bool,
    retention: &Retention,
    fresh_epoch: String,
    cluster: bool,
) -> ScriptCall<'static> {
    let call = ScriptCall::new(&SNAPSHOT)
        .key(&names.seq)
        .key(&names.epoch)
        .key(&names.stream);
    let call = if cluster { call } else { call.key(&names.raw) };
    call.arg(fresh_epoch)
        .arg(since.map_or_else(String::new, |since| since.epoch.clone()))
        .number(since.map_or(0, |since| since.seq))
        .flag(with_retained && !cluster)
        .number(history_ttl_ms(retention))
}

/// Gives the channel named by `names` a new epoch, if its stamp is still `stamp`.
pub(super) fn renew(
    names: &ChannelNames,
    stamp: &str,
    retention: &Retention,
    fresh_epoch: String,
) -> ScriptCall<'static> {
    ScriptCall::new(&RENEW)
        .key(&names.epoch)
        .key(&names.seq)
        .key(&names.stream)
        .arg(stamp.to_owned())
        .arg(fresh_epoch)
        .number(history_ttl_ms(retention))
}

/// Makes this master's history the stamp of the channel named by `names`, if its
/// stamp is still `stamp`.
pub(super) fn restamp(names: &ChannelNames, stamp: &str) -> ScriptCall<'static> {
    ScriptCall::new(&RESTAMP)
        .key(&names.epoch)
        .arg(stamp.to_owned())
}

/// Keeps the history of the channel named by `names` for another history ttl.
pub(super) fn touch(names: &ChannelNames, retention: &Retention) -> ScriptCall<'static> {
    ScriptCall::new(&TOUCH)
        .key(&names.seq)
        .key(&names.epoch)
        .key(&names.stream)
        .key(&names.bytes)
        .number(history_ttl_ms(retention))
}

/// Adds `member`, of `node`, to the members of the channel named by `names`.
pub(super) fn add_member<'a>(
    names: &ChannelNames,
    member: &'a Member,
    node: &NodeNames,
    retention: &Retention,
    cluster: bool,
) -> ScriptCall<'a> {
    ScriptCall::new(&ADD_MEMBER)
        .key(&names.members)
        .key(&names.presence)
        .key(&names.users)
        .arg(session_name(member.session))
        .arg(node.id.clone())
        .number(history_ttl_ms(retention))
        .arg(publish_command(cluster))
        .arg(member.user.as_deref().unwrap_or(""))
}

/// Removes `session` from the members of the channel named by `names`.
pub(super) fn remove_member(
    names: &ChannelNames,
    session: &str,
    cluster: bool,
) -> ScriptCall<'static> {
    ScriptCall::new(&REMOVE_MEMBER)
        .key(&names.members)
        .key(&names.presence)
        .key(&names.users)
        .arg(session.to_owned())
        .arg(publish_command(cluster))
}

/// The members of the channel named by `names`, each with its node and user.
pub(super) fn members(names: &ChannelNames, retention: &Retention) -> ScriptCall<'static> {
    ScriptCall::new(&MEMBERS)
        .key(&names.members)
        .key(&names.users)
        .number(history_ttl_ms(retention))
}

/// Proves `node` alive for another [`NODE_TTL`].
pub(super) fn refresh_node(node: &NodeNames) -> redis::Cmd {
    let mut command = redis::cmd("SET");
    command
        .arg(&node.key)
        .arg("1")
        .arg("PX")
        .arg(millis(NODE_TTL));
    command
}

/// Whether the node whose liveness key is `key` is alive.
pub(super) fn node_alive(key: &str) -> redis::Cmd {
    let mut command = redis::cmd("EXISTS");
    command.arg(key);
    command
}

/// Keeps `text` as the last value of the raw channel named by `names` for
/// `seconds`, as django-websocket-redis's publisher does (in a cluster, where the
/// publish script cannot reach the raw key).
pub(super) fn persist_raw(names: &ChannelNames, text: &str, seconds: u64) -> redis::Cmd {
    let mut command = redis::cmd("SETEX");
    command.arg(&names.raw).arg(seconds).arg(text);
    command
}

/// The last value of the raw channel named by `names` (in a cluster).
pub(super) fn read_retained(names: &ChannelNames) -> redis::Cmd {
    let mut command = redis::cmd("GET");
    command.arg(&names.raw);
    command
}

/// Waits until `replicas` replicas hold every write made so far on this connection,
/// for at most `timeout`.
pub(super) fn wait_for_replicas(replicas: u32, timeout: Duration) -> redis::Cmd {
    let mut command = redis::cmd("WAIT");
    command.arg(replicas).arg(millis(timeout));
    command
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mailbox::Mailbox;

    fn retention() -> Retention {
        Retention {
            persist_for: Duration::from_secs(30),
            history_size: 100,
            history_ttl: Duration::from_millis(10),
            dedup_window: Duration::from_millis(500),
        }
    }

    fn request(channel: &str, retain: bool, ack_id: Option<&str>) -> PublishRequest {
        PublishRequest {
            channel: Arc::from(channel),
            payload: Payload::Json(serde_json::value::to_raw_value("hi").unwrap()),
            retain,
            origin: Some(Arc::new(Mailbox::new(42, 8))),
            ack_id: ack_id.map(str::to_owned),
            publisher: Arc::from("u:test"),
        }
    }

    fn args<'c>(call: &'c ScriptCall<'_>) -> Vec<&'c str> {
        call.args.iter().map(AsRef::as_ref).collect()
    }

    #[test]
    fn a_ws4redis_publish_with_an_id_is_deduplicated_published_raw_and_retained() {
        let names = ChannelNames::new("", "broadcast:chat", false);
        let request = request("broadcast:chat", true, Some("7"));
        let call = publish(&names, &request, &retention(), 4096, "e1".into(), false);
        assert_eq!(
            call.keys,
            [
                "hw:broadcast:chat#seq",
                "hw:broadcast:chat#epoch",
                "hw:broadcast:chat#stream",
                "hw:broadcast:chat#id:6:u:test:7",
                "hw:broadcast:chat#live",
                "hw:broadcast:chat#bytes",
                "broadcast:chat",
            ]
        );
        // A JSON string goes raw as its contents; the expiries have their floors.
        assert_eq!(
            args(&call),
            [
                "\"hi\"",
                "j",
                "42",
                "hi",
                "30",
                "100",
                "1000",
                "1",
                "e1",
                "1",
                "PUBLISH",
                "broadcast:chat",
                "4096",
                "160"
            ]
        );
    }

    #[test]
    fn in_a_cluster_a_publish_is_sharded_and_declares_only_keys_of_its_slot() {
        let names = ChannelNames::new("", "broadcast:chat", true);
        let request = request("broadcast:chat", true, Some("7"));
        let call = publish(&names, &request, &retention(), 4096, "e1".into(), true);
        assert_eq!(call.keys.len(), 6, "the raw key is not declared");
        assert!(call.keys.iter().all(|key| key.contains("{broadcast:chat}")));
        let args = args(&call);
        assert_eq!(&args[10..12], ["SPUBLISH", "broadcast:chat"]);
        let read = snapshot(&names, None, true, &retention(), "e2".into(), true);
        assert_eq!(read.keys.len(), 3);
        assert_eq!(
            self::args(&read)[3],
            "0",
            "the retained value is read apart"
        );
    }

    #[test]
    fn a_plain_publish_without_an_id_is_neither_raw_nor_retained() {
        let names = ChannelNames::new("", "room:1", false);
        let mut request = request("room:1", true, None);
        request.payload = Payload::Text("plain".into());
        request.origin = None;
        let call = publish(&names, &request, &retention(), 4096, "e1".into(), false);
        // Without an id, the seq key stands in for the id key.
        assert_eq!(call.keys[3], names.seq);
        assert_eq!(
            args(&call)[..10],
            ["plain", "t", "-", "", "30", "100", "1000", "1", "e1", "0"]
        );
        let not_retained = PublishRequest {
            retain: false,
            ..request
        };
        let call = publish(
            &names,
            &not_retained,
            &retention(),
            4096,
            "e1".into(),
            false,
        );
        assert_eq!(args(&call)[4], "0");
    }

    #[test]
    fn a_snapshot_asks_for_a_position_only_when_given_one() {
        let names = ChannelNames::new("", "room:1", false);
        let none = snapshot(&names, None, false, &retention(), "e2".into(), false);
        assert_eq!(args(&none), ["e2", "", "0", "0", "1000"]);
        let since = Position {
            epoch: "e1".into(),
            seq: 41,
        };
        let some = snapshot(&names, Some(&since), true, &retention(), "e2".into(), false);
        assert_eq!(args(&some), ["e2", "e1", "41", "1", "1000"]);
        assert_eq!(some.keys.len(), 4);
    }

    #[test]
    fn a_stale_channel_is_renewed_or_restamped_only_if_its_stamp_is_unchanged() {
        let names = ChannelNames::new("", "room:1", false);
        let renew = renew(&names, "abc", &retention(), "e3".into());
        assert_eq!(
            renew.keys,
            [names.epoch.clone(), names.seq.clone(), names.stream.clone()]
        );
        assert_eq!(args(&renew), ["abc", "e3", "1000"]);
        let restamp = restamp(&names, "abc");
        assert_eq!((restamp.keys.len(), args(&restamp)), (1, vec!["abc"]));
    }

    #[test]
    fn members_are_named_by_their_session_node_and_user() {
        let names = ChannelNames::new("", "room:1", false);
        let node = NodeNames::new("", "0123456789abcdef".into());
        let anonymous = Member {
            session: 0xa1,
            user: None,
        };
        let add = add_member(&names, &anonymous, &node, &retention(), false);
        assert_eq!(
            add.keys,
            ["hw:room:1#members", "hw:room:1#presence", "hw:room:1#users"]
        );
        assert_eq!(
            args(&add),
            [
                "00000000000000a1",
                "0123456789abcdef",
                "1000",
                "PUBLISH",
                ""
            ]
        );
        let ada = Member {
            session: 0xa1,
            user: Some(Arc::from("ada lovelace")),
        };
        assert_eq!(
            args(&add_member(&names, &ada, &node, &retention(), true))[3..],
            ["SPUBLISH", "ada lovelace"]
        );
        let remove = remove_member(&names, "00000000000000a1", true);
        assert_eq!(remove.keys, add.keys);
        assert_eq!(args(&remove), ["00000000000000a1", "SPUBLISH"]);
        let read = members(&names, &retention());
        assert_eq!(read.keys, ["hw:room:1#members", "hw:room:1#users"]);
        assert_eq!(args(&read), ["1000"]);
        let refresh: Vec<Vec<u8>> = refresh_node(&node)
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.to_vec(),
                other => panic!("not a plain argument: {other:?}"),
            })
            .collect();
        assert_eq!(
            refresh,
            [
                &b"SET"[..],
                b"hw#node:0123456789abcdef",
                b"1",
                b"PX",
                b"5000"
            ]
        );
    }
}
