//! The reconnect policy: how long a client waits before its next attempt, and when it
//! gives up.
//!
//! [`Backoff`] reads no clock and owns no random generator: the caller passes `now`
//! and an [`Rng`], so tests drive it with synthetic time and a seeded generator.
//!
//! - [`Delay::Exponential`] (the default) draws each delay uniformly from
//!   `[0, min(cap, base · 2^attempt)]` ("full jitter"), so clients that lost the same
//!   server at the same instant come back spread over the whole window instead of in
//!   waves.
//! - [`Delay::Fixed`] waits the same delay every time.
//! - `max_attempts` and `max_elapsed` bound the streak of failures; both default to
//!   "never give up".
//! - A connection that stayed open for `reset_after` was healthy: when it ends, the
//!   streak starts again from attempt 0.
//! - A server that restarts and names when to come back (close 1012 with a hint, or a
//!   `reconnect` frame) is not a failure of the client: the streak starts again, so a
//!   graceful restart never inherits the long windows of earlier failures.
//! - A token that expired (close 4498) is answered with a fresh token at once, once
//!   per streak and without counting an attempt; a second expired token in the same
//!   streak (the token provider hands out stale tokens) waits like any failure.

use std::time::{Duration, Instant};

use rand::Rng;

/// How the delay before an attempt grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// The same delay before every attempt.
    Fixed(Duration),
    /// Full jitter: uniform in `[0, min(cap, base · 2^attempt)]`.
    Exponential {
        /// The window of the first retry.
        base: Duration,
        /// The largest window.
        cap: Duration,
    },
}

/// A reconnect policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// How delays grow.
    pub delay: Delay,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
    /// Give up once the streak of failures has lasted this long (`None`: never).
    pub max_elapsed: Option<Duration>,
    /// A connection open this long was healthy: the streak starts again after it.
    pub reset_after: Duration,
}

impl BackoffConfig {
    /// The default base of [`Delay::Exponential`]: the first retry comes within 500 ms.
    pub const DEFAULT_BASE: Duration = Duration::from_millis(500);
    /// The default cap of [`Delay::Exponential`]: no wait is longer than 20 s.
    pub const DEFAULT_CAP: Duration = Duration::from_secs(20);
    /// The default healthy period after which the streak is forgotten.
    pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(30);

    /// The longest delay this policy can ever return.
    pub fn longest_delay(&self) -> Duration {
        match self.delay {
            Delay::Fixed(delay) => delay,
            Delay::Exponential { cap, .. } => cap,
        }
    }
}

impl Default for BackoffConfig {
    /// Full jitter from 500 ms up to 20 s, never giving up, reset after 30 s healthy.
    fn default() -> Self {
        Self {
            delay: Delay::Exponential {
                base: Self::DEFAULT_BASE,
                cap: Self::DEFAULT_CAP,
            },
            max_attempts: None,
            max_elapsed: None,
            reset_after: Self::DEFAULT_RESET_AFTER,
        }
    }
}

/// The state of one client's reconnect policy. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// Failed attempts (or unhealthy connections) in the current streak.
    attempt: u32,
    /// When the current streak began.
    streak_started: Option<Instant>,
    /// When the current connection opened, while one is open.
    connected_at: Option<Instant>,
    /// The current streak has used its immediate retry with a fresh token.
    fresh_token_used: bool,
}

impl Backoff {
    /// A policy with no failure yet.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            attempt: 0,
            streak_started: None,
            connected_at: None,
            fresh_token_used: false,
        }
    }

    /// The policy this state follows.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// How many delays have been handed out in the current streak.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A connection opened at `now`.
    pub fn handle_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The open connection ended at `now`. If it stayed open for `reset_after`, the
    /// streak is over and the next delay is the first one again.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if let Some(opened) = self.connected_at.take() {
            if now.saturating_duration_since(opened) >= self.config.reset_after {
                self.attempt = 0;
                self.streak_started = None;
                self.fresh_token_used = false;
            }
        }
    }

    /// The server restarts and asked this client back after its hint: not a failure,
    /// so the streak starts again.
    pub fn handle_server_restart(&mut self) {
        self.attempt = 0;
        self.streak_started = None;
        self.fresh_token_used = false;
    }

    /// The delay before the next attempt, or `None` when the policy gives up.
    ///
    /// Each call counts one attempt.
    pub fn next_delay(&mut self, now: Instant, rng: &mut impl Rng) -> Option<Duration> {
        self.next_attempt(now)?;
        let delay = match self.config.delay {
            Delay::Fixed(delay) => delay,
            Delay::Exponential { base, cap } => {
                let window = window(base, cap, self.attempt - 1);
                let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rng.random_range(0..=nanos))
            }
        };
        Some(delay)
    }

    /// The delay before reconnecting with a fresh token after the server said the
    /// token expired: none, and no attempt counted, the first time in a streak;
    /// afterwards [`next_delay`](Self::next_delay)'s. `None` when the policy gives up.
    pub fn next_fresh_token(&mut self, now: Instant, rng: &mut impl Rng) -> Option<Duration> {
        if self.fresh_token_used {
            return self.next_delay(now, rng);
        }
        self.fresh_token_used = true;
        Some(Duration::ZERO)
    }

    /// Counts one attempt whose delay someone else chose (a server's retry hint), or
    /// returns `None` when the policy gives up.
    pub fn next_attempt(&mut self, now: Instant) -> Option<u32> {
        let started = *self.streak_started.get_or_insert(now);
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
            || self
                .config
                .max_elapsed
                .is_some_and(|max| now.saturating_duration_since(started) >= max)
        {
            return None;
        }
        self.attempt += 1;
        Some(self.attempt)
    }
}

/// `min(cap, base · 2^exponent)`, without overflow.
fn window(base: Duration, cap: Duration, exponent: u32) -> Duration {
    base.checked_mul(2u32.checked_pow(exponent.min(31)).unwrap_or(u32::MAX))
        .map_or(cap, |grown| grown.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    fn exponential() -> BackoffConfig {
        BackoffConfig {
            delay: Delay::Exponential {
                base: BASE,
                cap: CAP,
            },
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn full_jitter_stays_within_its_window() {
        let mut rng = SmallRng::seed_from_u64(7);
        let t0 = Instant::now();
        for _ in 0..200 {
            let mut backoff = Backoff::new(exponential());
            for n in 0..20u32 {
                let delay = backoff.next_delay(t0, &mut rng).unwrap();
                let bound = (BASE * 2u32.pow(n.min(20))).min(CAP);
                assert!(delay <= bound, "attempt {n}: {delay:?} > {bound:?}");
            }
        }
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_window() {
        let mut rng = SmallRng::seed_from_u64(42);
        let t0 = Instant::now();
        // Attempt 10 is capped: 1,000 clients draw from [0, CAP].
        let delays: Vec<Duration> = (0..1_000)
            .map(|_| {
                let mut backoff = Backoff::new(exponential());
                (0..10).for_each(|_| {
                    backoff.next_delay(t0, &mut rng);
                });
                backoff.next_delay(t0, &mut rng).unwrap()
            })
            .collect();
        // Every tenth of the window holds between 5 % and 15 % of the clients.
        let mut buckets = [0u32; 10];
        for delay in &delays {
            let tenth = (delay.as_secs_f64() / CAP.as_secs_f64() * 10.0) as usize;
            buckets[tenth.min(9)] += 1;
        }
        for (i, count) in buckets.iter().enumerate() {
            assert!(
                (50..=150).contains(count),
                "tenth {i} holds {count} of 1000"
            );
        }
        let mean = delays.iter().sum::<Duration>() / 1_000;
        assert!(mean > CAP * 4 / 10 && mean < CAP * 6 / 10, "mean {mean:?}");
    }

    #[test]
    fn same_seed_same_delays() {
        let t0 = Instant::now();
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut backoff = Backoff::new(exponential());
            (0..8)
                .map(|_| backoff.next_delay(t0, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn fixed_delay_never_changes() {
        let mut rng = SmallRng::seed_from_u64(1);
        let every = Duration::from_secs(5);
        let mut backoff = Backoff::new(BackoffConfig {
            delay: Delay::Fixed(every),
            ..BackoffConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..50 {
            assert_eq!(backoff.next_delay(t0, &mut rng), Some(every));
        }
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut backoff = Backoff::new(BackoffConfig {
            max_attempts: Some(3),
            ..exponential()
        });
        let t0 = Instant::now();
        for n in 1..=3 {
            assert!(backoff.next_delay(t0, &mut rng).is_some());
            assert_eq!(backoff.attempt(), n);
        }
        assert_eq!(backoff.next_delay(t0, &mut rng), None);
        assert_eq!(backoff.next_attempt(t0), None);
    }

    #[test]
    fn gives_up_after_max_elapsed() {
        let mut rng = SmallRng::seed_from_u64(1);
        let limit = Duration::from_secs(60);
        let mut backoff = Backoff::new(BackoffConfig {
            max_elapsed: Some(limit),
            ..exponential()
        });
        let t0 = Instant::now();
        assert!(backoff.next_delay(t0, &mut rng).is_some());
        assert!(
            backoff
                .next_delay(t0 + limit - Duration::from_millis(1), &mut rng)
                .is_some()
        );
        assert_eq!(backoff.next_delay(t0 + limit, &mut rng), None);
    }

    #[test]
    fn never_gives_up_by_default() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut backoff = Backoff::new(BackoffConfig::default());
        let t0 = Instant::now();
        for n in 0..10_000u32 {
            let now = t0 + Duration::from_secs(u64::from(n) * 20);
            let delay = backoff.next_delay(now, &mut rng).unwrap();
            assert!(delay <= BackoffConfig::DEFAULT_CAP);
        }
    }

    #[test]
    fn a_healthy_connection_resets_the_streak() {
        let mut rng = SmallRng::seed_from_u64(1);
        let config = BackoffConfig {
            max_attempts: Some(2),
            reset_after: Duration::from_secs(10),
            ..exponential()
        };
        let mut backoff = Backoff::new(config);
        let t0 = Instant::now();
        backoff.next_delay(t0, &mut rng).unwrap();
        backoff.next_delay(t0, &mut rng).unwrap();
        // A connection that lasts 9.9 s is not healthy: the streak goes on.
        backoff.handle_connected(t0);
        backoff.handle_disconnected(t0 + Duration::from_millis(9_900));
        assert_eq!(backoff.next_delay(t0, &mut rng), None);
        // One that lasts 10 s is: attempts count from 1 again.
        backoff.handle_connected(t0);
        backoff.handle_disconnected(t0 + Duration::from_secs(10));
        assert_eq!(backoff.attempt(), 0);
        let first = backoff.next_delay(t0, &mut rng).unwrap();
        assert!(first <= BASE);
        assert_eq!(backoff.attempt(), 1);
    }

    #[test]
    fn an_expired_token_is_retried_at_once_once_per_streak() {
        let mut rng = SmallRng::seed_from_u64(5);
        let t0 = Instant::now();
        let mut backoff = Backoff::new(BackoffConfig {
            reset_after: Duration::from_secs(10),
            ..exponential()
        });
        // A token that expired on a long connection: straight back, nothing counted.
        backoff.handle_connected(t0);
        backoff.handle_disconnected(t0 + Duration::from_secs(3600));
        assert_eq!(backoff.next_fresh_token(t0, &mut rng), Some(Duration::ZERO));
        assert_eq!(backoff.attempt(), 0);
        // The fresh token was expired too: that is a failure, with its delay.
        backoff.handle_connected(t0);
        backoff.handle_disconnected(t0 + Duration::from_millis(5));
        let delay = backoff.next_fresh_token(t0, &mut rng).unwrap();
        assert!(delay <= BASE);
        assert_eq!(backoff.attempt(), 1);
        backoff.next_fresh_token(t0, &mut rng).unwrap();
        assert_eq!(backoff.attempt(), 2);
        // A healthy connection starts a new streak, with its own free retry.
        backoff.handle_connected(t0);
        backoff.handle_disconnected(t0 + Duration::from_secs(10));
        assert_eq!(backoff.next_fresh_token(t0, &mut rng), Some(Duration::ZERO));
    }

    #[test]
    fn window_does_not_overflow() {
        assert_eq!(window(Duration::from_secs(1), CAP, 200), CAP);
        assert_eq!(window(Duration::MAX, CAP, 3), CAP);
        assert_eq!(window(BASE, CAP, 0), BASE);
        assert_eq!(window(BASE, CAP, 3), BASE * 8);
    }

    #[test]
    fn a_server_restart_starts_the_streak_again() {
        let mut backoff = Backoff::new(exponential());
        let mut rng = SmallRng::seed_from_u64(1);
        let t0 = Instant::now();
        for _ in 0..6 {
            backoff.next_delay(t0, &mut rng).unwrap();
        }
        assert_eq!(backoff.attempt(), 6);
        backoff.handle_server_restart();
        assert_eq!(backoff.next_attempt(t0), Some(1));
        // The next real failure waits within the second window, not the cap.
        let delay = backoff.next_delay(t0, &mut rng).unwrap();
        assert!(delay <= BASE * 2, "{delay:?}");
    }
}
