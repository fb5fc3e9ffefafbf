//! The JSON envelopes of the native `/ws` endpoint, in both directions.
//!
//! Every frame is a JSON object in a text frame whose `op` field names its kind.
//! [`ClientFrame`] is what a client sends, [`ServerFrame`] what the server sends;
//! `docs/PROTOCOL.md` is the specification these types follow.
//!
//! Delivered messages are the server's hot path: one message goes to many subscribers,
//! so it is encoded once with [`encode_delivery`], which copies the publisher's JSON
//! through without parsing it again.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorCode};

/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// A frame a client sends on `/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A liveness probe. Every other field is echoed back in the `pong`.
    Ping {
        /// Fields echoed in the answer, such as a client timestamp.
        #[serde(flatten)]
        echo: Map<String, Value>,
    },
    /// Start receiving a channel's messages; with `since`, first the ones missed
    /// after that position.
    Subscribe {
        /// The channel.
        channel: String,
        /// The last position this client saw, to resume from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
    },
    /// Stop receiving a channel's messages.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Send `data` to every subscriber of `channel`.
    Publish {
        /// The channel.
        channel: String,
        /// Any JSON value.
        data: Value,
        /// When present, the server answers with an `ack` carrying it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Ask who is subscribed to a channel whose presence the server tracks.
    Presence {
        /// The channel.
        channel: String,
    },
    /// A fresh token for the same user, sent before the connection's token expires.
    Refresh {
        /// The token.
        token: String,
    },
    /// What the client saw of its previous session, sent first after a `hello` that
    /// says `reports`. Its fields are read by
    /// [`SessionReport::from_fields`](crate::report::SessionReport::from_fields),
    /// which checks each one.
    Report {
        /// The report's fields.
        #[serde(flatten)]
        fields: Map<String, Value>,
    },
}

impl ClientFrame {
    /// Every `op` a client may send.
    pub const OPS: [&'static str; 7] = [
        "ping",
        "subscribe",
        "unsubscribe",
        "publish",
        "presence",
        "refresh",
        "report",
    ];

    /// Parses a text frame, naming precisely what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| Error::request(ErrorCode::BadJson, format!("not valid JSON: {err}")))?;
        let Value::Object(object) = &value else {
            return Err(Error::request(ErrorCode::BadJson, "expected a JSON object"));
        };
        let op = match object.get("op") {
            Some(Value::String(op)) => op.as_str(),
            Some(_) => {
                return Err(Error::request(
                    ErrorCode::BadRequest,
                    "`op` must be a string",
                ));
            }
            None => return Err(Error::request(ErrorCode::BadRequest, "missing field `op`")),
        };
        if !Self::OPS.contains(&op) {
            return Err(Error::request(
                ErrorCode::UnknownOp,
                format!(
                    "unknown op `{op}`; expected one of {}",
                    Self::OPS.join(", ")
                ),
            ));
        }
        let frame: Self = serde_json::from_value(value)
            .map_err(|err| Error::request(ErrorCode::BadRequest, err.to_string()))?;
        if let Self::Subscribe { channel, .. }
        | Self::Unsubscribe { channel }
        | Self::Publish { channel, .. }
        | Self::Presence { channel } = &frame
        {
            validate_channel(channel)?;
        }
        Ok(frame)
    }

    /// The frame as the JSON text sent on the wire.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a ClientFrame always serializes")
    }
}

/// A frame the server sends on `/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame of every connection.
    Hello {
        /// This connection's session id.
        session: String,
        /// The server pings after this much inbound silence, in milliseconds.
        ping_interval_ms: u64,
        /// The server drops a connection silent this long after a Ping, in milliseconds.
        ping_timeout_ms: u64,
        /// Server name and version, such as `heartwire/0.1.0`.
        server: String,
        /// The user this connection was identified as; absent when anonymous.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Milliseconds until the identity expires unless refreshed; absent when it
        /// does not expire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_in_ms: Option<u64>,
        /// The server takes a `report` of the client's previous session.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reports: bool,
    },
    /// The answer to a `ping`, with the ping's other fields.
    Pong {
        /// The fields of the `ping`, echoed.
        #[serde(flatten)]
        echo: Map<String, Value>,
    },
    /// A subscription is in place.
    Subscribed {
        /// The channel.
        channel: String,
        /// The sequence number of the channel's latest message (0 when none yet).
        seq: u64,
        /// The channel's epoch: sequence numbers compare only within one epoch.
        epoch: String,
        /// Present when the subscribe carried `since`: `true` when every message
        /// after it follows, in order, before live ones; `false` when they cannot
        /// (history too short, or the epoch changed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// A subscription is gone.
    Unsubscribed {
        /// The channel.
        channel: String,
    },
    /// A message published on a subscribed channel.
    Message {
        /// The channel.
        channel: String,
        /// The message's position in the channel, counting from 1.
        seq: u64,
        /// The published JSON value.
        data: Value,
    },
    /// A publish with an `id` was accepted.
    Ack {
        /// The publish's `id`.
        id: String,
        /// The sequence number the message got in its channel.
        seq: u64,
        /// The id was seen before within the deduplication window: the message was
        /// published once, and `seq` is the one it got then.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A request was refused; the connection stays open.
    Error {
        /// A stable, machine-readable code.
        code: ErrorCode,
        /// A sentence for people.
        reason: String,
        /// The `id` of the publish this error answers, if it answers one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The channel this error is about, when it is about one (a `forbidden`
        /// subscribe or publish).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// When a refused request may be sent again, in milliseconds (`rate_limited`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The answer to `presence`: the sessions subscribed to the channel, on every node,
    /// and the users they are.
    Presence {
        /// The channel.
        channel: String,
        /// Session ids (as in `hello`), sorted.
        members: Vec<String>,
        /// The identified users among the members, sorted, each with its number of
        /// connections on the channel. Anonymous sessions are in `members` only.
        #[serde(default)]
        users: Vec<PresenceUser>,
    },
    /// Someone arrived on a channel with presence that this connection is subscribed
    /// to: an anonymous session that subscribed, or a user whose first connection
    /// did (its other connections arrive unannounced).
    Join {
        /// The channel.
        channel: String,
        /// The session that joined.
        session: String,
        /// The user that joined; absent for an anonymous session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// Someone left such a channel: an anonymous session, or a user whose last
    /// connection there unsubscribed, disconnected, or whose node stopped answering.
    Leave {
        /// The channel.
        channel: String,
        /// The session that left.
        session: String,
        /// The user that left; absent for an anonymous session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// The server is about to close; come back after `after_ms`.
    Reconnect {
        /// The delay, in milliseconds, to wait before reconnecting.
        after_ms: u64,
        /// Why the server is closing.
        reason: String,
    },
    /// The answer to a `refresh` whose token was accepted.
    Refreshed {
        /// Milliseconds until the new token expires; absent when it does not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_in_ms: Option<u64>,
    },
}

impl ServerFrame {
    /// The frame as the JSON text sent on the wire.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a ServerFrame always serializes")
    }

    /// Parses a text frame from the server.
    pub fn parse(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text)
            .map_err(|err| Error::request(ErrorCode::BadJson, err.to_string()))
    }
}

/// A user among the members of a channel, in a `presence` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    /// The user, as in `hello`.
    pub user: String,
    /// How many of its connections are subscribed to the channel, on every node.
    pub connections: u32,
}

/// Where a client stands in a channel: the channel's epoch and the last `seq` seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The channel's epoch.
    pub epoch: String,
    /// The last sequence number seen.
    pub seq: u64,
}

#[derive(Serialize)]
struct Delivery<'a> {
    op: &'static str,
    channel: &'a str,
    seq: u64,
    data: &'a RawValue,
}

/// Encodes a `message` frame around `data`, JSON text that is copied through as is.
///
/// Equal to `ServerFrame::Message { .. }.encode()` without parsing `data`.
pub fn encode_delivery(channel: &str, seq: u64, data: &RawValue) -> String {
    serde_json::to_string(&Delivery {
        op: "message",
        channel,
        seq,
        data,
    })
    .expect("a delivery always serializes")
}

/// Checks a channel name: 1 to [`MAX_CHANNEL_LEN`] bytes of ASCII letters, digits
/// and `-_.:@/`.
pub fn validate_channel(channel: &str) -> Result<(), Error> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:@/".contains(c);
    if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN || !channel.chars().all(allowed) {
        return Err(Error::request(
            ErrorCode::InvalidChannel,
            format!(
                "invalid channel name {channel:?}: use 1 to {MAX_CHANNEL_LEN} ASCII letters, digits or -_.:@/"
            ),
        ));
    }
    Ok(())
}

/// The text form of a session id, as in `hello`, `join`, `leave` and `presence`:
/// 16 lowercase hex digits.
pub fn session_name(id: u64) -> String {
    format!("{id:016x}")
}

/// A fresh random id in the same 16-hex-digit form, for what must be unique without
/// anyone being asked: a channel's epoch, a node, the prefix of a client's publish ids.
pub fn random_id() -> String {
    session_name(rand::random())
}

/// Reads a session id written by [`session_name`]; `None` for anything else.
pub fn parse_session_name(name: &str) -> Option<u64> {
    if name.len() != 16
        || !name
            .bytes()
            .all(|digit| matches!(digit, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// A duration as the protocol's `_ms` fields carry it: whole milliseconds, at most
/// `u64::MAX`.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> ErrorCode {
        match ClientFrame::parse(text) {
            Err(Error::Request { code, .. }) => code,
            other => panic!("expected a request error for {text}, got {other:?}"),
        }
    }

    #[test]
    fn parses_every_client_op() {
        assert_eq!(
            ClientFrame::parse(r#"{"op":"subscribe","channel":"room:1"}"#).unwrap(),
            ClientFrame::Subscribe {
                channel: "room:1".into(),
                since: None
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"op":"subscribe","channel":"a","since":{"epoch":"e","seq":4}}"#)
                .unwrap(),
            ClientFrame::Subscribe {
                channel: "a".into(),
                since: Some(Position {
                    epoch: "e".into(),
                    seq: 4
                })
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"op":"publish","channel":"a","data":{"x":[1]},"id":"7"}"#)
                .unwrap(),
            ClientFrame::Publish {
                channel: "a".into(),
                data: serde_json::json!({"x":[1]}),
                id: Some("7".into())
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"op":"presence","channel":"room:1"}"#).unwrap(),
            ClientFrame::Presence {
                channel: "room:1".into()
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"op":"refresh","token":"a.b.c"}"#).unwrap(),
            ClientFrame::Refresh {
                token: "a.b.c".into()
            }
        );
        let ClientFrame::Ping { echo } = ClientFrame::parse(r#"{"op":"ping","t":12.5}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(echo.get("t"), Some(&serde_json::json!(12.5)));
    }

    #[test]
    fn names_what_is_wrong_with_a_bad_frame() {
        assert_eq!(code_of("{not json"), ErrorCode::BadJson);
        assert_eq!(code_of("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code_of(r#"{"channel":"a"}"#), ErrorCode::BadRequest);
        assert_eq!(code_of(r#"{"op":"dance"}"#), ErrorCode::UnknownOp);
        assert_eq!(code_of(r#"{"op":"subscribe"}"#), ErrorCode::BadRequest);
        assert_eq!(code_of(r#"{"op":"refresh"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code_of(r#"{"op":"subscribe","channel":"no spaces"}"#),
            ErrorCode::InvalidChannel
        );
        assert_eq!(
            code_of(r#"{"op":"publish","channel":"","data":1}"#),
            ErrorCode::InvalidChannel
        );
    }

    #[test]
    fn pong_echoes_the_ping_fields() {
        let ClientFrame::Ping { echo } =
            ClientFrame::parse(r#"{"op":"ping","t":1,"n":"x"}"#).unwrap()
        else {
            panic!()
        };
        let pong = ServerFrame::Pong { echo }.encode();
        let value: Value = serde_json::from_str(&pong).unwrap();
        assert_eq!(value, serde_json::json!({"op":"pong","t":1,"n":"x"}));
    }

    #[test]
    fn delivery_encodes_like_a_message_frame() {
        let data = RawValue::from_string(r#"{"text":"hi","n":[1,2]}"#.into()).unwrap();
        let fast = encode_delivery("room", 9, &data);
        let slow = ServerFrame::Message {
            channel: "room".into(),
            seq: 9,
            data: serde_json::from_str(data.get()).unwrap(),
        }
        .encode();
        // Equal up to key order inside `data`, which the fast path keeps as written.
        assert!(fast.contains(data.get()));
        assert_eq!(
            ServerFrame::parse(&fast).unwrap(),
            ServerFrame::parse(&slow).unwrap()
        );
    }

    /// Found by fuzzing (targets `client_envelope` and `server_envelope`): a number
    /// was read to a neighbour of the closest double, so what subscribers received
    /// (or a `pong` echoed) was another number than the one sent.
    #[test]
    fn numbers_reach_subscribers_and_pongs_as_sent() {
        let found = r#"{"op":"publish","channel":"e/f","data":[5,-4,1e301,-1.5e-308,1844674407370944073709551715,-9223372036854775708,0.1]}"#;
        let publish = ClientFrame::parse(found).unwrap();
        let ClientFrame::Publish { channel, data, .. } = publish.clone() else {
            panic!("{publish:?}")
        };
        assert_eq!(ClientFrame::parse(&publish.encode()).unwrap(), publish);
        let raw = serde_json::value::to_raw_value(&data).unwrap();
        let delivered = ServerFrame::parse(&encode_delivery(&channel, 1, &raw)).unwrap();
        assert_eq!(
            delivered,
            ServerFrame::Message {
                channel,
                seq: 1,
                data
            }
        );

        let pong = ServerFrame::parse(r#"{"op":"pong"," at":1.1e-69}"#).unwrap();
        assert_eq!(ServerFrame::parse(&pong.encode()).unwrap(), pong);
        assert_eq!(pong.encode(), r#"{"op":"pong"," at":1.1e-69}"#);
    }

    #[test]
    fn channel_names() {
        for good in [
            "a",
            "room:1",
            "broadcast:chat",
            "user@example.org/x",
            &"x".repeat(MAX_CHANNEL_LEN),
        ] {
            assert!(validate_channel(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "é", "a\n", &"x".repeat(MAX_CHANNEL_LEN + 1)] {
            assert!(validate_channel(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = [
            ServerFrame::Hello {
                session: "s1".into(),
                ping_interval_ms: 20_000,
                ping_timeout_ms: 20_000,
                server: "heartwire/0.1.0".into(),
                user: None,
                expires_in_ms: None,
                reports: false,
            },
            ServerFrame::Hello {
                session: "s2".into(),
                ping_interval_ms: 20_000,
                ping_timeout_ms: 20_000,
                server: "heartwire/0.1.0".into(),
                user: Some("ada".into()),
                expires_in_ms: Some(60_000),
                reports: true,
            },
            ServerFrame::Subscribed {
                channel: "a".into(),
                seq: 0,
                epoch: "e1".into(),
                recovered: None,
            },
            ServerFrame::Subscribed {
                channel: "a".into(),
                seq: 9,
                epoch: "e1".into(),
                recovered: Some(false),
            },
            ServerFrame::Unsubscribed {
                channel: "a".into(),
            },
            ServerFrame::Ack {
                id: "1".into(),
                seq: 3,
                duplicate: false,
            },
            ServerFrame::Ack {
                id: "1".into(),
                seq: 3,
                duplicate: true,
            },
            ServerFrame::Error {
                code: ErrorCode::UnknownOp,
                reason: "no".into(),
                id: None,
                channel: None,
                retry_after_ms: None,
            },
            ServerFrame::Error {
                code: ErrorCode::Forbidden,
                reason: "not yours".into(),
                id: None,
                channel: Some("room:1".into()),
                retry_after_ms: None,
            },
            ServerFrame::Error {
                code: ErrorCode::Unavailable,
                reason: "broker down".into(),
                id: Some("7".into()),
                channel: None,
                retry_after_ms: None,
            },
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                reason: "too fast".into(),
                id: Some("8".into()),
                channel: None,
                retry_after_ms: Some(20),
            },
            ServerFrame::Reconnect {
                after_ms: 1500,
                reason: "restart".into(),
            },
            ServerFrame::Refreshed {
                expires_in_ms: Some(300_000),
            },
            ServerFrame::Refreshed {
                expires_in_ms: None,
            },
            ServerFrame::Presence {
                channel: "room:1".into(),
                members: vec!["00000000000000a1".into(), "00000000000000a2".into()],
                users: vec![PresenceUser {
                    user: "ada".into(),
                    connections: 2,
                }],
            },
            ServerFrame::Join {
                channel: "room:1".into(),
                session: "00000000000000a1".into(),
                user: None,
            },
            ServerFrame::Join {
                channel: "room:1".into(),
                session: "00000000000000a1".into(),
                user: Some("ada".into()),
            },
            ServerFrame::Leave {
                channel: "room:1".into(),
                session: "00000000000000a1".into(),
                user: Some("ada".into()),
            },
        ];
        for frame in frames {
            assert_eq!(ServerFrame::parse(&frame.encode()).unwrap(), frame);
        }
    }

    #[test]
    fn presence_frames_without_users_still_parse() {
        let earlier = r#"{"op":"presence","channel":"c","members":["00000000000000a1"]}"#;
        assert_eq!(
            ServerFrame::parse(earlier).unwrap(),
            ServerFrame::Presence {
                channel: "c".into(),
                members: vec!["00000000000000a1".into()],
                users: Vec::new(),
            }
        );
        let join = ServerFrame::Join {
            channel: "c".into(),
            session: "00000000000000a1".into(),
            user: None,
        };
        assert_eq!(
            join.encode(),
            r#"{"op":"join","channel":"c","session":"00000000000000a1"}"#
        );
    }

    #[test]
    fn session_names_are_sixteen_hex_digits_and_read_back() {
        assert_eq!(session_name(0xa1), "00000000000000a1");
        for id in [0, 0xa1, u64::MAX] {
            assert_eq!(parse_session_name(&session_name(id)), Some(id));
        }
        for other in [
            "a1",
            "+0000000000000a1",
            "00000000000000A1",
            "0000000000000a1g",
            "",
        ] {
            assert_eq!(parse_session_name(other), None, "{other:?}");
        }
    }

    #[test]
    fn millis_truncate_and_saturate() {
        assert_eq!(millis(Duration::from_micros(2_999)), 2);
        assert_eq!(millis(Duration::from_secs(20)), 20_000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
