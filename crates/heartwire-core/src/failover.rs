//! Which server a client tries next: fail-over down the list, fail-back up it.
//!
//! The servers are ordered by preference: the primary first, then the backups.
//! [`Failover`] keeps each one's [`Health`] and, with an explicit `now`, answers two
//! questions:
//!
//! - [`Failover::pick`]: where the next attempt goes. The first server that has
//!   not failed since it last worked, or whose last failure is older than
//!   `retry_failed_after`; when every server failed recently, the one that failed
//!   longest ago, so the client walks the list instead of hammering one server.
//! - [`Failover::fail_back_due`]: while connected to a backup, when a preferred
//!   server is worth probing again, so the client returns to the primary once it is
//!   back.
//!
//! A server that can never work (it refused the WebSocket handshake for good) is
//! never picked again.

use std::time::{Duration, Instant};

/// What the client knows about one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Attempts or connections that failed since it last worked.
    pub consecutive_failures: u32,
    /// When it last failed.
    pub last_failure: Option<Instant>,
    /// The latest round-trip time measured on a connection to it.
    pub last_rtt: Option<Duration>,
    /// It refused in a way that retrying cannot fix.
    pub refused: bool,
}

/// The servers of one client and their health. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Failover {
    health: Vec<Health>,
    retry_failed_after: Duration,
}

impl Failover {
    /// `count` servers, in order of preference; a failed one is tried again first
    /// once `retry_failed_after` has passed since its failure.
    pub fn new(count: usize, retry_failed_after: Duration) -> Self {
        Self {
            health: vec![Health::default(); count],
            retry_failed_after,
        }
    }

    /// The health of server `index`.
    pub fn health(&self, index: usize) -> &Health {
        &self.health[index]
    }

    /// Where the next attempt goes, or `None` when no server can ever work.
    pub fn pick(&self, now: Instant) -> Option<usize> {
        let usable = || {
            self.health
                .iter()
                .enumerate()
                .filter(|(_, health)| !health.refused)
        };
        usable()
            .find(|(_, health)| self.is_worth_trying(health, now))
            .or_else(|| usable().min_by_key(|(_, health)| health.last_failure))
            .map(|(index, _)| index)
    }

    /// When a server preferred to `current` will be worth probing (`now` if one
    /// already is), if any.
    pub fn fail_back_due(&self, current: usize, now: Instant) -> Option<Instant> {
        self.health[..current]
            .iter()
            .filter(|health| !health.refused)
            .map(|health| {
                health
                    .last_failure
                    .map_or(now, |at| (at + self.retry_failed_after).max(now))
            })
            .min()
    }

    /// The preferred server to probe at `now` while connected to `current`.
    pub fn fail_back_candidate(&self, current: usize, now: Instant) -> Option<usize> {
        self.health[..current]
            .iter()
            .position(|health| !health.refused && self.is_worth_trying(health, now))
    }

    /// A connection to `index` opened.
    pub fn handle_success(&mut self, index: usize) {
        let health = &mut self.health[index];
        health.consecutive_failures = 0;
    }

    /// An attempt or a connection to `index` failed at `now`.
    pub fn handle_failure(&mut self, index: usize, now: Instant) {
        let health = &mut self.health[index];
        health.consecutive_failures += 1;
        health.last_failure = Some(now);
    }

    /// `index` refused for good: it is never picked again.
    pub fn handle_refused(&mut self, index: usize, now: Instant) {
        self.handle_failure(index, now);
        self.health[index].refused = true;
    }

    /// A round-trip time was measured on a connection to `index`.
    pub fn handle_rtt(&mut self, index: usize, rtt: Duration) {
        self.health[index].last_rtt = Some(rtt);
    }

    fn is_worth_trying(&self, health: &Health, now: Instant) -> bool {
        health.consecutive_failures == 0
            || health
                .last_failure
                .is_none_or(|at| now >= at + self.retry_failed_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(30);

    #[test]
    fn primary_first() {
        let servers = Failover::new(3, RETRY);
        assert_eq!(servers.pick(Instant::now()), Some(0));
    }

    #[test]
    fn fails_over_down_the_list() {
        let t0 = Instant::now();
        let mut servers = Failover::new(3, RETRY);
        servers.handle_failure(0, t0);
        assert_eq!(servers.pick(t0), Some(1));
        servers.handle_failure(1, t0 + Duration::from_secs(1));
        assert_eq!(servers.pick(t0 + Duration::from_secs(1)), Some(2));
        // All failed recently: the one that failed longest ago.
        servers.handle_failure(2, t0 + Duration::from_secs(2));
        assert_eq!(servers.pick(t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(servers.health(2).consecutive_failures, 1);
    }

    #[test]
    fn a_failed_primary_is_tried_again_after_the_retry_period() {
        let t0 = Instant::now();
        let mut servers = Failover::new(2, RETRY);
        servers.handle_failure(0, t0);
        servers.handle_success(1);
        assert_eq!(servers.pick(t0 + RETRY - Duration::from_millis(1)), Some(1));
        assert_eq!(servers.pick(t0 + RETRY), Some(0));
    }

    #[test]
    fn fail_back_is_due_when_the_primary_may_be_back() {
        let t0 = Instant::now();
        let mut servers = Failover::new(2, RETRY);
        servers.handle_failure(0, t0);
        servers.handle_success(1);
        assert_eq!(servers.fail_back_due(1, t0), Some(t0 + RETRY));
        assert_eq!(servers.fail_back_due(0, t0), None);
        assert_eq!(
            servers.fail_back_candidate(1, t0 + RETRY / 2),
            None,
            "too early"
        );
        assert_eq!(servers.fail_back_candidate(1, t0 + RETRY), Some(0));
        // A failed probe pushes the next one out by another period.
        servers.handle_failure(0, t0 + RETRY);
        assert_eq!(servers.fail_back_due(1, t0), Some(t0 + RETRY * 2));
    }

    #[test]
    fn refused_endpoints_are_never_picked() {
        let t0 = Instant::now();
        let mut servers = Failover::new(2, RETRY);
        servers.handle_refused(0, t0);
        assert_eq!(servers.pick(t0 + RETRY * 10), Some(1));
        assert_eq!(servers.fail_back_due(1, t0), None);
        servers.handle_refused(1, t0);
        assert_eq!(servers.pick(t0), None);
    }

    #[test]
    fn rtt_is_kept_per_endpoint() {
        let mut servers = Failover::new(2, RETRY);
        servers.handle_rtt(1, Duration::from_millis(3));
        assert_eq!(servers.health(1).last_rtt, Some(Duration::from_millis(3)));
        assert_eq!(servers.health(0).last_rtt, None);
    }
}
