//! When an identified connection must end, and what a `refresh` changes: the
//! decisions of token expiry, on explicit wall-clock time.
//!
//! A token's `exp` (or the hook's `expires_at`) is wall-clock time, so these rules
//! take `now: SystemTime`; the connection's driver turns the remaining time into a
//! deadline of its timer. A connection is closed with 4498 once `exp + grace` has
//! passed without a `refresh` whose token moved `exp` later.

use std::time::{Duration, SystemTime};

use heartwire_core::ErrorCode;
use heartwire_core::protocol::{ServerFrame, millis};

use super::Identity;
use super::refusal::Refusal;
use super::token::Verified;

/// How long from `now` until a connection of `identity` must be closed, given the
/// grace after expiry; `None` when it never must, `Some(ZERO)` when it is due.
pub(crate) fn time_left(
    identity: Option<&Identity>,
    grace: Duration,
    now: SystemTime,
) -> Option<Duration> {
    let close_at = identity?.expires_at? + grace;
    Some(close_at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Milliseconds from `now` until `identity` expires, as `hello` and `refreshed`
/// carry it; `None` when it does not expire.
pub(crate) fn expires_in_ms(identity: Option<&Identity>, now: SystemTime) -> Option<u64> {
    let expires_at = identity?.expires_at?;
    Some(millis(
        expires_at.duration_since(now).unwrap_or(Duration::ZERO),
    ))
}

/// Applies the outcome of a `refresh` verified at `now` to the connection's
/// identity, and returns the answer for the client. A token of another user, or
/// for a connection that is anonymous, is forbidden; a bad token is unauthorized;
/// either way the connection keeps its identity, and its deadline.
pub(crate) fn apply_refresh(
    identity: &mut Option<Box<Identity>>,
    outcome: Result<Verified, Refusal>,
    now: SystemTime,
) -> ServerFrame {
    let error = |code, reason: String| ServerFrame::Error {
        code,
        reason,
        id: None,
        channel: None,
        retry_after_ms: None,
    };
    let fresh = match outcome {
        Ok(verified) => verified.identity,
        Err(Refusal::Forbidden(reason)) => return error(ErrorCode::Forbidden, reason),
        Err(refusal) => {
            return error(
                ErrorCode::Unauthorized,
                format!("refresh refused: {}", refusal.close_reason()),
            );
        }
    };
    let Some(current) = identity else {
        return error(
            ErrorCode::Forbidden,
            "refresh refused: this connection is anonymous; connect with the token instead".into(),
        );
    };
    if current.user != fresh.user {
        return error(
            ErrorCode::Forbidden,
            "refresh refused: the token is for another user".into(),
        );
    }
    current.groups = fresh.groups;
    current.channels = fresh.channels;
    current.expires_at = fresh.expires_at;
    ServerFrame::Refreshed {
        expires_in_ms: expires_in_ms(Some(current), now),
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const GRACE: Duration = Duration::from_secs(25);

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn identity(user: &str, expires_at: Option<u64>) -> Identity {
        Identity {
            user: user.into(),
            groups: vec!["staff".into()],
            session_key: Some("s".into()),
            expires_at: expires_at.map(at),
            channels: Vec::new(),
        }
    }

    #[test]
    fn a_connection_ends_at_expiry_plus_grace() {
        let ada = identity("ada", Some(1000));
        assert_eq!(
            time_left(Some(&ada), GRACE, at(900)),
            Some(Duration::from_secs(125))
        );
        assert_eq!(
            time_left(Some(&ada), GRACE, at(1024)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(time_left(Some(&ada), GRACE, at(1025)), Some(Duration::ZERO));
        assert_eq!(time_left(Some(&ada), GRACE, at(5000)), Some(Duration::ZERO));
        assert_eq!(time_left(Some(&identity("ada", None)), GRACE, at(0)), None);
        assert_eq!(time_left(None, GRACE, at(0)), None);
        assert_eq!(expires_in_ms(Some(&ada), at(999)), Some(1000));
        assert_eq!(expires_in_ms(Some(&ada), at(1001)), Some(0));
    }

    #[test]
    fn a_refresh_of_the_same_user_moves_the_deadline() {
        let mut current = Some(Box::new(identity("ada", Some(1000))));
        let mut fresh = identity("ada", Some(2000));
        fresh.groups = vec!["admins".into()];
        fresh.session_key = None;
        let answer = apply_refresh(&mut current, Ok(Verified { identity: fresh }), at(990));
        assert_eq!(
            answer,
            ServerFrame::Refreshed {
                expires_in_ms: Some(1_010_000)
            }
        );
        let current = current.unwrap();
        assert_eq!(current.expires_at, Some(at(2000)));
        assert_eq!(current.groups, ["admins"]);
        // What the token does not carry stays.
        assert_eq!(current.session_key.as_deref(), Some("s"));
        assert_eq!(
            time_left(Some(&current), GRACE, at(2024)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_token_without_exp_stops_the_clock() {
        let mut current = Some(Box::new(identity("ada", Some(1000))));
        let fresh = identity("ada", None);
        let answer = apply_refresh(&mut current, Ok(Verified { identity: fresh }), at(990));
        assert_eq!(
            answer,
            ServerFrame::Refreshed {
                expires_in_ms: None
            }
        );
        assert_eq!(time_left(current.as_deref(), GRACE, at(99_999)), None);
    }

    fn refused(answer: &ServerFrame) -> ErrorCode {
        match answer {
            ServerFrame::Error { code, .. } => *code,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn another_user_or_a_bad_token_leaves_the_deadline_alone() {
        let mut current = Some(Box::new(identity("ada", Some(1000))));
        let eve = Verified {
            identity: identity("eve", Some(9000)),
        };
        assert_eq!(
            refused(&apply_refresh(&mut current, Ok(eve.clone()), at(990))),
            ErrorCode::Forbidden
        );
        let bad = Err(Refusal::Unauthorized(
            "the token's signature does not verify".into(),
        ));
        assert_eq!(
            refused(&apply_refresh(&mut current, bad, at(990))),
            ErrorCode::Unauthorized
        );
        let expired = Err(Refusal::Expired("token expired".into()));
        assert_eq!(
            refused(&apply_refresh(&mut current, expired, at(990))),
            ErrorCode::Unauthorized
        );
        assert_eq!(current.as_ref().unwrap().expires_at, Some(at(1000)));
        assert_eq!(current.as_ref().unwrap().user, "ada");

        let mut anonymous = None;
        assert_eq!(
            refused(&apply_refresh(&mut anonymous, Ok(eve), at(990))),
            ErrorCode::Forbidden
        );
        assert!(anonymous.is_none());
    }
}
