//! Whether a figure sampled through a soak (resident memory, file descriptors, tasks)
//! keeps growing after its first plateau, sans-IO.
//!
//! The samples are cut in thirds: the first is the warm-up (connections open, history
//! fills up to its bound), the middle one is the plateau, the last one must stay on
//! it. A figure keeps growing when the last third's highest sample is above the
//! middle third's highest by more than `percent` plus an absolute allowance (the
//! noise of a churning fleet: a few connections more open at one sample than at the
//! other). A leak of one socket, task or buffer per session grows with the sessions,
//! which are spread evenly over the run, so it lifts the last third over the middle
//! one by as much as the middle one over the first.

/// The two highest samples compared, when the figure kept growing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Growth {
    pub(super) middle: f64,
    pub(super) last: f64,
}

/// Samples fewer than this are too few to judge (two per third).
const FEWEST_SAMPLES: usize = 6;

/// `Some` when `samples` (in time order) keep growing past `percent` % plus
/// `allowance` between the middle and last thirds.
pub(super) fn keeps_growing(samples: &[f64], percent: f64, allowance: f64) -> Option<Growth> {
    if samples.len() < FEWEST_SAMPLES {
        return None;
    }
    let n = samples.len();
    let highest = |part: &[f64]| part.iter().copied().fold(f64::MIN, f64::max);
    let middle = highest(&samples[n / 3..2 * n / 3]);
    let last = highest(&samples[2 * n / 3..]);
    (last > middle * (1.0 + percent / 100.0) + allowance).then_some(Growth { middle, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plateau_with_noise_passes_and_a_steady_climb_fails() {
        // Warm-up, then a plateau around 100 with noise of a few units.
        let plateau = [20.0, 60.0, 95.0, 101.0, 98.0, 103.0, 99.0, 104.0, 100.0];
        assert_eq!(keeps_growing(&plateau, 10.0, 5.0), None);
        // One more unit per sample: 10 % over 100 plus 5 is 115, crossed at the end.
        let climb: Vec<f64> = (0..30).map(|i| 100.0 + f64::from(i) * 2.0).collect();
        assert_eq!(
            keeps_growing(&climb, 10.0, 5.0),
            Some(Growth {
                middle: 138.0,
                last: 158.0
            })
        );
        // A slow climb inside the allowance passes.
        let slow: Vec<f64> = (0..30).map(|i| 1000.0 + f64::from(i)).collect();
        assert_eq!(keeps_growing(&slow, 10.0, 0.0), None);
    }

    #[test]
    fn the_warm_up_does_not_count_and_too_few_samples_are_not_judged() {
        // All the growth is in the first third.
        let warm = [
            0.0, 500.0, 900.0, 1000.0, 1000.0, 990.0, 1000.0, 1005.0, 995.0,
        ];
        assert_eq!(keeps_growing(&warm, 10.0, 0.0), None);
        assert_eq!(
            keeps_growing(&[1.0, 2.0, 400.0, 800.0, 1600.0], 10.0, 0.0),
            None
        );
    }
}
