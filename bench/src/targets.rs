//! The targets of the "Performance" issue, and the rules that say whether a figure meets its
//! own. Pure: no IO.

/// A bound a figure must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Strictly below.
    Below(f64),
    /// At most.
    AtMost(f64),
    /// At least.
    AtLeast(f64),
    /// Exactly (for counts).
    Exactly(f64),
}

/// (c) One-step workflow round trip (`StartWorkflow` with a wait, until COMPLETED) on
/// an idle server, median, in milliseconds.
pub const LATENCY_ROUND_TRIP_P50_MS: Target = Target::AtMost(2.0);

/// (c) The same round trip, 99th percentile, in milliseconds.
pub const LATENCY_ROUND_TRIP_P99_MS: Target = Target::AtMost(5.0);

/// (c) Dispatch latency on an idle server (a job's `created_at` to a worker holding it),
/// median, in milliseconds.
pub const DISPATCH_LATENCY_P50_MS: Target = Target::AtMost(1.0);

/// (b) against (d): chain steps per second over pgbench's transactions per second on the same
/// PostgreSQL server. A step needs at least the writes of one pgbench transaction, so at least
/// one step per commit PostgreSQL can make.
pub const RATIO_CHAIN_STEPS_PER_PGBENCH_TPS: Target = Target::AtLeast(1.0);

/// (a) against (d): one-step workflows per second over pgbench's transactions per second. A
/// workflow costs a start and a completion, so at least half of them.
pub const RATIO_THROUGHPUT_PER_PGBENCH_TPS: Target = Target::AtLeast(0.5);

/// (e) The server's CPU with 1,000 idle pollers, in percent of one core.
pub const IDLE_SERVER_CPU_PCT: Target = Target::Below(5.0);

/// (e) Claim queries per second with 1,000 idle pollers: about none.
pub const IDLE_CLAIM_QUERIES_PER_S: Target = Target::Below(1.0);

/// (f) Pollers that get the one job: exactly one.
pub const ONE_JOB_POLLERS_WITH_JOB: Target = Target::Exactly(1.0);

/// (f) Claim queries the one job costs: one, or none when the server hands the job straight
/// to a waiting poller.
pub const ONE_JOB_CLAIM_QUERIES: Target = Target::AtMost(1.0);

/// (f) Waiting pollers the one job wakes: one, or none when the server hands the job straight
/// to a waiting poller.
pub const ONE_JOB_WAKEUPS: Target = Target::AtMost(1.0);

/// (g) The server's peak resident memory while 1,000 pollers drain 100,000 ready jobs, in MiB.
pub const MEMORY_PEAK_RSS_MIB: Target = Target::Below(200.0);

/// (h) Chain steps per second on a big history, as a share of the same on an empty database.
pub const HISTORY_CHAIN_RATIO: Target = Target::AtLeast(0.9);

impl Target {
    /// True when `value` meets the bound.
    pub fn passes(self, value: f64) -> bool {
        match self {
            Target::Below(bound) => value < bound,
            Target::AtMost(bound) => value <= bound,
            Target::AtLeast(bound) => value >= bound,
            Target::Exactly(bound) => value == bound,
        }
    }

    /// The bound as people read it, such as `< 5` or `>= 0.9`.
    pub fn describe(self) -> String {
        let (sign, bound) = match self {
            Target::Below(bound) => ("<", bound),
            Target::AtMost(bound) => ("<=", bound),
            Target::AtLeast(bound) => (">=", bound),
            Target::Exactly(bound) => ("=", bound),
        };
        format!("{sign} {bound}")
    }
}

/// (f) as a whole: exactly one poller got the job, for at most one claim query and at most
/// one wake-up.
pub fn one_job_passes(pollers_with_job: usize, claim_queries: f64, wakeups: f64) -> bool {
    // Poller counts stay far below 2^52, so the conversion is exact.
    ONE_JOB_POLLERS_WITH_JOB.passes(pollers_with_job as f64)
        && ONE_JOB_CLAIM_QUERIES.passes(claim_queries)
        && ONE_JOB_WAKEUPS.passes(wakeups)
}

/// What the (f) rule says, for the report.
pub const ONE_JOB_RULE: &str = "1 poller, <= 1 claim, <= 1 wake-up";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_include_or_exclude_their_edge() {
        assert!(Target::Below(5.0).passes(4.99));
        assert!(!Target::Below(5.0).passes(5.0));
        assert!(Target::AtMost(1.0).passes(1.0));
        assert!(!Target::AtMost(1.0).passes(1.5));
        assert!(Target::AtLeast(0.9).passes(0.9));
        assert!(!Target::AtLeast(0.9).passes(0.899));
        assert!(Target::Exactly(1.0).passes(1.0));
        assert!(!Target::Exactly(1.0).passes(0.0));
        assert!(!Target::Exactly(1.0).passes(2.0));
    }

    #[test]
    fn not_a_number_meets_no_bound() {
        for target in [
            Target::Below(5.0),
            Target::AtMost(1.0),
            Target::AtLeast(0.9),
            Target::Exactly(1.0),
        ] {
            assert!(!target.passes(f64::NAN), "{target:?}");
        }
    }

    #[test]
    fn bounds_read_as_comparisons() {
        assert_eq!(IDLE_SERVER_CPU_PCT.describe(), "< 5");
        assert_eq!(ONE_JOB_CLAIM_QUERIES.describe(), "<= 1");
        assert_eq!(HISTORY_CHAIN_RATIO.describe(), ">= 0.9");
        assert_eq!(ONE_JOB_POLLERS_WITH_JOB.describe(), "= 1");
    }

    #[test]
    fn latency_targets_include_their_bound() {
        assert!(LATENCY_ROUND_TRIP_P50_MS.passes(2.0));
        assert!(!LATENCY_ROUND_TRIP_P50_MS.passes(2.001));
        assert!(LATENCY_ROUND_TRIP_P99_MS.passes(5.0));
        assert!(!LATENCY_ROUND_TRIP_P99_MS.passes(5.001));
        assert!(DISPATCH_LATENCY_P50_MS.passes(1.0));
        assert!(DISPATCH_LATENCY_P50_MS.passes(0.0));
        assert!(!DISPATCH_LATENCY_P50_MS.passes(1.001));
        assert_eq!(LATENCY_ROUND_TRIP_P50_MS.describe(), "<= 2");
        assert_eq!(LATENCY_ROUND_TRIP_P99_MS.describe(), "<= 5");
        assert_eq!(DISPATCH_LATENCY_P50_MS.describe(), "<= 1");
    }

    #[test]
    fn ratio_targets_include_their_bound() {
        assert!(RATIO_CHAIN_STEPS_PER_PGBENCH_TPS.passes(1.0));
        assert!(RATIO_CHAIN_STEPS_PER_PGBENCH_TPS.passes(1.7));
        assert!(!RATIO_CHAIN_STEPS_PER_PGBENCH_TPS.passes(0.999));
        assert!(RATIO_THROUGHPUT_PER_PGBENCH_TPS.passes(0.5));
        assert!(!RATIO_THROUGHPUT_PER_PGBENCH_TPS.passes(0.499));
        assert_eq!(RATIO_CHAIN_STEPS_PER_PGBENCH_TPS.describe(), ">= 1");
        assert_eq!(RATIO_THROUGHPUT_PER_PGBENCH_TPS.describe(), ">= 0.5");
    }

    #[test]
    fn one_job_passes_with_one_poller_and_at_most_one_claim_and_wake_up() {
        assert!(one_job_passes(1, 1.0, 1.0));
        assert!(
            one_job_passes(1, 0.0, 0.0),
            "a job handed straight to a waiting poller needs neither"
        );
        assert!(!one_job_passes(0, 0.0, 0.0), "nobody got the job");
        assert!(!one_job_passes(2, 1.0, 1.0), "two pollers got a job");
        assert!(!one_job_passes(1, 2.0, 1.0), "a second claim query");
        assert!(!one_job_passes(1, 1.0, 1000.0), "a thundering herd");
    }
}
