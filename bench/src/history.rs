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
use crate::workloads::{self, Batch, BatchResult, LABEL, OPERATION};

/// Measured runs on each database. The runs alternate, and which database goes first
/// alternates too, so that a machine slowing down or speeding up through the phase weighs on
/// both alike.
pub const HISTORY_RUNS: usize = 5;

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
    Ok(HistoryResult {
        jobs: u64::from(workflows) * u64::from(chain.steps),
        workflows,
        seed_wall,
        vacuum_wall,
        chains: workloads::median(history_runs),
        empty: workloads::median(empty_runs),
    })
}
