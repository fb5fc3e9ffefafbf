//! The `Retry-After` of a refused connection, spread so that the clients refused in
//! the same second do not all come back in the same second, as the reconnect hints
//! of a shutdown are spread (`--shutdown-spread`).

use std::time::Duration;

use rand::Rng;

/// Seconds to ask a refused client to wait: at least `base`, plus a whole number of
/// seconds drawn uniformly from `[0, spread]`.
pub(crate) fn retry_after_secs(base: u64, spread: Duration, rng: &mut impl Rng) -> u64 {
    base + rng.random_range(0..=spread.as_secs())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn refused_clients_are_asked_to_wait_spread_over_the_window() {
        let mut rng = SmallRng::seed_from_u64(7);
        let spread = Duration::from_secs(5);
        let waits: Vec<u64> = (0..1000)
            .map(|_| retry_after_secs(1, spread, &mut rng))
            .collect();
        assert!(waits.iter().all(|wait| (1..=6).contains(wait)), "{waits:?}");
        for second in 1..=6 {
            let count = waits.iter().filter(|wait| **wait == second).count();
            // 1000 draws over 6 values: about 167 each.
            assert!(
                (100..=240).contains(&count),
                "{second} s drawn {count} times"
            );
        }
        let mut rng = SmallRng::seed_from_u64(7);
        assert_eq!(retry_after_secs(10, Duration::ZERO, &mut rng), 10);
    }
}
