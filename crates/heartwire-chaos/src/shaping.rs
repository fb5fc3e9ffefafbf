//! When bytes may leave, decided without a clock: latency keeps chunks in order,
//! bandwidth paces them, an idle cut falls after a silence. The pumps pass `now`.

use std::time::{Duration, Instant};

use rand::Rng;

/// The most bytes a paced flow writes at once: 20 ms worth at its rate, so the
/// pacing is smooth at any rate, and at most one read buffer.
pub(crate) fn pace_quantum(bytes_per_sec: u64, buffer: usize) -> usize {
    usize::try_from(bytes_per_sec / 50)
        .unwrap_or(usize::MAX)
        .clamp(1, buffer)
}

/// A chunk's delay under a latency fault: `fixed` plus a uniform draw from
/// `0..=jitter`.
pub(crate) fn draw_delay(fixed: Duration, jitter: Duration, rng: &mut impl Rng) -> Duration {
    let jitter_ns = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
    fixed + Duration::from_nanos(rng.random_range(0..=jitter_ns))
}

/// When each chunk of one flow is due: never before its delay has passed, never
/// before the chunk ahead of it, so jitter does not reorder bytes.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    last_due: Option<Instant>,
}

impl Schedule {
    /// The time a chunk read at `now` and held for `delay` leaves.
    pub(crate) fn due(&mut self, now: Instant, delay: Duration) -> Instant {
        let due = (now + delay).max(self.last_due.unwrap_or(now));
        self.last_due = Some(due);
        due
    }
}

/// Paces one flow to a rate: each piece leaves when a link of that rate would have
/// finished sending it. An idle link saves no credit for a burst.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    free_at: Option<Instant>,
}

impl Pacer {
    /// When `bytes` offered at `now` have passed a link of `bytes_per_sec`.
    pub(crate) fn sent_at(&mut self, now: Instant, bytes: usize, bytes_per_sec: u64) -> Instant {
        let start = self.free_at.map_or(now, |free| free.max(now));
        let nanos = (bytes as u128 * 1_000_000_000).div_ceil(u128::from(bytes_per_sec.max(1)));
        let done = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.free_at = Some(done);
        done
    }

    /// Forgets the link's state (the rate was switched off).
    pub(crate) fn idle(&mut self) {
        self.free_at = None;
    }
}

/// When an idle cut of `after` closes a connection whose last byte passed at
/// `last_byte`: the silence is counted from that byte, or from the moment the cut was
/// switched on if that is later (switching it on does not close connections that were
/// already quiet).
pub(crate) fn idle_deadline(last_byte: Instant, cut_since: Instant, after: Duration) -> Instant {
    last_byte.max(cut_since) + after
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_stay_within_the_fixed_part_and_the_jitter() {
        let mut rng = SmallRng::seed_from_u64(3);
        let draws: Vec<_> = (0..1000)
            .map(|_| draw_delay(200 * MS, 50 * MS, &mut rng))
            .collect();
        assert!(draws.iter().all(|d| (200 * MS..=250 * MS).contains(d)));
        assert!(draws.iter().any(|d| *d < 210 * MS) && draws.iter().any(|d| *d > 240 * MS));
        assert_eq!(draw_delay(7 * MS, Duration::ZERO, &mut rng), 7 * MS);
    }

    #[test]
    fn jitter_never_reorders_chunks() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        assert_eq!(schedule.due(t0, 250 * MS), t0 + 250 * MS);
        // Read 10 ms later with a shorter delay: it waits for the one ahead.
        assert_eq!(schedule.due(t0 + 10 * MS, 200 * MS), t0 + 250 * MS);
        assert_eq!(schedule.due(t0 + 20 * MS, 240 * MS), t0 + 260 * MS);
        // Without latency a chunk still leaves after the ones queued ahead of it.
        assert_eq!(schedule.due(t0 + 30 * MS, Duration::ZERO), t0 + 260 * MS);
        assert_eq!(schedule.due(t0 + 900 * MS, Duration::ZERO), t0 + 900 * MS);
    }

    #[test]
    fn pacing_holds_the_rate_without_bursts_after_silence() {
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        // 1000 B/s: 100 bytes take 100 ms, the next 100 queue behind them.
        assert_eq!(pacer.sent_at(t0, 100, 1000), t0 + 100 * MS);
        assert_eq!(pacer.sent_at(t0, 100, 1000), t0 + 200 * MS);
        // After a silence, no credit was saved.
        assert_eq!(pacer.sent_at(t0 + 1000 * MS, 50, 1000), t0 + 1050 * MS);
        pacer.idle();
        assert_eq!(pacer.sent_at(t0, 1, 1000), t0 + MS);
        assert_eq!(pace_quantum(1000, 16384), 20);
        assert_eq!(pace_quantum(10, 16384), 1);
        assert_eq!(pace_quantum(u64::MAX, 16384), 16384);
    }

    #[test]
    fn an_idle_cut_counts_from_the_last_byte_or_its_start() {
        let t0 = Instant::now();
        let after = 60_000 * MS;
        assert_eq!(idle_deadline(t0, t0 + 5 * MS, after), t0 + 5 * MS + after);
        assert_eq!(idle_deadline(t0 + 9 * MS, t0, after), t0 + 9 * MS + after);
    }
}
