//! Pollers with nothing to do: (e) what 1,000 waiting long polls cost the server and
//! PostgreSQL, and (f) what one job costs when they all wait for it.

use std::time::Duration;

use anyhow::{Context, bail};
use rondo_worker::{Client, StartOptions};
use serde_json::json;
use tokio::time::Instant;

use crate::db;
use crate::fleet::Fleet;
use crate::metrics::PollCounters;
use crate::procstat::{Proc, Usage, measured};
use crate::workloads::{ONE_STEP_GRAPH, await_done, check_completed};

/// Time after every poller has sent its first poll before the idle window opens, so that
/// their first claim queries are not counted.
const SETTLE: Duration = Duration::from_secs(2);

/// Longest the fleet may take to send its first polls.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Time after pausing the fleet for polls already sent to reach the server and run what they
/// run on arrival, before the one-job window opens.
const PAUSE_SETTLE: Duration = Duration::from_millis(300);

/// How long the one-job window stays open after a poller has the job, for any further
/// wake-ups and claim queries the job causes to be counted.
const AFTER_JOB: Duration = Duration::from_millis(200);

/// Longest a poller may take to get the one job.
const JOB_LIMIT: Duration = Duration::from_secs(10);

/// Transactions the benchmark's own reads of `pg_stat_database` add to an idle window.
const OWN_TRANSACTIONS: i64 = 2;

/// What the server and the benchmark need to measure the pollers.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The server's process.
    pub server: &'a Proc,
    /// Its Prometheus metrics.
    pub metrics_url: &'a str,
    /// Its gRPC API.
    pub grpc_url: &'a str,
    /// The benchmark's database.
    pub db_url: &'a str,
}

/// What (e) measured over its window.
#[derive(Debug, Clone)]
pub struct IdleResult {
    /// Pollers in the fleet.
    pub pollers: u32,
    /// Long polls waiting on the server when the window opened.
    pub waiting_pollers: f64,
    /// Counter increments over the window.
    pub counters: PollCounters,
    /// PostgreSQL transactions in the benchmark's database over the window, without the
    /// benchmark's own; `None` when the statistics could not be read.
    pub pg_transactions: Option<i64>,
    /// `PollJobs` calls the fleet sent over the window.
    pub polls_sent: u64,
    /// Fleet calls that failed since it started.
    pub poller_errors: u64,
    /// CPU over the window.
    pub usage: Usage,
}

impl IdleResult {
    /// `count` per second of the window.
    pub fn per_second(&self, count: f64) -> Option<f64> {
        let wall = self.usage.wall.as_secs_f64();
        (wall > 0.0).then(|| count / wall)
    }
}

/// Starts `pollers` pollers, lets them settle, then measures an idle window of `window`.
/// Returns the fleet, still polling, with what it measured.
pub async fn run_idle(
    probe: &Probe<'_>,
    pollers: u32,
    window: Duration,
) -> anyhow::Result<(Fleet, IdleResult)> {
    let fleet = Fleet::start(probe.grpc_url, pollers).await?;
    let give_up = Instant::now() + START_LIMIT;
    while fleet.polls_sent() < u64::from(pollers) {
        if Instant::now() >= give_up {
            bail!(
                "only {} of {pollers} pollers polled within {}s",
                fleet.polls_sent(),
                START_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;

    let pg = db::connect(probe.db_url).await?;
    let before = PollCounters::scrape(probe.metrics_url).await?;
    let polls_before = fleet.polls_sent();
    let xacts_before = db::transactions(&pg).await.ok();
    let idle = measured(probe.server, tokio::time::sleep(window)).await;
    let xacts_after = db::transactions(&pg).await.ok();
    let polls_sent = fleet.polls_sent() - polls_before;
    let after = PollCounters::scrape(probe.metrics_url).await?;
    let result = IdleResult {
        pollers,
        waiting_pollers: before.waiting_pollers,
        counters: after.since(&before),
        pg_transactions: xacts_after
            .zip(xacts_before)
            .map(|(after, before)| after - before - OWN_TRANSACTIONS),
        polls_sent,
        poller_errors: fleet.errors(),
        usage: idle.usage,
    };
    Ok((fleet, result))
}

/// What (f) measured.
#[derive(Debug, Clone)]
pub struct OneJobResult {
    /// Long polls waiting on the server when the job was started.
    pub waiting_pollers: f64,
    /// Pollers that received a job in the window.
    pub pollers_with_job: usize,
    /// Counter increments over the window: from just before the start to [`AFTER_JOB`]
    /// after a poller had the job.
    pub counters: PollCounters,
    /// From sending `StartWorkflow` to a poller holding the job.
    pub start_to_job: Duration,
}

/// With `fleet` waiting and holding back new polls, starts one one-step workflow and counts
/// what the server did to hand its job to one poller; checks that the workflow completes.
pub async fn run_one_job(probe: &Probe<'_>, fleet: &Fleet) -> anyhow::Result<OneJobResult> {
    // Pollers whose wait runs out in the window would otherwise poll again and run claim
    // queries that have nothing to do with the job.
    fleet.pause();
    let result = one_job(probe, fleet).await;
    fleet.resume();
    result
}

async fn one_job(probe: &Probe<'_>, fleet: &Fleet) -> anyhow::Result<OneJobResult> {
    let client = Client::connect(probe.grpc_url)?;
    tokio::time::sleep(PAUSE_SETTLE).await;
    let jobs_before = fleet.jobs_by_poller();
    let received_before = fleet.received();
    let before = PollCounters::scrape(probe.metrics_url).await?;
    let started = Instant::now();
    let id = client
        .start_workflow(StartOptions::new(ONE_STEP_GRAPH, json!({})))
        .await?
        .workflow
        .id;
    if !fleet
        .received_at_least(received_before + 1, started + JOB_LIMIT)
        .await
    {
        bail!(
            "no poller received the job of workflow {id} within {}s",
            JOB_LIMIT.as_secs()
        );
    }
    let start_to_job = started.elapsed();
    tokio::time::sleep(AFTER_JOB).await;
    let after = PollCounters::scrape(probe.metrics_url).await?;
    let pollers_with_job = pollers_with_new_jobs(&jobs_before, &fleet.jobs_by_poller());
    let workflow = await_done(&client, &id).await?;
    check_completed(&workflow, 1).context("the one job's workflow")?;
    Ok(OneJobResult {
        waiting_pollers: before.waiting_pollers,
        pollers_with_job,
        counters: after.since(&before),
        start_to_job,
    })
}

/// How many pollers received a job between the counts `before` and `after` (by poller).
fn pollers_with_new_jobs(before: &[u64], after: &[u64]) -> usize {
    after
        .iter()
        .zip(before)
        .filter(|(after, before)| after > before)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pollers_with_a_new_job_are_counted_once_each() {
        assert_eq!(pollers_with_new_jobs(&[0, 3, 1, 0], &[0, 3, 1, 0]), 0);
        assert_eq!(pollers_with_new_jobs(&[0, 3, 1, 0], &[0, 4, 1, 0]), 1);
        assert_eq!(pollers_with_new_jobs(&[0, 3, 1, 0], &[2, 3, 1, 1]), 2);
    }
}
