//! The message rate of one connection: which messages are taken, which are refused
//! with a retry hint, and when a sender that keeps going is closed.

use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use crate::config::RateLimits;
use crate::handover::state::RateState;

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the rate: handle it.
    Take,
    /// Over the rate: drop it and say when one more will be taken.
    Refuse { retry_after: Duration },
    /// Over the rate again and again without waiting: close with 1008.
    Close,
}

/// The rate of one connection's messages. Heartbeats are never given to it.
#[derive(Debug)]
pub(crate) struct MessageRate {
    bucket: Option<TokenBucket>,
    /// Messages refused since the last one taken.
    refused: u32,
    /// Refusals in a row after which the connection is closed.
    tolerance: u32,
}

impl MessageRate {
    pub(crate) fn new(limits: &RateLimits, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(limits.message_rate, limits.message_burst, now),
            refused: 0,
            tolerance: limits.message_burst.max(1),
        }
    }

    /// The rate as another process left it (a live upgrade): a client does not get
    /// a fresh burst by being handed over.
    pub(crate) fn resume(limits: &RateLimits, state: Option<RateState>, now: Instant) -> Self {
        let mut rate = Self::new(limits, now);
        if let Some(state) = state {
            rate.bucket = rate
                .bucket
                .map(|bucket| bucket.with_tokens(state.tokens, now));
            rate.refused = state.refused;
        }
        rate
    }

    /// What a live upgrade carries of the rate at `now`; `None` when it limits nothing.
    pub(crate) fn snapshot(&mut self, now: Instant) -> Option<RateState> {
        let tokens = self.bucket.as_mut()?.tokens(now);
        Some(RateState {
            tokens,
            refused: self.refused,
        })
    }

    /// The verdict on a message that arrived at `now`.
    pub(crate) fn judge(&mut self, now: Instant) -> Verdict {
        let Some(bucket) = &mut self.bucket else {
            return Verdict::Take;
        };
        match bucket.take(now) {
            Ok(()) => {
                self.refused = 0;
                Verdict::Take
            }
            Err(_) if self.refused >= self.tolerance => Verdict::Close,
            Err(retry_after) => {
                self.refused += 1;
                Verdict::Refuse { retry_after }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: &str, burst: u32) -> RateLimits {
        RateLimits {
            message_rate: rate.parse().unwrap(),
            message_burst: burst,
            ..RateLimits::default()
        }
    }

    #[test]
    fn a_rate_handed_over_keeps_what_was_taken() {
        let t0 = Instant::now();
        let ten = limits("10/s", 2);
        let mut old = MessageRate::new(&ten, t0);
        assert_eq!(old.judge(t0), Verdict::Take);
        assert_eq!(old.judge(t0), Verdict::Take);
        let state = old.snapshot(t0);
        // The other process, on its own clock: no fresh burst; the refill starts
        // again from what was left (the moment of the handover is not refilled).
        let t1 = t0 + Duration::from_millis(50);
        let mut new = MessageRate::resume(&ten, state, t1);
        let refused = Verdict::Refuse {
            retry_after: Duration::from_millis(100),
        };
        assert_eq!(new.judge(t1), refused);
        assert_eq!(new.judge(t1 + Duration::from_millis(100)), Verdict::Take);
        // Unlimited, nothing is carried; from an older build, the bucket starts full.
        let mut unlimited = MessageRate::new(&limits("0/s", 2), t0);
        assert_eq!(unlimited.snapshot(t0), None);
        let mut fresh = MessageRate::resume(&ten, None, t1);
        assert_eq!(fresh.judge(t1), Verdict::Take);
    }

    #[test]
    fn past_the_burst_messages_are_refused_then_the_sender_is_closed() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(&limits("10/s", 2), t0);
        assert_eq!(rate.judge(t0), Verdict::Take);
        assert_eq!(rate.judge(t0), Verdict::Take);
        let refused = Verdict::Refuse {
            retry_after: Duration::from_millis(100),
        };
        assert_eq!(rate.judge(t0), refused);
        assert_eq!(rate.judge(t0), refused);
        assert_eq!(rate.judge(t0), Verdict::Close);
    }

    #[test]
    fn a_sender_that_waits_as_told_is_never_closed() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(&limits("10/s", 1), t0);
        let mut now = t0;
        for _ in 0..50 {
            assert_eq!(rate.judge(now), Verdict::Take);
            match rate.judge(now) {
                Verdict::Refuse { retry_after } => now += retry_after,
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn without_a_rate_everything_is_taken() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(&limits("0/s", 1), t0);
        assert!((0..10_000).all(|_| rate.judge(t0) == Verdict::Take));
    }
}
