//! Why a connection ended, and the close code each reason puts on the wire.
//!
//! Every disconnect in heartwire carries a [`DisconnectReason`]: the server counts
//! reaped connections by [`DisconnectReason::label`], clients decide whether to come
//! back from [`DisconnectReason::close_code`], and logs print its `Display`.

use std::fmt;

/// WebSocket close codes used by heartwire (RFC 6455 §7.4 and the IANA registry).
pub mod close_code {
    /// The connection did what it was for.
    pub const NORMAL: u16 = 1000;
    /// An endpoint is going away (a browser leaving the page).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The peer broke a rule of this server (for example it stopped reading).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message exceeded the configured maximum size.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The peer stopped answering heartbeats (as in Python `websockets`).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server is restarting: reconnect after the hinted delay.
    pub const SERVICE_RESTART: u16 = 1012;
    /// The server is overloaded, or cannot check credentials now: reconnect after the
    /// hinted delay.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The credentials are missing or invalid: do not come back with them.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The identity is not allowed in: do not come back.
    pub const FORBIDDEN: u16 = 4403;
    /// The token expired: reconnect at once with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4498;
}

/// The typed reason a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer sent a close frame (`code` is `None` when it carried no status).
    PeerClosed {
        /// The close code the peer sent.
        code: Option<u16>,
        /// The reason text the peer sent.
        reason: String,
    },
    /// This side closed on purpose (the application asked for it).
    LocalClose,
    /// No frame arrived within the ping timeout after a Ping.
    PingTimeout,
    /// The peer broke the WebSocket protocol.
    ProtocolError(String),
    /// A text frame carried invalid UTF-8.
    InvalidUtf8,
    /// A message exceeded the configured maximum size.
    MessageTooBig,
    /// The peer did not read fast enough and its outbound queue overflowed.
    SlowConsumer,
    /// The server is shutting down.
    ServerShutdown,
    /// The connection's token expired and no fresh one came in time.
    TokenExpired,
    /// The application disconnected it through the server API, with this close code.
    ServerDisconnect {
        /// The close code the application chose.
        code: u16,
    },
    /// The peer went on sending past the message rate after being told to wait.
    RateLimited,
    /// A message stayed incomplete (a frame or fragments not all sent) for longer
    /// than the server waits.
    IncompleteMessage,
    /// The transport failed or was cut without a close frame.
    Transport(String),
}

impl DisconnectReason {
    /// The close code to send for this reason, if a close frame makes sense at all.
    ///
    /// `None` for reasons where the peer already closed or the transport is gone.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::PeerClosed { .. } | Self::Transport(_) => None,
            Self::LocalClose => Some(close_code::NORMAL),
            Self::PingTimeout => Some(close_code::INTERNAL_ERROR),
            Self::ProtocolError(_) => Some(close_code::PROTOCOL_ERROR),
            Self::InvalidUtf8 => Some(close_code::INVALID_PAYLOAD),
            Self::MessageTooBig => Some(close_code::MESSAGE_TOO_BIG),
            Self::SlowConsumer => Some(close_code::POLICY_VIOLATION),
            Self::ServerShutdown => Some(close_code::SERVICE_RESTART),
            Self::TokenExpired => Some(close_code::TOKEN_EXPIRED),
            Self::ServerDisconnect { code } => Some(*code),
            Self::RateLimited | Self::IncompleteMessage => Some(close_code::POLICY_VIOLATION),
        }
    }

    /// A short, stable, lowercase name: the `reason` label of metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::PeerClosed { .. } => "peer_closed",
            Self::LocalClose => "local_close",
            Self::PingTimeout => "ping_timeout",
            Self::ProtocolError(_) => "protocol_error",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MessageTooBig => "message_too_big",
            Self::SlowConsumer => "slow_consumer",
            Self::ServerShutdown => "server_shutdown",
            Self::TokenExpired => "token_expired",
            Self::ServerDisconnect { .. } => "server_disconnect",
            Self::RateLimited => "rate_limited",
            Self::IncompleteMessage => "incomplete_message",
            Self::Transport(_) => "transport",
        }
    }

    /// Every label [`label`](Self::label) can return, so metrics can be registered up front.
    pub const LABELS: [&'static str; 13] = [
        "peer_closed",
        "local_close",
        "ping_timeout",
        "protocol_error",
        "invalid_utf8",
        "message_too_big",
        "slow_consumer",
        "server_shutdown",
        "token_expired",
        "server_disconnect",
        "rate_limited",
        "incomplete_message",
        "transport",
    ];
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed {
                code: Some(code),
                reason,
            } if reason.is_empty() => {
                write!(f, "peer closed with code {code}")
            }
            Self::PeerClosed {
                code: Some(code),
                reason,
            } => {
                write!(f, "peer closed with code {code}: {reason}")
            }
            Self::PeerClosed { code: None, .. } => f.write_str("peer closed without a status code"),
            Self::LocalClose => f.write_str("closed"),
            Self::PingTimeout => f.write_str("ping timeout"),
            Self::ProtocolError(detail) => write!(f, "protocol error: {detail}"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8 in a text frame"),
            Self::MessageTooBig => f.write_str("message too big"),
            Self::SlowConsumer => f.write_str("slow consumer"),
            Self::ServerShutdown => f.write_str("server shutting down"),
            Self::TokenExpired => f.write_str("token expired"),
            Self::ServerDisconnect { code } => write!(f, "disconnected by the server with {code}"),
            Self::RateLimited => f.write_str("rate limited"),
            Self::IncompleteMessage => f.write_str("message left incomplete"),
            Self::Transport(detail) => write!(f, "transport failed: {detail}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_every_reason() {
        let all = [
            DisconnectReason::PeerClosed {
                code: None,
                reason: String::new(),
            },
            DisconnectReason::LocalClose,
            DisconnectReason::PingTimeout,
            DisconnectReason::ProtocolError("x".into()),
            DisconnectReason::InvalidUtf8,
            DisconnectReason::MessageTooBig,
            DisconnectReason::SlowConsumer,
            DisconnectReason::ServerShutdown,
            DisconnectReason::TokenExpired,
            DisconnectReason::ServerDisconnect { code: 4403 },
            DisconnectReason::RateLimited,
            DisconnectReason::IncompleteMessage,
            DisconnectReason::Transport("x".into()),
        ];
        let labels: Vec<_> = all.iter().map(DisconnectReason::label).collect();
        assert_eq!(labels, DisconnectReason::LABELS);
    }

    #[test]
    fn close_codes_follow_rfc_6455() {
        assert_eq!(DisconnectReason::PingTimeout.close_code(), Some(1011));
        assert_eq!(DisconnectReason::InvalidUtf8.close_code(), Some(1007));
        assert_eq!(DisconnectReason::MessageTooBig.close_code(), Some(1009));
        assert_eq!(DisconnectReason::SlowConsumer.close_code(), Some(1008));
        assert_eq!(DisconnectReason::ServerShutdown.close_code(), Some(1012));
        assert_eq!(DisconnectReason::TokenExpired.close_code(), Some(4498));
        assert_eq!(DisconnectReason::RateLimited.close_code(), Some(1008));
        assert_eq!(DisconnectReason::IncompleteMessage.close_code(), Some(1008));
        assert_eq!(
            DisconnectReason::Transport("reset".into()).close_code(),
            None
        );
    }
}
