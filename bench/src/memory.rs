//! (g) The server's memory while many pollers drain a big queue: ready jobs seeded straight
//! into the database, drained by the fleet, the server's resident memory sampled meanwhile.

use std::time::Duration;

use rondo_worker::CancellationToken;
use tokio::time::Instant;

use crate::db::{self, Shape};
use crate::fleet::Fleet;
use crate::idle::Probe;
use crate::procstat::{Proc, Usage, measured};
use crate::workloads::{LABEL, ONE_STEP_GRAPH, ONE_STEP_NODE, OPERATION};

/// How often the server's resident memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Longest the measured drain lasts; what is left then is reported, then drained unmeasured.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Longest the unmeasured drain of what is left may last.
const REST_LIMIT: Duration = Duration::from_secs(600);

/// What (g) measured.
#[derive(Debug, Clone)]
pub struct MemoryResult {
    /// Ready jobs seeded.
    pub jobs: u32,
    /// How long seeding took.
    pub seed_wall: Duration,
    /// Seeded jobs the fleet completed before [`DRAIN_LIMIT`].
    pub drained: u64,
    /// From the first job received to the last completed; `None` when none was.
    pub drain_wall: Option<Duration>,
    /// Largest resident memory of the server sampled while draining, in KiB.
    pub sampled_peak_rss_kib: Option<u64>,
    /// CPU and memory from the seed's commit to the end of the drain.
    pub usage: Usage,
}

impl MemoryResult {
    /// The server's peak resident memory while draining: the kernel's peak since the phase
    /// began when it could be reset, else the largest sample.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.usage
            .server_peak_rss_kib
            .max(self.sampled_peak_rss_kib)
    }

    /// Seeded jobs completed per second of draining.
    pub fn drain_per_second(&self) -> Option<f64> {
        let wall = self.drain_wall?.as_secs_f64();
        // Counts stay far below 2^52, so the conversion is exact.
        (wall > 0.0).then(|| self.drained as f64 / wall)
    }
}

/// Seeds `jobs` ready one-step jobs while `fleet` waits, and lets it drain them.
pub async fn run_memory(
    probe: &Probe<'_>,
    fleet: &Fleet,
    jobs: u32,
) -> anyhow::Result<MemoryResult> {
    let mut client = db::connect(probe.db_url).await?;
    let shape = Shape {
        graph: ONE_STEP_GRAPH,
        operation: OPERATION,
        label: LABEL,
        worker: "bench-poller",
    };
    let received_before = fleet.received();
    let completed_before = fleet.completed();
    let seed_wall = db::seed_ready(&mut client, &shape, ONE_STEP_NODE, jobs).await?;

    let sampling = CancellationToken::new();
    let sampler = tokio::spawn(sample_peak_rss(probe.server.clone(), sampling.clone()));
    let drain = measured(probe.server, async {
        let give_up = Instant::now() + DRAIN_LIMIT;
        let first = fleet
            .received_at_least(received_before + 1, give_up)
            .await
            .then(Instant::now);
        fleet
            .completed_at_least(completed_before + u64::from(jobs), give_up)
            .await;
        first.map(|first| first.elapsed())
    })
    .await;
    sampling.cancel();
    let sampled_peak_rss_kib = sampler.await?;
    let drained = fleet.completed() - completed_before;
    finish_drain(fleet, completed_before + u64::from(jobs)).await;
    Ok(MemoryResult {
        jobs,
        seed_wall,
        drained,
        drain_wall: drain.value,
        sampled_peak_rss_kib,
        usage: drain.usage,
    })
}

/// Lets `fleet` drain what the measured drain left, until it has completed `target` jobs in
/// all, so that no seeded job is left for the next workload's workers.
async fn finish_drain(fleet: &Fleet, target: u64) {
    let left = target.saturating_sub(fleet.completed());
    if left == 0 {
        return;
    }
    eprintln!("    draining the {left} jobs left, unmeasured...");
    if !fleet
        .completed_at_least(target, Instant::now() + REST_LIMIT)
        .await
    {
        eprintln!(
            "    {} jobs still left after {} s more; the next workload's workers will see them",
            target.saturating_sub(fleet.completed()),
            REST_LIMIT.as_secs()
        );
    }
}

/// The largest resident memory of `server` sampled every [`SAMPLE_EVERY`] until `stop`.
async fn sample_peak_rss(server: Proc, stop: CancellationToken) -> Option<u64> {
    let mut peak = None;
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return peak.max(server.rss_kib()),
            _ = ticker.tick() => peak = peak.max(server.rss_kib()),
        }
    }
}
