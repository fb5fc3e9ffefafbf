//! Whether a client comes back after a connection ended, and when.
//!
//! [`rule_for`] maps a [`DisconnectReason`] to a [`Retry`]; `docs/PROTOCOL.md`
//! ("Client reconnect rules") is the table these functions implement.

use std::time::Duration;

use crate::reason::{DisconnectReason, close_code};

/// What a client does after a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Reconnect after the delay of the reconnect policy.
    Backoff,
    /// Reconnect after the delay the server asked for.
    After(Duration),
    /// The token expired: fetch a fresh one and reconnect at once. The attempt is
    /// not a failure of the streak; see [`Backoff::next_fresh_token`](crate::Backoff::next_fresh_token).
    FreshToken,
    /// Do not come back: trying again cannot help.
    Never,
}

/// Close code an application uses for "authentication failed" (HTTP 401 + 4000).
pub const AUTH_FAILED: u16 = close_code::UNAUTHORIZED;
/// Close code an application uses for "forbidden" (HTTP 403 + 4000).
pub const FORBIDDEN: u16 = close_code::FORBIDDEN;

/// Close 1003: the peer received a kind of data it cannot accept.
const UNSUPPORTED_DATA: u16 = 1003;
/// Close 1010: the server did not negotiate an extension the client requires.
const MANDATORY_EXTENSION: u16 = 1010;

/// The rule for a connection that ended for `reason`.
pub fn rule_for(reason: &DisconnectReason) -> Retry {
    match reason {
        DisconnectReason::PeerClosed {
            code: Some(code),
            reason,
        } => rule_for_close(*code, reason),
        DisconnectReason::ServerDisconnect { code } => rule_for_close(*code, ""),
        DisconnectReason::LocalClose
        | DisconnectReason::ProtocolError(_)
        | DisconnectReason::InvalidUtf8
        | DisconnectReason::MessageTooBig
        | DisconnectReason::RateLimited
        | DisconnectReason::IncompleteMessage => Retry::Never,
        DisconnectReason::PeerClosed { code: None, .. }
        | DisconnectReason::TokenExpired
        | DisconnectReason::PingTimeout
        | DisconnectReason::SlowConsumer
        | DisconnectReason::ServerShutdown
        | DisconnectReason::Transport(_) => Retry::Backoff,
    }
}

/// Whether a connection that ended for `reason` was ended by a server that restarts
/// and said when to come back: a `reconnect` frame came first (`hinted`), or the close
/// is 1012 with a hint. Not a failure of the client.
pub fn is_server_restart(reason: &DisconnectReason, hinted: bool) -> bool {
    hinted
        || matches!(
            reason,
            DisconnectReason::PeerClosed { code: Some(close_code::SERVICE_RESTART), reason }
                if retry_hint(reason).is_some()
        )
}

/// The rule for a close frame with `code` and `reason` from the server.
pub fn rule_for_close(code: u16, reason: &str) -> Retry {
    match code {
        close_code::PROTOCOL_ERROR
        | UNSUPPORTED_DATA
        | close_code::INVALID_PAYLOAD
        | close_code::MESSAGE_TOO_BIG
        | MANDATORY_EXTENSION
        | AUTH_FAILED
        | FORBIDDEN => Retry::Never,
        close_code::POLICY_VIOLATION if reason != "slow consumer" => Retry::Never,
        close_code::TOKEN_EXPIRED => Retry::FreshToken,
        close_code::SERVICE_RESTART | close_code::TRY_AGAIN_LATER => {
            retry_hint(reason).map_or(Retry::Backoff, Retry::After)
        }
        _ => Retry::Backoff,
    }
}

/// The delay in a close reason such as `server restarting; retry after 1500 ms`.
pub fn retry_hint(reason: &str) -> Option<Duration> {
    let (_, rest) = reason.split_once("retry after ")?;
    let number = rest.strip_suffix("ms")?.trim();
    number.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// The rules as test vectors, read by every client's tests (tests/vectors/reconnect.json).
    const VECTORS: &str = include_str!("../../../tests/vectors/reconnect.json");

    #[derive(Deserialize)]
    struct Vectors {
        close: Vec<CloseVector>,
        retry_hint: Vec<HintVector>,
    }

    #[derive(Deserialize)]
    struct CloseVector {
        code: u16,
        reason: String,
        retry: String,
        after_ms: Option<u64>,
    }

    #[derive(Deserialize)]
    struct HintVector {
        reason: String,
        after_ms: Option<u64>,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(VECTORS).expect("tests/vectors/reconnect.json parses")
    }

    fn closed(code: u16, reason: &str) -> Retry {
        rule_for(&DisconnectReason::PeerClosed {
            code: Some(code),
            reason: reason.into(),
        })
    }

    #[test]
    fn closes_follow_the_shared_vectors() {
        let close = vectors().close;
        assert!(close.len() > 10, "the vectors cover the table");
        for vector in close {
            let expected = match (vector.retry.as_str(), vector.after_ms) {
                ("backoff", None) => Retry::Backoff,
                ("after", Some(ms)) => Retry::After(Duration::from_millis(ms)),
                ("never", None) => Retry::Never,
                ("fresh_token", None) => Retry::FreshToken,
                (other, after) => panic!("a vector says retry {other:?} with after_ms {after:?}"),
            };
            assert_eq!(
                closed(vector.code, &vector.reason),
                expected,
                "close {} {:?}",
                vector.code,
                vector.reason
            );
        }
    }

    #[test]
    fn retry_hints_follow_the_shared_vectors() {
        for vector in vectors().retry_hint {
            assert_eq!(
                retry_hint(&vector.reason),
                vector.after_ms.map(Duration::from_millis),
                "{:?}",
                vector.reason
            );
        }
    }

    #[test]
    fn endings_without_a_close_frame() {
        assert_eq!(
            rule_for(&DisconnectReason::Transport("reset".into())),
            Retry::Backoff
        );
        assert_eq!(rule_for(&DisconnectReason::PingTimeout), Retry::Backoff);
        assert_eq!(
            rule_for(&DisconnectReason::PeerClosed {
                code: None,
                reason: String::new()
            }),
            Retry::Backoff
        );
    }

    #[test]
    fn local_decisions_are_final() {
        assert_eq!(rule_for(&DisconnectReason::LocalClose), Retry::Never);
        assert_eq!(rule_for(&DisconnectReason::MessageTooBig), Retry::Never);
    }

    #[test]
    fn only_a_hinted_restart_is_a_server_restart() {
        let closed = |code: u16, reason: &str| DisconnectReason::PeerClosed {
            code: Some(code),
            reason: reason.into(),
        };
        assert!(is_server_restart(
            &closed(1012, "server restarting; retry after 800 ms"),
            false
        ));
        assert!(is_server_restart(&closed(1001, "going away"), true));
        assert!(!is_server_restart(&closed(1012, "going down"), false));
        assert!(!is_server_restart(
            &closed(1013, "try again later; retry after 250 ms"),
            false
        ));
        assert!(!is_server_restart(&DisconnectReason::PingTimeout, false));
    }
}
