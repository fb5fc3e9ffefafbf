//! What Redis sends the broker: the replies of its scripts, and the messages on a
//! channel's pub/sub channels.
//!
//! An envelope (on `#live`) is `{seq} {epoch} {kind}{raw} {origin}\n{body}`: `kind`
//! is `j` (JSON) or `t` (text), `raw` is `r` when the same message follows raw on
//! the django-websocket-redis channel (else `-`), `origin` the publishing connection
//! or `-`. A presence event (on `#presence`) is `j {session}` or `l {session}` for an
//! anonymous member, `j {session} {user}` or `l {session} {user}` for a user's first
//! and last.

use std::sync::Arc;

use heartwire_core::protocol::parse_session_name;
use serde_json::value::RawValue;

use crate::id::ConnectionId;
use crate::mailbox::Member;
use crate::publication::{Payload, Publication};

/// A script's answer about a channel, or the stamp that stopped it: the channel's
/// data was written in another replication history (see
/// [`scripts`](super::scripts)), and the node must judge it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Checked<T> {
    /// The script did its work.
    Done(T),
    /// Nothing was done: the channel carries this stamp.
    Stale(String),
}

/// What the publish script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Published {
    /// The message's `seq` (the first one's, for a duplicate).
    pub(super) seq: u64,
    /// The channel's epoch.
    pub(super) epoch: Arc<str>,
    /// Whether the publish id had been seen: nothing was published.
    pub(super) duplicate: bool,
    /// Whether the channel got a new epoch first, its history cut by a fail-over.
    pub(super) renewed: bool,
}

impl Published {
    /// Reads the script's reply.
    pub(super) fn parse(reply: &[String]) -> Option<Checked<Self>> {
        let [status, seq, epoch] = reply else {
            return None;
        };
        let (duplicate, renewed) = match status.as_str() {
            "stale" => return Some(Checked::Stale(seq.clone())),
            "published" => (false, false),
            "renewed" => (false, true),
            "duplicate" => (true, false),
            _ => return None,
        };
        Some(Checked::Done(Self {
            seq: seq.parse().ok()?,
            epoch: Arc::from(epoch.as_str()),
            duplicate,
            renewed,
        }))
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
    /// Whether the channel got a new epoch first, its history cut by a fail-over.
    pub(super) renewed: bool,
}

impl Snapshot {
    /// Reads the script's reply for `channel`.
    pub(super) fn parse(channel: &Arc<str>, reply: Vec<String>) -> Option<Checked<Self>> {
        let mut fields = reply.into_iter();
        let renewed = match fields.next()?.as_str() {
            "stale" => return Some(Checked::Stale(fields.next()?)),
            "ok" | "new" => false,
            "renewed" => true,
            _ => return None,
        };
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
        Some(Checked::Done(Self {
            epoch,
            seq,
            recovered,
            retained,
            missed: missed.into_iter().map(Arc::new).collect(),
            renewed,
        }))
    }
}

/// One member as the members script gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MemberEntry {
    /// The session, as Redis holds it (what removing it takes).
    pub(super) session: String,
    /// The node it is connected to.
    pub(super) node: String,
    /// Its user; `None` when anonymous.
    pub(super) user: Option<Arc<str>>,
}

/// The members script's reply: each session with its value, the node then a space
/// and the user when it has one (a node id holds no space; a user name may).
pub(super) fn member_entries(reply: Vec<String>) -> Vec<MemberEntry> {
    let mut fields = reply.into_iter();
    std::iter::from_fn(|| {
        let session = fields.next()?;
        let value = fields.next()?;
        Some(match value.split_once(' ') {
            Some((node, user)) => MemberEntry {
                session,
                node: node.to_owned(),
                user: Some(Arc::from(user)),
            },
            None => MemberEntry {
                session,
                node: value,
                user: None,
            },
        })
    })
    .collect()
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

/// A join or leave announced on a channel's `#presence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PresenceEvent {
    /// The member.
    pub(super) member: Member,
    /// Whether it joined (else it left).
    pub(super) joined: bool,
}

impl PresenceEvent {
    /// Reads `j {session}`, `l {session}`, `j {session} {user}` or `l {session} {user}`.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once(' ')?;
        let joined = match kind {
            "j" => true,
            "l" => false,
            _ => return None,
        };
        let (session, user) = match rest.split_once(' ') {
            Some((session, user)) => (session, Some(Arc::from(user))),
            None => (rest, None),
        };
        let session = parse_session_name(session)?;
        Some(Self {
            member: Member { session, user },
            joined,
        })
    }
}

#[cfg(test)]
mod tests {
    use heartwire_core::protocol::session_name;

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
            "ok", "e1", "5", "1", "1", "last", "4", "t", "-", "four", "5", "j", "9", "5",
        ]
        .map(String::from)
        .to_vec();
        let Checked::Done(snapshot) = Snapshot::parse(&Arc::from("c"), reply).unwrap() else {
            panic!("a snapshot")
        };
        assert_eq!((&*snapshot.epoch, snapshot.seq), ("e1", 5));
        assert_eq!(snapshot.recovered, Some(true));
        assert_eq!(snapshot.retained.as_deref(), Some("last"));
        let seqs: Vec<_> = snapshot.missed.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [4, 5]);
        assert_eq!(snapshot.missed[1].origin, Some(9));
        let nothing = ["renewed", "e1", "0", "-1", "0", ""]
            .map(String::from)
            .to_vec();
        let Checked::Done(snapshot) = Snapshot::parse(&Arc::from("c"), nothing).unwrap() else {
            panic!("a snapshot")
        };
        assert_eq!((snapshot.recovered, snapshot.retained), (None, None));
        assert!(snapshot.renewed);
        let stale = ["stale", "ab12"].map(String::from).to_vec();
        assert!(matches!(
            Snapshot::parse(&Arc::from("c"), stale),
            Some(Checked::Stale(stamp)) if stamp == "ab12"
        ));
    }

    #[test]
    fn publish_replies_name_duplicates_renewals_and_stale_stamps() {
        let reply = ["duplicate", "4", "e"].map(String::from);
        assert_eq!(
            Published::parse(&reply),
            Some(Checked::Done(Published {
                seq: 4,
                epoch: Arc::from("e"),
                duplicate: true,
                renewed: false,
            }))
        );
        let renewed = ["renewed", "1", "f"].map(String::from);
        assert!(matches!(
            Published::parse(&renewed),
            Some(Checked::Done(Published {
                renewed: true,
                seq: 1,
                ..
            }))
        ));
        let stale = ["stale", "ab12", ""].map(String::from);
        assert_eq!(
            Published::parse(&stale),
            Some(Checked::Stale("ab12".into()))
        );
    }

    #[test]
    fn events_name_the_session_and_the_user() {
        let session = session_name(0xa1);
        assert_eq!(
            PresenceEvent::parse(&format!("j {session}")),
            Some(PresenceEvent {
                member: Member {
                    session: 0xa1,
                    user: None
                },
                joined: true
            })
        );
        assert_eq!(
            PresenceEvent::parse(&format!("l {session} ada lovelace")),
            Some(PresenceEvent {
                member: Member {
                    session: 0xa1,
                    user: Some(Arc::from("ada lovelace"))
                },
                joined: false
            })
        );
        assert_eq!(
            PresenceEvent::parse("l 00000000000000ff").map(|event| event.joined),
            Some(false)
        );
        assert!(PresenceEvent::parse("x 1").is_none());
        assert!(PresenceEvent::parse("j not-hex").is_none());
        assert!(PresenceEvent::parse("j not-hex ada").is_none());
    }

    #[test]
    fn members_come_with_their_node_and_user() {
        let reply = ["s1", "n1", "s2", "n2 ada lovelace", "s3", "n1 {ops}"];
        assert_eq!(
            member_entries(reply.map(String::from).to_vec()),
            [
                MemberEntry {
                    session: "s1".into(),
                    node: "n1".into(),
                    user: None
                },
                MemberEntry {
                    session: "s2".into(),
                    node: "n2".into(),
                    user: Some(Arc::from("ada lovelace"))
                },
                MemberEntry {
                    session: "s3".into(),
                    node: "n1".into(),
                    user: Some(Arc::from("{ops}"))
                },
            ]
        );
    }
}
