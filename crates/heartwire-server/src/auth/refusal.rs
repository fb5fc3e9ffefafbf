//! Why a connection was refused for its credentials, and the close frame that says
//! so: the first and only frame after the 101, so that browsers (which cannot read
//! the status of a failed handshake) see the code too.

use std::fmt;
use std::time::Duration;

use heartwire_core::reason::close_code;

/// A refusal of credentials, with a sentence for people. The sentence never holds
/// the token or any other secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or invalid credentials (close 4401): final.
    Unauthorized(String),
    /// A valid identity that is not allowed in (close 4403): final.
    Forbidden(String),
    /// The token had expired (close 4498): the client comes back with a fresh one.
    Expired(String),
    /// Credentials cannot be checked now (close 1013): the client backs off.
    Unavailable {
        /// What failed.
        reason: String,
        /// The delay the client is asked to wait.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The close code that carries this refusal.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => close_code::UNAUTHORIZED,
            Self::Forbidden(_) => close_code::FORBIDDEN,
            Self::Expired(_) => close_code::TOKEN_EXPIRED,
            Self::Unavailable { .. } => close_code::TRY_AGAIN_LATER,
        }
    }

    /// A short, stable name: the `reason` label of the refusal metric.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Expired(_) => "token_expired",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    /// Every label [`label`](Self::label) can return.
    pub const LABELS: [&'static str; 4] =
        ["unauthorized", "forbidden", "token_expired", "unavailable"];

    /// The close reason: the sentence, and for 1013 the retry hint clients read
    /// (`…; retry after N ms`), within the 123 bytes a close frame allows.
    pub fn close_reason(&self) -> String {
        let (sentence, hint) = match self {
            Self::Unauthorized(reason) | Self::Forbidden(reason) | Self::Expired(reason) => {
                (reason.as_str(), String::new())
            }
            Self::Unavailable {
                reason,
                retry_after,
            } => (
                reason.as_str(),
                format!("; retry after {} ms", retry_after.as_millis()),
            ),
        };
        let room = 123 - hint.len();
        let mut end = sentence.len().min(room);
        while !sentence.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{hint}", &sentence[..end])
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.close_reason())
    }
}

#[cfg(test)]
mod tests {
    use heartwire_core::reconnect::{Retry, rule_for_close};

    use super::*;

    #[test]
    fn each_refusal_has_the_code_clients_act_on() {
        let unavailable = Refusal::Unavailable {
            reason: "sign-in unavailable".into(),
            retry_after: Duration::from_millis(3200),
        };
        let cases = [
            (Refusal::Unauthorized("bad".into()), 4401, Retry::Never),
            (Refusal::Forbidden("no".into()), 4403, Retry::Never),
            (Refusal::Expired("old".into()), 4498, Retry::FreshToken),
            (unavailable, 1013, Retry::After(Duration::from_millis(3200))),
        ];
        for (refusal, code, rule) in cases {
            assert_eq!(refusal.close_code(), code);
            assert_eq!(
                rule_for_close(code, &refusal.close_reason()),
                rule,
                "{refusal}"
            );
            assert!(Refusal::LABELS.contains(&refusal.label()));
        }
    }

    #[test]
    fn long_reasons_keep_their_hint_within_a_close_frame() {
        let refusal = Refusal::Unavailable {
            reason: "é".repeat(200),
            retry_after: Duration::from_millis(1500),
        };
        let reason = refusal.close_reason();
        assert!(reason.len() <= 123, "{}", reason.len());
        assert!(reason.ends_with("; retry after 1500 ms"));
    }
}
