//! (h) Chains on a big history: a million completed jobs seeded straight into the database,
//! then the chain workload again, to show that the hot paths do not slow down as the tables
//! grow.
//!
//! The empty database it is compared with is measured at the same time: a second server on a
//! fresh database runs the same chains, its runs alternating with the history's. On a shared
//! machine the speed of a minute varies by more than the 10% the target allows, so a
//! comparison with (b), run minutes earlier, would mostly measure which minute was faster.

use std::time::{Duration, Instant};

use rondo_server::testing::TestDb;

use crate::db::{self, Shape};
use crate::procstat::{Measured, Proc, measured};
use crate::server::ServerProcess;
use crate::stats::median;
use crate::workloads::{self, Batch, BatchResult, LABEL, OPERATION};

/// Measured runs on each database. The runs alternate, and which database goes first
/// alternates too, so that a machine slowing down or speeding up through the phase weighs on
/// both alike.
pub const HISTORY_RUNS: usize = 7;

/// What (h) measured.
#[derive(Debug, Clone)]
pub struct HistoryResult {
    /// Completed jobs seeded.
    pub jobs: u64,
    /// Completed workflows seeded.
    pub workflows: u32,
    /// How long seeding took.
    pub seed_wall: Duration,
    /// How long the `VACUUM ANALYZE` after it took.
    pub vacuum_wall: Duration,
    /// The chain workload on top of the history (the median run).
    pub chains: Measured<BatchResult>,
    /// The chain workload on an empty database, run alongside (the median run).
    pub empty: Measured<BatchResult>,
    /// Steps per second on the history over the same on the empty database, for each pair
    /// of runs made one after the other, in order.
    pub pair_ratios: Vec<f64>,
}

impl HistoryResult {
    /// The median of [`HistoryResult::pair_ratios`]: each pair ran within the same few
    /// seconds, so the machine's speed of the moment cancels out of its ratio.
    pub fn ratio_to_empty(&self) -> Option<f64> {
        median(&self.pair_ratios)
    }
}

/// Steps per second of each history run over its partner's on the empty database: the same
/// steps on both sides, so the inverse ratio of their wall times.
fn pair_ratios(history: &[Duration], empty: &[Duration]) -> Vec<f64> {
    history
        .iter()
        .zip(empty)
        .map(|(history, empty)| empty.as_secs_f64() / history.as_secs_f64())
        .collect()
}

/// Where the history lives: the benchmark's server and its database.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The server's process.
    pub server: &'a Proc,
    /// Its gRPC API.
    pub grpc_url: &'a str,
    /// Its database.
    pub db_url: &'a str,
    /// Pool size for the second server; `None` for the server's default.
    pub db_pool_size: Option<u32>,
}

/// Seeds at least `jobs` completed jobs as workflows of `chain`'s graph and length into the
/// target's database, vacuums, starts a second server on a fresh database, then runs `chain`
/// [`HISTORY_RUNS`] times against each, alternating, after one unmeasured run on each.
pub async fn run_history(
    target: Target<'_>,
    chain: &Batch,
    jobs: u32,
) -> anyhow::Result<HistoryResult> {
    let mut client = db::connect(target.db_url).await?;
    let shape = Shape {
        graph: chain.graph,
        operation: OPERATION,
        label: LABEL,
        worker: "bench-worker",
    };
    let started = Instant::now();
    let workflows = db::seed_history(&mut client, &shape, chain.steps, jobs).await?;
    let seed_wall = started.elapsed();
    let vacuum_wall = db::vacuum(&client).await?;

    let empty_db = TestDb::new().await;
    // Declared after `empty_db`, so that on an early return it is dropped (and killed) first.
    let empty_server = ServerProcess::spawn(&empty_db.url, target.db_pool_size).await?;
    workloads::put_graphs(empty_server.grpc_url(), chain.steps).await?;
    let sides = [
        (target.server, target.grpc_url),
        (empty_server.proc(), empty_server.grpc_url()),
    ];
    for (_, grpc_url) in sides {
        workloads::run_batch(grpc_url, chain).await?;
    }
    let mut runs = [Vec::new(), Vec::new()];
    for round in 0..HISTORY_RUNS {
        for side in [round % 2, 1 - round % 2] {
            let (server, grpc_url) = sides[side];
            runs[side].push(
                measured(server, workloads::run_batch(grpc_url, chain))
                    .await
                    .transpose()?,
            );
        }
    }
    empty_server.stop().await?;
    let [history_runs, empty_runs] = runs;
    let walls = |runs: &[Measured<BatchResult>]| -> Vec<Duration> {
        runs.iter().map(|run| run.value.wall).collect()
    };
    let pair_ratios = pair_ratios(&walls(&history_runs), &walls(&empty_runs));
    Ok(HistoryResult {
        jobs: u64::from(workflows) * u64::from(chain.steps),
        workflows,
        seed_wall,
        vacuum_wall,
        chains: workloads::median(history_runs),
        empty: workloads::median(empty_runs),
        pair_ratios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wall times of runs made in pairs while the machine slowed down threefold: the
    /// history's runs as fast as their partners on the empty database but for one pair.
    #[test]
    fn the_ratio_is_the_median_of_the_pairs() {
        let ms = |walls: &[u64]| -> Vec<Duration> {
            walls.iter().map(|w| Duration::from_millis(*w)).collect()
        };
        let history = ms(&[1000, 1500, 2000, 2400, 6000]);
        let empty = ms(&[1000, 1500, 2000, 3000, 3000]);
        let pairs = pair_ratios(&history, &empty);
        assert_eq!(pairs, vec![1.0, 1.0, 1.0, 1.25, 0.5]);
        assert_eq!(median(&pairs), Some(1.0));
        assert_eq!(median(&[]), None);
    }
}
