//! The report a client sends, on its next connection, about the one it lost: which
//! session it was, how long the client was offline and why, as the client saw it.
//!
//! A server that says `"reports": true` in its `hello` takes the `report` frame as
//! the first frame after it (docs/PROTOCOL.md); clients send it to no other server.
//! [`SessionReport::to_frame`] is what a client sends; [`SessionReport::from_fields`]
//! is how a server reads one, checking every field: a report that breaks a rule is
//! refused as a whole and names the rule, so the server counts it and ignores it.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::protocol::ClientFrame;
use crate::reason::{DisconnectReason, close_code};

/// The longest `previous_session` accepted, in bytes.
pub const MAX_SESSION_LEN: usize = 64;
/// The longest `reason` accepted, in bytes.
pub const MAX_REASON_LEN: usize = 32;
/// The longest offline time (and `last_heard_ms`) a report may carry: one week.
pub const MAX_OFFLINE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why the client lost its previous connection, as it saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineReason {
    /// The client's own liveness bound passed: it heard nothing from the server.
    PingTimeout,
    /// The transport failed or ended without a close frame.
    Network,
    /// The server's close frame arrived, with this code.
    Closed {
        /// The close code, when the frame carried one.
        code: Option<u16>,
    },
    /// A reason this side does not know.
    Other,
}

impl OfflineReason {
    /// The `reason` the client puts on the wire for `end`; `None` when the client
    /// itself ended the connection (its caller closed it), which is no outage.
    pub fn of(end: &DisconnectReason) -> Option<Self> {
        Some(match end {
            DisconnectReason::PingTimeout => Self::PingTimeout,
            DisconnectReason::Transport(_)
            | DisconnectReason::ProtocolError(_)
            | DisconnectReason::InvalidUtf8 => Self::Network,
            DisconnectReason::PeerClosed { code, .. } => Self::Closed { code: *code },
            DisconnectReason::LocalClose => return None,
            _ => Self::Other,
        })
    }

    /// The `reason` field on the wire.
    pub fn wire(&self) -> &'static str {
        match self {
            Self::PingTimeout => "ping_timeout",
            Self::Network => "network",
            Self::Closed { .. } => "closed",
            Self::Other => "other",
        }
    }

    /// The `reason` label of the server's metrics: the close codes that matter to
    /// liveness get their own label, so the set stays fixed.
    pub fn label(&self) -> &'static str {
        match self {
            Self::PingTimeout => "ping_timeout",
            Self::Network => "network",
            Self::Closed {
                code: Some(close_code::INTERNAL_ERROR),
            } => "server_reaped",
            Self::Closed {
                code: Some(close_code::SERVICE_RESTART),
            } => "server_restart",
            Self::Closed { .. } => "closed",
            Self::Other => "other",
        }
    }

    /// Every label [`label`](Self::label) can return.
    pub const LABELS: [&'static str; 6] = [
        "ping_timeout",
        "network",
        "server_reaped",
        "server_restart",
        "closed",
        "other",
    ];

    /// Whether the client was still hearing the server when it learned of the end:
    /// the server's own close frame reached it. A server that reaped this session
    /// for silence reaped a client that was alive at its side (a false reap).
    pub fn heard_the_close(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }
}

/// A client's report of its previous session. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// The `session` of the previous connection's `hello`.
    pub previous_session: String,
    /// From the end of the previous connection to this one's `hello`.
    pub offline: Duration,
    /// Why the previous connection ended.
    pub reason: OfflineReason,
    /// How long before the end the client had last heard the server (0 when the
    /// end was the server's close frame).
    pub last_heard: Duration,
}

impl SessionReport {
    /// The `report` frame a client sends.
    pub fn to_frame(&self) -> ClientFrame {
        let mut fields = Map::new();
        fields.insert(
            "previous_session".into(),
            self.previous_session.clone().into(),
        );
        fields.insert("offline_ms".into(), millis(self.offline).into());
        fields.insert("reason".into(), self.reason.wire().into());
        if let OfflineReason::Closed { code: Some(code) } = self.reason {
            fields.insert("code".into(), code.into());
        }
        fields.insert("last_heard_ms".into(), millis(self.last_heard).into());
        ClientFrame::Report { fields }
    }

    /// Reads a `report` frame's fields, or says which rule they break. Unknown
    /// fields are ignored; an unknown `reason` is [`OfflineReason::Other`].
    pub fn from_fields(fields: &Map<String, Value>) -> Result<Self, &'static str> {
        let previous_session = match fields.get("previous_session") {
            Some(Value::String(session))
                if (1..=MAX_SESSION_LEN).contains(&session.len())
                    && session
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b"-_".contains(&byte)) =>
            {
                session.clone()
            }
            _ => return Err("previous_session must be 1 to 64 letters, digits, - or _"),
        };
        let offline = duration(fields.get("offline_ms"))
            .ok_or("offline_ms must be a whole number of milliseconds up to a week")?;
        let last_heard = match fields.get("last_heard_ms") {
            None => Duration::ZERO,
            some => duration(some)
                .ok_or("last_heard_ms must be a whole number of milliseconds up to a week")?,
        };
        let code = match fields.get("code") {
            None => None,
            Some(code) => Some(
                code.as_u64()
                    .and_then(|code| u16::try_from(code).ok())
                    .filter(|code| (1000..=4999).contains(code))
                    .ok_or("code must be a close code from 1000 to 4999")?,
            ),
        };
        let reason = match fields.get("reason") {
            Some(Value::String(reason)) if reason.len() <= MAX_REASON_LEN => {
                match reason.as_str() {
                    "ping_timeout" => OfflineReason::PingTimeout,
                    "network" => OfflineReason::Network,
                    "closed" => OfflineReason::Closed { code },
                    _ => OfflineReason::Other,
                }
            }
            _ => return Err("reason must be a string of at most 32 bytes"),
        };
        Ok(Self {
            previous_session,
            offline,
            reason,
            last_heard,
        })
    }
}

fn duration(value: Option<&Value>) -> Option<Duration> {
    let millis = value?.as_u64()?;
    let duration = Duration::from_millis(millis);
    (duration <= MAX_OFFLINE).then_some(duration)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_report_goes_out_and_comes_back_the_same() {
        let report = SessionReport {
            previous_session: "6f1c0d2a9b7e4c11".into(),
            offline: Duration::from_millis(1234),
            reason: OfflineReason::Closed { code: Some(1012) },
            last_heard: Duration::ZERO,
        };
        let text = report.to_frame().encode();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"op": "report", "previous_session": "6f1c0d2a9b7e4c11", "offline_ms": 1234,
                   "reason": "closed", "code": 1012, "last_heard_ms": 0})
        );
        let Ok(ClientFrame::Report { fields }) = ClientFrame::parse(&text) else {
            panic!("{text}")
        };
        assert_eq!(SessionReport::from_fields(&fields), Ok(report));
    }

    #[test]
    fn every_field_is_checked() {
        let good = json!({"previous_session": "abc", "offline_ms": 5, "reason": "network"});
        assert!(SessionReport::from_fields(&fields(good)).is_ok());
        for bad in [
            json!({"offline_ms": 5, "reason": "network"}),
            json!({"previous_session": "", "offline_ms": 5, "reason": "network"}),
            json!({"previous_session": "a".repeat(65), "offline_ms": 5, "reason": "network"}),
            json!({"previous_session": "a b", "offline_ms": 5, "reason": "network"}),
            json!({"previous_session": "abc", "offline_ms": -1, "reason": "network"}),
            json!({"previous_session": "abc", "offline_ms": 1.5, "reason": "network"}),
            json!({"previous_session": "abc", "offline_ms": 604_800_001u64, "reason": "network"}),
            json!({"previous_session": "abc", "offline_ms": "5", "reason": "network"}),
            json!({"previous_session": "abc", "offline_ms": 5}),
            json!({"previous_session": "abc", "offline_ms": 5, "reason": "x".repeat(33)}),
            json!({"previous_session": "abc", "offline_ms": 5, "reason": "closed", "code": 999}),
            json!({"previous_session": "abc", "offline_ms": 5, "reason": "network", "last_heard_ms": true}),
        ] {
            assert!(
                SessionReport::from_fields(&fields(bad.clone())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reasons_map_to_a_fixed_set_of_labels() {
        let read = |reason: &str, code: Option<u16>| {
            let mut value = json!({"previous_session": "abc", "offline_ms": 5, "reason": reason});
            if let Some(code) = code {
                value["code"] = code.into();
            }
            SessionReport::from_fields(&fields(value)).unwrap().reason
        };
        assert_eq!(read("ping_timeout", None).label(), "ping_timeout");
        assert_eq!(read("network", None).label(), "network");
        assert_eq!(read("closed", Some(1011)).label(), "server_reaped");
        assert_eq!(read("closed", Some(1012)).label(), "server_restart");
        assert_eq!(read("closed", Some(4403)).label(), "closed");
        assert_eq!(read("sunspots", None).label(), "other");
        for reason in [
            OfflineReason::PingTimeout,
            OfflineReason::Network,
            OfflineReason::Closed { code: None },
            OfflineReason::Other,
        ] {
            assert!(OfflineReason::LABELS.contains(&reason.label()));
        }
        assert!(read("closed", Some(1011)).heard_the_close());
        assert!(!read("ping_timeout", None).heard_the_close());
        assert!(!read("network", None).heard_the_close());
        assert_eq!(OfflineReason::of(&DisconnectReason::LocalClose), None);
    }
}
