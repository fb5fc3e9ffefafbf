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
    /// Do not come back: trying again cannot help.
    Never,
}

/// Close code an application uses for "authentication failed" (HTTP 401 + 4000).
pub const AUTH_FAILED: u16 = 4401;
/// Close code an application uses for "forbidden" (HTTP 403 + 4000).
pub const FORBIDDEN: u16 = 4403;

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
        DisconnectReason::LocalClose
        | DisconnectReason::ProtocolError(_)
        | DisconnectReason::InvalidUtf8
        | DisconnectReason::MessageTooBig => Retry::Never,
        DisconnectReason::PeerClosed { code: None, .. }
        | DisconnectReason::PingTimeout
        | DisconnectReason::SlowConsumer
        | DisconnectReason::ServerShutdown
        | DisconnectReason::Transport(_) => Retry::Backoff,
    }
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
    use super::*;

    fn closed(code: u16, reason: &str) -> Retry {
        rule_for(&DisconnectReason::PeerClosed {
            code: Some(code),
            reason: reason.into(),
        })
    }

    #[test]
    fn do_not_come_back_closes() {
        for code in [1002, 1003, 1007, 1009, 1010, 4401, 4403] {
            assert_eq!(closed(code, ""), Retry::Never, "close {code}");
        }
        assert_eq!(closed(1008, "forbidden origin"), Retry::Never);
    }

    #[test]
    fn slow_consumer_may_come_back() {
        assert_eq!(closed(1008, "slow consumer"), Retry::Backoff);
    }

    #[test]
    fn transient_closes_back_off() {
        for code in [1000, 1001, 1006, 1011, 4000, 4500] {
            assert_eq!(closed(code, "whatever"), Retry::Backoff, "close {code}");
        }
        assert_eq!(
            rule_for(&DisconnectReason::Transport("reset".into())),
            Retry::Backoff
        );
        assert_eq!(rule_for(&DisconnectReason::PingTimeout), Retry::Backoff);
    }

    #[test]
    fn restart_and_overload_honour_the_hint() {
        assert_eq!(
            closed(1012, "server restarting; retry after 1500 ms"),
            Retry::After(Duration::from_millis(1500))
        );
        assert_eq!(
            closed(1013, "try again later; retry after 250 ms"),
            Retry::After(Duration::from_millis(250))
        );
        assert_eq!(closed(1012, "going down"), Retry::Backoff);
    }

    #[test]
    fn local_decisions_are_final() {
        assert_eq!(rule_for(&DisconnectReason::LocalClose), Retry::Never);
        assert_eq!(rule_for(&DisconnectReason::MessageTooBig), Retry::Never);
    }

    #[test]
    fn hint_parsing() {
        assert_eq!(retry_hint("retry after 0 ms"), Some(Duration::ZERO));
        assert_eq!(retry_hint("retry after soon"), None);
        assert_eq!(retry_hint("no hint"), None);
    }
}
