//! When a connection's token is refreshed, on explicit time.
//!
//! A heartwire server tells in `hello` (and in each `refreshed`) how long the
//! connection's identity lasts, `expires_in_ms`; it closes the connection with 4498
//! once that time (plus its grace) has passed without a `refresh`. [`Refresh`] picks
//! the instant to ask the token provider for a fresh token and send it:
//! [`refresh_after`] of the lifetime. An identity that lasts less than two
//! [`RETRY_FLOOR`]s is not refreshed (a provider that hands out the same token again
//! would otherwise make refreshes ever closer together). While a refresh is under
//! way nothing more is asked; a refused one (the provider had no token, or the server said
//! `unauthorized` or `forbidden`) is tried again once half of what is left of the
//! lifetime has passed, while at least [`RETRY_FLOOR`] is left. When no refresh
//! succeeds the server's 4498 ends the connection, and the reconnect rules fetch a
//! fresh token for the next one.

use std::time::{Duration, Instant};

/// The latest a refresh comes: this long before the identity expires, unless that is
/// before half of its lifetime.
pub const REFRESH_LEAD: Duration = Duration::from_secs(30);

/// The share of the lifetime after which a refresh comes at the latest.
const REFRESH_SHARE: f64 = 0.8;

/// A refused refresh is tried again only while at least this much of the lifetime is
/// left; afterwards the server's 4498 and a reconnect with a fresh token take over.
pub const RETRY_FLOOR: Duration = Duration::from_secs(1);

/// How long after learning that an identity lasts `lifetime` its refresh is due: at
/// 80 % of the lifetime or [`REFRESH_LEAD`] before its end, whichever comes first,
/// but never before half of it (a token of a few seconds is not refreshed in a
/// tight loop).
pub fn refresh_after(lifetime: Duration) -> Duration {
    let share = lifetime.mul_f64(REFRESH_SHARE);
    let lead = lifetime.saturating_sub(REFRESH_LEAD);
    share.min(lead).max(lifetime / 2)
}

/// The refresh schedule of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refresh {
    /// When the identity expires; `None` when it does not (or is not known).
    expires_at: Option<Instant>,
    /// When the next refresh is due; `None` when none is.
    due: Option<Instant>,
    /// A token was asked for, or a `refresh` sent, and not answered yet.
    pending: bool,
}

impl Refresh {
    /// The server said at `now` that the identity lasts `lifetime` more (`None`: it
    /// does not expire). Ends a refresh under way: this is its answer.
    pub fn handle_lifetime(&mut self, now: Instant, lifetime: Option<Duration>) {
        self.pending = false;
        self.expires_at = lifetime.map(|lifetime| now + lifetime);
        self.due = lifetime
            .filter(|&lifetime| lifetime >= RETRY_FLOOR * 2)
            .map(|lifetime| now + refresh_after(lifetime));
    }

    /// Whether a refresh starts at `now`: `true` once when it is due, and then not
    /// again until it is answered.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.pending || self.due.is_none_or(|due| now < due) {
            return false;
        }
        self.due = None;
        self.pending = true;
        true
    }

    /// The refresh under way failed at `now`; it is tried again later while enough
    /// of the lifetime is left.
    pub fn handle_refused(&mut self, now: Instant) {
        if !self.pending {
            return;
        }
        self.pending = false;
        let left = self
            .expires_at
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        self.due = (left >= RETRY_FLOOR * 2).then(|| now + left / 2);
    }

    /// Whether a refresh is under way.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_refresh_comes_at_the_earlier_of_80_percent_and_30_s_before_but_not_before_half() {
        // An hour: 80 % (48 min) comes before exp − 30 s.
        assert_eq!(refresh_after(secs(3600)), secs(2880));
        // Two minutes: exp − 30 s (90 s) comes before 80 % (96 s).
        assert_eq!(refresh_after(secs(120)), secs(90));
        // Forty seconds: exp − 30 s would be 10 s; half of it is the floor.
        assert_eq!(refresh_after(secs(40)), secs(20));
        assert_eq!(refresh_after(secs(2)), secs(1));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_refresh_is_due_once_and_waits_for_its_answer() {
        let t0 = Instant::now();
        let mut refresh = Refresh::default();
        assert_eq!(refresh.poll_timeout(), None);
        assert!(!refresh.handle_timeout(t0 + secs(9999)));

        refresh.handle_lifetime(t0, Some(secs(120)));
        assert_eq!(refresh.poll_timeout(), Some(t0 + secs(90)));
        assert!(!refresh.handle_timeout(t0 + secs(89)));
        assert!(refresh.handle_timeout(t0 + secs(90)));
        assert!(refresh.is_pending());
        assert_eq!(refresh.poll_timeout(), None);
        assert!(!refresh.handle_timeout(t0 + secs(100)));

        // The answer: a new token of two minutes, from t0 + 91 s.
        refresh.handle_lifetime(t0 + secs(91), Some(secs(120)));
        assert!(!refresh.is_pending());
        assert_eq!(refresh.poll_timeout(), Some(t0 + secs(181)));

        // The same token again: its lifetime shrinks, until it is too short.
        refresh.handle_lifetime(t0 + secs(180), Some(Duration::from_millis(1999)));
        assert_eq!(refresh.poll_timeout(), None);

        // A token without exp: nothing more to do.
        refresh.handle_lifetime(t0 + secs(200), None);
        assert_eq!(refresh.poll_timeout(), None);
        assert!(!refresh.handle_timeout(t0 + secs(99_999)));
    }

    #[test]
    fn a_refused_refresh_is_tried_again_at_half_of_what_is_left() {
        let t0 = Instant::now();
        let mut refresh = Refresh::default();
        refresh.handle_lifetime(t0, Some(secs(40)));
        assert!(refresh.handle_timeout(t0 + secs(20)));
        refresh.handle_refused(t0 + secs(20));
        assert_eq!(refresh.poll_timeout(), Some(t0 + secs(30)));
        assert!(refresh.handle_timeout(t0 + secs(30)));
        refresh.handle_refused(t0 + secs(30));
        assert_eq!(refresh.poll_timeout(), Some(t0 + secs(35)));
        // Less than two floors left: the server's 4498 takes over.
        assert!(refresh.handle_timeout(t0 + secs(39)));
        refresh.handle_refused(t0 + Duration::from_millis(39_500));
        assert_eq!(refresh.poll_timeout(), None);
        // A refusal with no refresh under way changes nothing.
        refresh.handle_refused(t0 + secs(39));
        assert_eq!(refresh.poll_timeout(), None);
    }
}
