//! The Lua scripts that make each channel operation atomic across nodes, and the
//! parsing of what they return.
//!
//! [`PUBLISH`] checks the publish id, takes the next `seq` (`INCR`), appends the
//! message to the channel's stream (`XADD … MAXLEN cap 0-{seq}`), and publishes the
//! envelope to every node, all in one step: every node sees a channel's messages in
//! one `seq` order, and the history holds exactly what was published. [`SNAPSHOT`]
//! reads a channel's epoch, latest `seq`, the messages after a position and the
//! retained ws4redis value, also in one step.
//!
//! An envelope is `{seq} {epoch} {kind}{raw} {origin}\n{body}`: `kind` is `j` (JSON)
//! or `t` (text), `raw` is `r` when the same message follows raw on the
//! django-websocket-redis channel (else `-`), `origin` the publishing connection or
//! `-`.

use std::sync::{Arc, LazyLock};

use redis::Script;
use serde_json::value::RawValue;

use crate::broker::{Payload, Publication};
use crate::mailbox::ConnectionId;

/// Publishes one message. KEYS: seq, epoch, stream, publish id (or the seq key
/// again when there is none), live channel, raw channel. ARGV: body, kind, origin,
/// raw text (empty: not published raw), persist seconds (0: no SETEX), history cap,
/// history ttl in ms, dedup window in seconds, a fresh epoch, has id (`1`/`0`).
/// Returns `{duplicate 0/1, seq, epoch}`.
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seq_key, epoch_key, stream_key, id_key, live, raw_channel =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local body, kind, origin, raw = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local persist, cap, ttl, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local fresh_epoch, has_id = ARGV[9], ARGV[10] == '1'
local epoch = redis.call('GET', epoch_key)
if has_id then
    local seen = redis.call('GET', id_key)
    if seen and epoch then return {'1', seen, epoch} end
end
if not epoch then
    epoch = fresh_epoch
    redis.call('SET', epoch_key, epoch)
    redis.call('DEL', seq_key, stream_key)
end
local seq = redis.call('INCR', seq_key)
if cap > 0 then
    redis.call('XADD', stream_key, 'MAXLEN', cap, '0-' .. seq, 'k', kind, 'o', origin, 'd', body)
    redis.call('PEXPIRE', stream_key, ttl)
end
redis.call('PEXPIRE', seq_key, ttl)
redis.call('PEXPIRE', epoch_key, ttl)
if has_id then redis.call('SET', id_key, seq, 'EX', window) end
local raw_flag = '-'
if raw ~= '' then raw_flag = 'r' end
redis.call('PUBLISH', live, seq .. ' ' .. epoch .. ' ' .. kind .. raw_flag .. ' ' .. origin .. '\n' .. body)
if raw ~= '' then
    redis.call('PUBLISH', raw_channel, raw)
    if persist > 0 then redis.call('SETEX', raw_channel, persist, raw) end
end
return {'0', tostring(seq), epoch}
"#,
    )
});

/// Reads a channel. KEYS: seq, epoch, stream, raw channel. ARGV: a fresh epoch, the
/// asked epoch (empty: none asked), the asked seq, want retained (`1`/`0`), history
/// ttl in ms. Returns `{epoch, seq, recovered (-1 not asked, 0, 1), has retained,
/// retained, then seq, kind, origin, body for each message after the position}`.
pub(super) static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seq_key, epoch_key, stream_key, raw_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fresh_epoch, since_epoch, since = ARGV[1], ARGV[2], tonumber(ARGV[3])
local want_retained, ttl = ARGV[4] == '1', tonumber(ARGV[5])
local epoch = redis.call('GET', epoch_key)
if not epoch then
    epoch = fresh_epoch
    redis.call('SET', epoch_key, epoch, 'PX', ttl)
    redis.call('DEL', seq_key, stream_key)
end
local seq = tonumber(redis.call('GET', seq_key) or '0')
local reply = {epoch, tostring(seq), '-1', '0', ''}
if since_epoch ~= '' then
    reply[3] = '0'
    if since_epoch == epoch and since <= seq then
        if since == seq then
            reply[3] = '1'
        else
            local first = '0-' .. (since + 1)
            local entries = redis.call('XRANGE', stream_key, first, '0-' .. seq)
            if #entries > 0 and entries[1][1] == first then
                reply[3] = '1'
                for _, entry in ipairs(entries) do
                    local fields = entry[2]
                    table.insert(reply, string.sub(entry[1], 3))
                    table.insert(reply, fields[2])
                    table.insert(reply, fields[4])
                    table.insert(reply, fields[6])
                end
            end
        end
    end
end
if want_retained then
    local retained = redis.call('GET', raw_channel)
    if retained then
        reply[4] = '1'
        reply[5] = retained
    end
end
return reply
"#,
    )
});

/// Keeps a channel's history alive while this node has subscribers. KEYS: seq,
/// epoch, stream. ARGV: history ttl in ms.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[1]) end
return 0
"#,
    )
});

/// What the publish script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Published {
    /// The message's `seq` (the first one's, for a duplicate).
    pub(super) seq: u64,
    /// Whether the publish id had been seen: nothing was published.
    pub(super) duplicate: bool,
}

impl Published {
    /// Reads the script's reply.
    pub(super) fn parse(reply: &[String]) -> Option<Self> {
        match reply {
            [duplicate, seq, _epoch] => Some(Self {
                seq: seq.parse().ok()?,
                duplicate: duplicate == "1",
            }),
            _ => None,
        }
    }
}

/// What the snapshot script answered.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// The channel's epoch.
    pub(super) epoch: Arc<str>,
    /// The channel's latest `seq`.
    pub(super) seq: u64,
    /// Whether the messages after the asked position follow (`None`: none asked).
    pub(super) recovered: Option<bool>,
    /// The raw value kept for late ws4redis joiners.
    pub(super) retained: Option<String>,
    /// The messages after the asked position, in order.
    pub(super) missed: Vec<Arc<Publication>>,
}

impl Snapshot {
    /// Reads the script's reply for `channel`.
    pub(super) fn parse(channel: &Arc<str>, reply: Vec<String>) -> Option<Self> {
        let mut fields = reply.into_iter();
        let epoch: Arc<str> = Arc::from(fields.next()?);
        let seq = fields.next()?.parse().ok()?;
        let recovered = match fields.next()?.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        };
        let has_retained = fields.next()? == "1";
        let retained = fields.next().filter(|_| has_retained);
        let rest: Vec<String> = fields.collect();
        let missed = rest
            .chunks_exact(4)
            .map(|entry| {
                let [seq, kind, origin, body] = entry else {
                    unreachable!("chunks_exact yields four")
                };
                let envelope = Envelope {
                    seq: seq.parse().ok()?,
                    epoch: epoch.clone(),
                    kind: kind.chars().next()?,
                    raw_follows: false,
                    origin: origin.parse().ok(),
                };
                envelope.publication(channel.clone(), body.clone())
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            epoch,
            seq,
            recovered,
            retained,
            missed: missed.into_iter().map(Arc::new).collect(),
        })
    }
}

/// The header of a sequenced message between nodes. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Envelope {
    /// The message's position.
    pub(super) seq: u64,
    /// The channel's epoch when it was published.
    pub(super) epoch: Arc<str>,
    /// `j` for JSON, `t` for text.
    pub(super) kind: char,
    /// The same message follows raw on the django-websocket-redis channel.
    pub(super) raw_follows: bool,
    /// The connection that published it.
    pub(super) origin: Option<ConnectionId>,
}

impl Envelope {
    /// Splits a pub/sub message into its envelope and body.
    pub(super) fn parse(message: &str) -> Option<(Self, &str)> {
        let (header, body) = message.split_once('\n')?;
        let mut parts = header.split(' ');
        let seq = parts.next()?.parse().ok()?;
        let epoch = Arc::from(parts.next()?);
        let mut flags = parts.next()?.chars();
        let kind = flags.next()?;
        let raw_follows = flags.next()? == 'r';
        let origin = parts.next()?.parse().ok();
        Some((
            Self {
                seq,
                epoch,
                kind,
                raw_follows,
                origin,
            },
            body,
        ))
    }

    /// The message of `channel` this envelope describes, around `body`.
    pub(super) fn publication(&self, channel: Arc<str>, body: String) -> Option<Publication> {
        let payload = match self.kind {
            'j' => Payload::Json(RawValue::from_string(body).ok()?),
            't' => Payload::Text(body.into_boxed_str()),
            _ => return None,
        };
        Some(Publication::new(channel, self.seq, payload, self.origin))
    }
}

/// The kind letter and body sent for `payload`.
pub(super) fn encode_payload(payload: &Payload) -> (&'static str, &str) {
    match payload {
        Payload::Json(data) => ("j", data.get()),
        Payload::Text(text) => ("t", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_split_into_header_and_body() {
        let (envelope, body) = Envelope::parse("12 e1 jr 77\n{\"a\":\"x\\ny\"}").unwrap();
        assert_eq!(
            envelope,
            Envelope {
                seq: 12,
                epoch: Arc::from("e1"),
                kind: 'j',
                raw_follows: true,
                origin: Some(77),
            }
        );
        assert_eq!(body, "{\"a\":\"x\\ny\"}");
        let (plain, body) = Envelope::parse("1 e t- -\nline one\nline two").unwrap();
        assert_eq!((plain.origin, plain.raw_follows), (None, false));
        assert_eq!(body, "line one\nline two");
        let message = plain.publication(Arc::from("c"), body.into()).unwrap();
        assert_eq!(message.text_frame().as_str(), "line one\nline two");
        assert!(Envelope::parse("no header").is_none());
        assert!(Envelope::parse("x e j- -\n1").is_none());
    }

    #[test]
    fn snapshots_carry_the_missed_messages() {
        let reply = [
            "e1", "5", "1", "1", "last", "4", "t", "-", "four", "5", "j", "9", "5",
        ]
        .map(String::from)
        .to_vec();
        let snapshot = Snapshot::parse(&Arc::from("c"), reply).unwrap();
        assert_eq!((&*snapshot.epoch, snapshot.seq), ("e1", 5));
        assert_eq!(snapshot.recovered, Some(true));
        assert_eq!(snapshot.retained.as_deref(), Some("last"));
        let seqs: Vec<_> = snapshot.missed.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [4, 5]);
        assert_eq!(snapshot.missed[1].origin, Some(9));
        let nothing = ["e1", "0", "-1", "0", ""].map(String::from).to_vec();
        let snapshot = Snapshot::parse(&Arc::from("c"), nothing).unwrap();
        assert_eq!((snapshot.recovered, snapshot.retained), (None, None));
    }

    #[test]
    fn publish_replies_name_duplicates() {
        let reply = ["1", "4", "e"].map(String::from);
        assert_eq!(
            Published::parse(&reply),
            Some(Published {
                seq: 4,
                duplicate: true
            })
        );
    }
}
