//! A latency histogram that many tasks record into at once: 50 µs buckets up to 10 s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKET_MICROS: u64 = 50;
const BUCKETS: usize = 200_000;

/// Counts of latencies, shared by the tasks that record them.
pub(crate) struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = usize::try_from(micros / BUCKET_MICROS).unwrap_or(BUCKETS - 1);
        self.buckets[index.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency below which `quantile` (0..=1) of the records fall, as the upper
    /// edge of its bucket; `None` when nothing was recorded.
    pub(crate) fn quantile(&self, quantile: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // Rounding up: the record at this rank is the quantile.
        let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Duration::from_micros((index as u64 + 1) * BUCKET_MICROS));
            }
        }
        None
    }

    pub(crate) fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_edges() {
        let histogram = Histogram::new();
        assert_eq!(histogram.quantile(0.5), None);
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        assert_eq!(histogram.count(), 100);
        assert_eq!(
            histogram.quantile(0.99),
            Some(Duration::from_micros(99_050))
        );
        histogram.reset();
        assert_eq!(histogram.count(), 0);
    }
}
