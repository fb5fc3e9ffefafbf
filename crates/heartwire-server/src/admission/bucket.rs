//! A token bucket with time as a parameter: the one rule behind the message rate of a
//! connection and the accept rate of a node.

use std::time::{Duration, Instant};

use crate::config::Rate;

/// Holds up to `capacity` tokens, refilled at a steady rate; each event takes one.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens (at least one) refilled at `rate`, or
    /// `None` when the rate limits nothing.
    pub(crate) fn new(rate: Rate, capacity: u32, now: Instant) -> Option<Self> {
        rate.is_limited().then(|| {
            let capacity = f64::from(capacity.max(1));
            Self {
                capacity,
                per_second: rate.per_second(),
                tokens: capacity,
                last: now,
            }
        })
    }

    /// Takes a token at `now`; when there is none, returns how long until there is.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.ready(now)?;
        self.tokens -= 1.0;
        Ok(())
    }

    /// The tokens there are at `now`.
    pub(crate) fn tokens(&mut self, now: Instant) -> f64 {
        let _ = self.ready(now);
        self.tokens
    }

    /// The bucket with `tokens` left at `now` (at most its capacity), as another
    /// process left it.
    pub(crate) fn with_tokens(mut self, tokens: f64, now: Instant) -> Self {
        self.tokens = tokens.clamp(0.0, self.capacity);
        self.last = now;
        self
    }

    /// Gives back a token taken for an event that turned out not to count.
    pub(crate) fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.capacity);
    }

    /// Whether a token is there at `now`, without taking it; when there is none,
    /// how long until there is.
    fn ready(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - self.tokens) / self.per_second;
        Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
    }

    /// Whether the bucket is full at `now`: it remembers nothing of past events.
    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        let _ = self.ready(now);
        self.tokens >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_is_taken_then_the_rate_refills_it() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate("10/s"), 3, t0).unwrap();
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Ok(()));
        }
        assert_eq!(bucket.take(t0), Err(Duration::from_millis(100)));
        let later = t0 + Duration::from_millis(100);
        assert_eq!(bucket.take(later), Ok(()));
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn idle_time_fills_no_more_than_the_capacity() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate("100/s"), 2, t0).unwrap();
        let later = t0 + Duration::from_secs(60);
        assert!(bucket.take(later).is_ok() && bucket.take(later).is_ok());
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn a_clock_that_steps_back_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(rate("1/s"), 1, t0).unwrap();
        assert!(bucket.take(t0).is_ok());
        assert!(bucket.take(t0 - Duration::from_secs(1)).is_err());
        assert!(bucket.take(t0).is_err());
    }

    #[test]
    fn a_token_given_back_is_there_again_and_a_refilled_bucket_is_full() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate("1/s"), 2, t0).unwrap();
        assert!(bucket.is_full(t0));
        bucket.take(t0).unwrap();
        assert!(!bucket.is_full(t0));
        bucket.give_back();
        assert!(bucket.is_full(t0));
        bucket.give_back();
        bucket.take(t0).unwrap();
        bucket.take(t0).unwrap();
        assert_eq!(bucket.take(t0), Err(Duration::from_secs(1)));
        assert!(bucket.is_full(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn a_zero_rate_is_no_bucket() {
        assert!(TokenBucket::new(rate("0/s"), 5, Instant::now()).is_none());
    }
}
