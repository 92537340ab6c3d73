//! Percentiles of latency samples. Pure: no IO, no clock.

/// The 50th and 99th percentiles of a set of samples, in the samples' unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// The percentiles of `samples` (in any order); `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Percentiles> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Percentiles {
            p50: percentile(&sorted, 50.0)?,
            p99: percentile(&sorted, 99.0)?,
        })
    }
}

/// The `p`-th percentile (0 < p <= 100) of `sorted` by the nearest-rank method: the smallest
/// sample such that at least p % of the samples are at or below it. Being a real sample, it
/// never invents a latency nobody saw. `None` when `sorted` is empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Sample counts are far below 2^52, so the conversions are exact.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of `values` (in any order) by the nearest-rank method; `None` when there are
/// none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_one_to_hundred_is_the_rank_itself() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.5), Some(1.0));
    }

    #[test]
    fn p99_of_few_samples_is_the_largest() {
        let samples = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&samples, 99.0), Some(10.0));
        assert_eq!(percentile(&samples, 50.0), Some(5.0));
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        assert_eq!(
            Percentiles::of(&[7.5]),
            Some(Percentiles { p50: 7.5, p99: 7.5 })
        );
    }

    #[test]
    fn samples_in_any_order_are_sorted_first() {
        let samples = [9.0, 1.0, 5.0, 3.0, 7.0];
        assert_eq!(
            Percentiles::of(&samples),
            Some(Percentiles { p50: 5.0, p99: 9.0 })
        );
    }

    #[test]
    fn no_samples_have_no_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Percentiles::of(&[]), None);
    }
}
