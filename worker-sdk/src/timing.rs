//! When to try again and when to heartbeat. Pure: no IO, no clock; randomness comes in as an
//! argument, so the bounds are unit-testable.

use std::time::Duration;

use rand::Rng;

/// Shortest pause between two heartbeats, so a lease that is (nearly) gone does not turn the
/// heartbeat loop into a busy loop.
pub(crate) const MIN_HEARTBEAT_DELAY: Duration = Duration::from_millis(50);

/// Capped exponential backoff with full jitter: the n-th delay is drawn uniformly from
/// `[0, min(cap, base * 2^n)]`. Full jitter spreads the retries of many workers that lost the
/// same server at the same moment, so they do not come back in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// Ceiling of the first delay.
    base: Duration,
    /// Largest ceiling, however many attempts failed.
    cap: Duration,
    /// Failed attempts since the last success; doubles the ceiling each time.
    failures: u32,
}

impl Backoff {
    /// A backoff that starts at `base` and never waits longer than `cap`.
    pub(crate) const fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: 0,
        }
    }

    /// Upper bound of the next delay.
    pub(crate) fn ceiling(&self) -> Duration {
        // 2^31 times any sensible base is far beyond every cap, so the shift cannot lose a bound.
        let factor = 1u32 << self.failures.min(31);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Draws the next delay and counts one more failure.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling().as_nanos()).unwrap_or(u64::MAX);
        self.failures = self.failures.saturating_add(1);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }

    /// Failed attempts since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures after a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Pause before the next heartbeat: `min(interval / 2, time_left / 3)`, never below
/// [`MIN_HEARTBEAT_DELAY`].
///
/// `interval` is the heartbeat interval the graph asks for; without one the lease itself is
/// the interval, so `time_left / 3` decides. Half the interval leaves room for one lost
/// heartbeat; a third of the lease left leaves room for two attempts before it runs out.
pub(crate) fn heartbeat_delay(interval: Option<Duration>, time_left: Duration) -> Duration {
    let by_lease = time_left / 3;
    let by_interval = interval.map_or(by_lease, |interval| interval / 2);
    by_interval.min(by_lease).max(MIN_HEARTBEAT_DELAY)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(10);

    #[test]
    fn backoff_ceiling_doubles_until_the_cap() {
        let mut backoff = Backoff::new(BASE, CAP);
        let mut rng = StdRng::seed_from_u64(7);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay(&mut rng);
        }
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn backoff_delays_stay_within_zero_and_the_ceiling() {
        let mut backoff = Backoff::new(BASE, CAP);
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..1000 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay(&mut rng);
            assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
            assert!(delay <= CAP);
        }
    }

    #[test]
    fn backoff_jitter_spreads_delays_over_the_whole_range() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..1000)
            .map(|_| Backoff::new(CAP, CAP).next_delay(&mut rng))
            .collect();
        assert!(delays.iter().any(|d| *d < CAP / 4), "no short delay drawn");
        assert!(
            delays.iter().any(|d| *d > CAP * 3 / 4),
            "no long delay drawn"
        );
    }

    #[test]
    fn backoff_survives_many_failures_and_resets() {
        let mut backoff = Backoff::new(BASE, CAP);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!(backoff.failures(), 100);
        assert_eq!(backoff.ceiling(), CAP);
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.ceiling(), BASE);
    }

    #[test]
    fn heartbeat_delay_follows_the_tighter_of_interval_and_lease() {
        let secs = Duration::from_secs;
        let cases = [
            // (heartbeat interval, time left on the lease, expected delay)
            (Some(secs(10)), secs(60), secs(5)),
            (Some(secs(10)), secs(6), secs(2)),
            (None, secs(300), secs(100)),
            (None, secs(30), secs(10)),
            (Some(secs(60)), secs(30), secs(10)),
            (None, Duration::ZERO, MIN_HEARTBEAT_DELAY),
            (
                Some(Duration::from_millis(20)),
                secs(30),
                MIN_HEARTBEAT_DELAY,
            ),
        ];
        for (interval, left, expected) in cases {
            assert_eq!(
                heartbeat_delay(interval, left),
                expected,
                "interval {interval:?}, left {left:?}"
            );
        }
    }
}
