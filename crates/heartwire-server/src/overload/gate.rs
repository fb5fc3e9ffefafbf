//! A bound with hysteresis, sans-IO: a signal crosses it going up (and stays above it
//! for a while, if asked) to turn the gate on, and must fall below a lower value to turn
//! it off, so a signal that hovers at the bound does not flap between the two.

use std::time::{Duration, Instant};

/// On above `enter` (held for `sustain`), off below `leave`.
#[derive(Debug)]
pub(crate) struct Gate {
    enter: u64,
    leave: u64,
    sustain: Duration,
    /// When the value went above `enter`, while it stays there.
    above_since: Option<Instant>,
    on: bool,
}

impl Gate {
    /// A gate that turns on once values stay above `enter` for `sustain` (zero: at the
    /// first such value), and off at the first value below `leave` (`leave <= enter`).
    pub(crate) fn new(enter: u64, leave: u64, sustain: Duration) -> Self {
        Self {
            enter,
            leave: leave.min(enter),
            sustain,
            above_since: None,
            on: false,
        }
    }

    /// Takes the value observed at `now`; returns whether the gate is on.
    pub(crate) fn observe(&mut self, value: u64, now: Instant) -> bool {
        if value > self.enter {
            let since = *self.above_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.sustain {
                self.on = true;
            }
        } else {
            self.above_since = None;
            if value < self.leave {
                self.on = false;
            }
        }
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn without_sustain_the_gate_turns_on_above_the_bound_and_off_only_below_the_lower_one() {
        let start = Instant::now();
        let mut gate = Gate::new(100, 90, Duration::ZERO);
        assert!(!gate.observe(100, start), "at the bound is not above it");
        assert!(gate.observe(101, start));
        // Hovering between the two values keeps it on: no flapping.
        for value in [99, 95, 90, 100, 91] {
            assert!(gate.observe(value, start), "{value} keeps it on");
        }
        assert!(
            !gate.observe(89, start),
            "below the lower value turns it off"
        );
        // Off again, it stays off until the bound is crossed once more.
        for value in [90, 95, 100] {
            assert!(!gate.observe(value, start), "{value} keeps it off");
        }
        assert!(gate.observe(150, start));
    }

    #[test]
    fn with_sustain_the_value_must_stay_above_the_bound_all_that_time() {
        let start = Instant::now();
        let at = |millis| start + ms(millis);
        let mut gate = Gate::new(250, 125, ms(2000));
        assert!(!gate.observe(400, at(0)));
        assert!(!gate.observe(900, at(1500)), "not yet for 2 s");
        // A single value at or under the bound starts the count again.
        assert!(!gate.observe(200, at(1800)));
        assert!(!gate.observe(300, at(2100)));
        assert!(!gate.observe(300, at(4000)), "1.9 s above, not 2 s");
        assert!(gate.observe(300, at(4100)), "2 s above: on");
        // On, it stays on while the value is over half the bound, wherever it is.
        assert!(gate.observe(200, at(4200)));
        assert!(gate.observe(126, at(4300)));
        assert!(!gate.observe(124, at(4400)), "below half: off at once");
        // A lone stall (one late tick, as a paused process gives) does not turn it on.
        assert!(!gate.observe(5000, at(9400)));
        assert!(!gate.observe(1, at(9500)));
    }
}
