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
    /// The credentials are missing or invalid (such as a `refresh` whose token does
    /// not verify).
    Unauthorized,
    /// The identity is not allowed to do this (such as a channel the rules refuse, or
    /// a `refresh` with another user's token).
    Forbidden,
    /// The connection sent faster than the server's message rate; the frame was
    /// dropped. `retry_after_ms` says when one more will be taken.
    RateLimited,
    /// The server holds as many channels as it may (in all, or created by this
    /// connection); a publish to a new channel is refused.
    TooManyChannels,
    /// A publish `id` is longer than the server accepts.
    IdTooLong,
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
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::TooManyChannels => "too_many_channels",
            Self::IdTooLong => "id_too_long",
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
    use serde::Deserialize;
    use serde::de::value::Error as NamesRecorded;
    use serde::de::{Deserializer, Error as _, Visitor};

    use super::*;

    /// Records the wire names that a derived `Deserialize` of an enum knows, which
    /// are all its variants' names: the list is the compiler's, not a copy.
    struct VariantNames<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for VariantNames<'_> {
        type Error = NamesRecorded;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(NamesRecorded::custom("only an enum names its variants"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(NamesRecorded::custom("names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            struct identifier ignored_any
        }
    }

    #[test]
    fn every_code_has_its_serde_name_on_the_wire() {
        let mut names: &'static [&'static str] = &[];
        let _ = ErrorCode::deserialize(VariantNames(&mut names));
        assert!(names.contains(&"presence_off"), "{names:?}");
        for name in names {
            let code: ErrorCode = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(code.as_str(), *name);
        }
    }
}
