//! The error type of `heartwire-core`, and the error codes of the wire protocol.

use serde::{Deserialize, Serialize};

/// A machine-readable error code carried by an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object.
    BadJson,
    /// A field was missing or of the wrong type.
    BadRequest,
    /// The `op` is not one the server knows.
    UnknownOp,
    /// The channel name breaks the naming rules.
    InvalidChannel,
    /// The connection holds as many subscriptions as the server allows.
    TooManySubscriptions,
    /// The server could not hand the message to its broker.
    Unavailable,
    /// The server does not accept this kind of frame here (for example binary).
    Unsupported,
    /// The server does not track presence on this channel.
    PresenceOff,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadRequest => "bad_request",
            Self::UnknownOp => "unknown_op",
            Self::InvalidChannel => "invalid_channel",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::Unavailable => "unavailable",
            Self::Unsupported => "unsupported",
            Self::PresenceOff => "presence_off",
        }
    }
}

/// Everything that can go wrong in `heartwire-core`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A frame of the wire protocol was refused.
    #[error("{}: {reason}", code.as_str())]
    Request {
        /// What kind of problem.
        code: ErrorCode,
        /// A sentence naming the problem.
        reason: String,
    },
}

impl Error {
    pub(crate) fn request(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self::Request {
            code,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [
            ErrorCode::BadJson,
            ErrorCode::BadRequest,
            ErrorCode::UnknownOp,
            ErrorCode::InvalidChannel,
            ErrorCode::TooManySubscriptions,
            ErrorCode::Unavailable,
            ErrorCode::Unsupported,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
