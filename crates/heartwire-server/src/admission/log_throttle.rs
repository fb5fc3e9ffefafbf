//! At most one log line per interval for an error that can repeat thousands of times
//! a second (accept failing for want of file descriptors), saying how many were
//! left out.

use std::time::{Duration, Instant};

/// Lets one event through per `every`, and counts the others.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether the event at `now` is logged: `Some(n)` with the `n` events left out
    /// since the last logged one, `None` when this one is left out.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let t0 = Instant::now();
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.admit(t0), Some(0));
        for step in 1..=200 {
            let now = t0 + Duration::from_millis(step * 45);
            assert_eq!(throttle.admit(now), None);
        }
        assert_eq!(throttle.admit(t0 + Duration::from_secs(10)), Some(200));
        assert_eq!(throttle.admit(t0 + Duration::from_secs(11)), None);
    }
}
