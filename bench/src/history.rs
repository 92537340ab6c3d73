//! (h) Chains on a big history: a million completed jobs seeded straight into the database,
//! then the chain workload again, to show that the hot paths do not slow down as the tables
//! grow.

use std::time::{Duration, Instant};

use crate::db::{self, Shape};
use crate::procstat::{Measured, Proc};
use crate::workloads::{self, Batch, BatchResult, LABEL, OPERATION};

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
    /// The chain workload on top.
    pub chains: Measured<BatchResult>,
}

/// Seeds at least `jobs` completed jobs as workflows of `chain`'s graph and length, vacuums,
/// then runs `chain` against the server at `grpc_url` ([`workloads::CHAIN_RUNS`] times, the
/// median reported).
pub async fn run_history(
    server: &Proc,
    grpc_url: &str,
    db_url: &str,
    chain: &Batch,
    jobs: u32,
) -> anyhow::Result<HistoryResult> {
    let mut client = db::connect(db_url).await?;
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
    let chains =
        workloads::run_batch_median(server, grpc_url, chain, workloads::CHAIN_RUNS).await?;
    Ok(HistoryResult {
        jobs: u64::from(workflows) * u64::from(chain.steps),
        workflows,
        seed_wall,
        vacuum_wall,
        chains,
    })
}
