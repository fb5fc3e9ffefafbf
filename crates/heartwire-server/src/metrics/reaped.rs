//! The sessions this node reaped for silence lately, so that a client that comes
//! back and reports one of them can be judged (a false reap or not).
//!
//! Bounded both ways: a session is forgotten [`REAPED_TTL`] after its reap, and at
//! most [`REAPED_CAPACITY`] are kept (the oldest goes first). Time comes in as
//! `now`, so the tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a reaped session is remembered: a client that is offline longer has
/// long since reconnected or given up.
pub(crate) const REAPED_TTL: Duration = Duration::from_secs(300);
/// How many reaped sessions are remembered at most.
pub(crate) const REAPED_CAPACITY: usize = 65_536;

/// The reaped sessions, by session id, with when each was reaped.
#[derive(Debug, Default)]
pub(crate) struct ReapedSessions {
    at: HashMap<String, Instant>,
    /// The same sessions in the order they were reaped.
    order: VecDeque<(String, Instant)>,
}

impl ReapedSessions {
    /// `session` was reaped for silence at `now`.
    pub(crate) fn insert(&mut self, session: String, now: Instant) {
        self.expire(now);
        while self.order.len() >= REAPED_CAPACITY {
            self.pop_oldest();
        }
        if self.at.insert(session.clone(), now).is_none() {
            self.order.push_back((session, now));
        }
    }

    /// Whether `session` was reaped within the last [`REAPED_TTL`] before `now`;
    /// it is forgotten then, so a second report of it counts nothing.
    pub(crate) fn take(&mut self, session: &str, now: Instant) -> bool {
        self.expire(now);
        self.at.remove(session).is_some()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= REAPED_TTL)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((session, at)) = self.order.pop_front() {
            // A session taken already is gone from the map; one reaped again later
            // is kept under its later time.
            if self.at.get(&session) == Some(&at) {
                self.at.remove(&session);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_session_is_found_once_and_only_within_the_ttl() {
        let t0 = Instant::now();
        let mut reaped = ReapedSessions::default();
        reaped.insert("a".into(), t0);
        reaped.insert("b".into(), t0 + Duration::from_secs(1));
        assert!(reaped.take("a", t0 + REAPED_TTL - Duration::from_millis(1)));
        assert!(!reaped.take("a", t0 + Duration::from_secs(2)), "taken once");
        assert!(!reaped.take("c", t0));
        assert!(!reaped.take("b", t0 + Duration::from_secs(1) + REAPED_TTL));
        assert_eq!(reaped.len(), 0);
    }

    #[test]
    fn at_most_so_many_are_kept_and_the_oldest_goes_first() {
        let t0 = Instant::now();
        let mut reaped = ReapedSessions::default();
        for n in 0..=REAPED_CAPACITY {
            reaped.insert(format!("{n:016x}"), t0);
        }
        assert_eq!(reaped.len(), REAPED_CAPACITY);
        assert!(!reaped.take(&format!("{:016x}", 0), t0));
        assert!(reaped.take(&format!("{:016x}", 1), t0));
        assert!(reaped.take(&format!("{REAPED_CAPACITY:016x}"), t0));
    }
}
