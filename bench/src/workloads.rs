//! The Rondo workloads: batches of workflows started concurrently and awaited (throughput of
//! one-step workflows, and chains of sequential steps), and sequential round trips on an idle
//! system (latency).
//!
//! Workers run in this process, the server in its own. Batches use the SDK's [`Worker`], as an
//! application would. The latency workload polls with raw gRPC instead, because it needs each
//! job's `created_at`, which the SDK's `Job` does not expose.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use rondo_gen::v1::worker_service_client::WorkerServiceClient;
use rondo_gen::v1::{CompleteJobRequest, PollJobsRequest};
use rondo_worker::{
    CancellationToken, Client, HandlerError, Outcome, StartOptions, Worker, Workflow,
    WorkflowStatus,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use crate::procstat::{Measured, Proc, measured};

/// The one operation of every benchmark graph.
pub const OPERATION: &str = "bench.work";

/// The label every benchmark job ends with.
pub const LABEL: &str = "done";

/// Graph of the throughput, latency, one-job and memory workloads.
pub const ONE_STEP_GRAPH: &str = "bench_one_step";

/// The one node of [`ONE_STEP_GRAPH`].
pub const ONE_STEP_NODE: &str = "work";

/// Graph of the chain workload; [`chain_yaml`] writes it.
pub const CHAIN_GRAPH: &str = "bench_chain";

/// One operation node, whose `done` ends the workflow.
const ONE_STEP_YAML: &str = r"name: bench_one_step
start: work
nodes:
  work:
    operation: bench.work
    on: { done: ~ }
";

/// Long-poll wait of `AwaitWorkflow` and of every `PollJobs` of the benchmark: the server's
/// default cap.
pub const POLL_WAIT: Duration = Duration::from_secs(30);

/// A workflow still running this long after it was first awaited means the server stalled.
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// Round trips run before the measured ones, so that connections are open and statements
/// prepared.
const WARMUP_ROUNDS: u32 = 10;

/// Identity of the latency workload's raw gRPC worker.
const LATENCY_WORKER: &str = "bench-latency";

/// Stores the benchmark graphs: the one-step graph, and a chain of `chain_steps` steps.
pub async fn put_graphs(grpc_url: &str, chain_steps: u32) -> anyhow::Result<()> {
    let client = Client::connect(grpc_url)?;
    for yaml in [ONE_STEP_YAML.to_owned(), chain_yaml(chain_steps)] {
        let def = rondo_engine::parse_yaml(&yaml).context("a benchmark graph")?;
        client.put_graph(&def).await?;
    }
    Ok(())
}

/// The chain graph: nodes `s1` to `s{steps}`, each `done` leading to the next, the last one
/// terminal.
fn chain_yaml(steps: u32) -> String {
    let mut yaml = format!("name: {CHAIN_GRAPH}\nstart: s1\nnodes:\n");
    for i in 1..=steps {
        let next = if i == steps {
            "~".to_owned()
        } else {
            format!("s{}", i + 1)
        };
        yaml.push_str(&format!(
            "  s{i}:\n    operation: {OPERATION}\n    on: {{ {LABEL}: {next} }}\n"
        ));
    }
    yaml
}

/// A batch of workflows of one graph, started concurrently, with a worker running them.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Graph to start.
    pub graph: &'static str,
    /// Workflows to start.
    pub count: u32,
    /// Steps each workflow must take to complete.
    pub steps: u32,
    /// Client tasks starting workflows, and the worker's concurrency.
    pub concurrency: u32,
}

/// What a batch measured.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// From just before the first start to the last completion seen.
    pub wall: Duration,
    /// The wall time of every run of the phase, in order, this one's included (see
    /// [`run_batch_median`]).
    pub runs: Vec<Duration>,
    /// Handler calls; above `count × steps` when jobs were delivered more than once.
    pub handler_calls: u64,
}

/// Runs `batch`: a worker, and `concurrency` client tasks that start the workflows (taking
/// numbers from a shared counter), then await each one they started. Fails when any workflow
/// ends other than COMPLETED after its steps.
pub async fn run_batch(grpc_url: &str, batch: &Batch) -> anyhow::Result<BatchResult> {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let worker = Worker::builder(grpc_url)
        .identity("bench-worker")
        .concurrency(usize::try_from(batch.concurrency)?)
        .handler(OPERATION, move |_job| {
            counter.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok::<_, HandlerError>(Outcome::new(LABEL)))
        })
        .build()?;
    let shutdown = CancellationToken::new();
    // Stops the worker on every way out, errors included.
    let _stop_worker = shutdown.clone().drop_guard();
    let worker = tokio::spawn(worker.run(shutdown.clone()));

    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut starters = JoinSet::new();
    for _ in 0..batch.concurrency.min(batch.count) {
        let starter = Starter {
            client: Client::connect(grpc_url)?,
            next: Arc::clone(&next),
            batch: batch.clone(),
        };
        starters.spawn(starter.run());
    }
    let mut last_done = started;
    while let Some(joined) = starters.join_next().await {
        last_done = last_done.max(joined??);
    }
    let wall = last_done - started;

    shutdown.cancel();
    worker.await??;
    Ok(BatchResult {
        wall,
        runs: vec![wall],
        handler_calls: calls.load(Ordering::Relaxed),
    })
}

/// Runs of the throughput workload in (a) and of the chain workload in (b). On a machine with
/// fast commits each takes a second or two, so one run disturbed by the rest of a shared
/// machine could decide a ratio; the median run is reported.
pub const BATCH_RUNS: usize = 3;

/// Runs `batch` `runs` times, each measured on its own, and returns the run of median wall
/// time, with the wall times of all of them.
pub async fn run_batch_median(
    server: &Proc,
    grpc_url: &str,
    batch: &Batch,
    runs: usize,
) -> anyhow::Result<Measured<BatchResult>> {
    let mut done = Vec::with_capacity(runs);
    for _ in 0..runs {
        done.push(
            measured(server, run_batch(grpc_url, batch))
                .await
                .transpose()?,
        );
    }
    Ok(median(done))
}

/// The run of median wall time among `done` (in the order they ran, at least one), carrying
/// the wall times of all of them.
pub fn median(mut done: Vec<Measured<BatchResult>>) -> Measured<BatchResult> {
    let walls: Vec<Duration> = done.iter().map(|m| m.value.wall).collect();
    done.sort_by_key(|m| m.value.wall);
    let mut median = done.swap_remove(done.len() / 2);
    median.value.runs = walls;
    median
}

/// One client task of a batch.
struct Starter {
    /// Its own connection, as separate client processes would have.
    client: Client,
    /// Number of the next workflow to start, shared by all starters.
    next: Arc<AtomicU32>,
    /// What to start.
    batch: Batch,
}

impl Starter {
    /// Starts workflows until the batch is all started, then awaits its own in order;
    /// returns when the last of them was seen done.
    async fn run(self) -> anyhow::Result<Instant> {
        let mut ids = Vec::new();
        while self.next.fetch_add(1, Ordering::Relaxed) < self.batch.count {
            let options = StartOptions::new(self.batch.graph, json!({}));
            ids.push(self.client.start_workflow(options).await?.workflow.id);
        }
        let mut last_done = Instant::now();
        for id in ids {
            let workflow = await_done(&self.client, &id).await?;
            last_done = Instant::now();
            check_completed(&workflow, self.batch.steps)?;
        }
        Ok(last_done)
    }
}

/// Awaits the workflow until it is done (COMPLETED, CANCELLED or STUCK).
pub async fn await_done(client: &Client, id: &str) -> anyhow::Result<Workflow> {
    let give_up = Instant::now() + STALL_LIMIT;
    loop {
        let workflow = client.await_workflow(id, POLL_WAIT).await?;
        if workflow.status.is_done() {
            return Ok(workflow);
        }
        if Instant::now() >= give_up {
            bail!(
                "workflow {id} is still {:?} at node {:?} after {}s: the server stalled",
                workflow.status,
                workflow.current_node,
                STALL_LIMIT.as_secs()
            );
        }
    }
}

/// Fails unless `workflow` COMPLETED after exactly `steps` steps, as every benchmark workflow
/// must.
pub fn check_completed(workflow: &Workflow, steps: u32) -> anyhow::Result<()> {
    if workflow.status != WorkflowStatus::Completed || workflow.step_count != steps {
        bail!(
            "workflow {} ended {:?} after {} steps (expected COMPLETED after {steps}); \
             incident: {:?}",
            workflow.id,
            workflow.status,
            workflow.step_count,
            workflow.incident
        );
    }
    Ok(())
}

/// Samples of the latency workload, in milliseconds.
#[derive(Debug, Clone)]
pub struct LatencySamples {
    /// StartWorkflow with a wait, until COMPLETED, one workflow at a time.
    pub round_trip_ms: Vec<f64>,
    /// From a job's `created_at` (database clock, start of the transaction that created it)
    /// to the worker receiving it (this machine's clock).
    pub dispatch_ms: Vec<f64>,
}

/// Polls the latency worker keeps waiting. With one, the worker is still on its way back
/// from completing a job when the next round starts, so the round measures which of its next
/// poll and the next start reaches the server first, not a start on an idle system where a
/// worker waits; with two, one of them always waits (a worker of concurrency two).
const LATENCY_POLLERS: usize = 2;

/// Runs `rounds` one-step workflows one after another on an otherwise idle server, after a
/// few unmeasured warm-up rounds.
pub async fn run_latency(grpc_url: &str, rounds: u32) -> anyhow::Result<LatencySamples> {
    let channel = Endpoint::from_shared(grpc_url.to_owned())?
        .connect()
        .await?;
    let (samples_tx, mut samples) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let _stop_worker = shutdown.clone().drop_guard();
    let mut workers = JoinSet::new();
    for _ in 0..LATENCY_POLLERS {
        workers.spawn(raw_worker(
            WorkerServiceClient::new(channel.clone()),
            samples_tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(samples_tx);
    let client = Client::connect(grpc_url)?;

    for _ in 0..WARMUP_ROUNDS {
        round_trip(&client).await?;
    }
    // Each round's sample is sent before its job completes, so all warm-up samples are in.
    while samples.try_recv().is_ok() {}
    let mut round_trip_ms = Vec::new();
    for _ in 0..rounds {
        round_trip_ms.push(round_trip(&client).await?.as_secs_f64() * 1e3);
    }

    shutdown.cancel();
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    let mut dispatch_ms = Vec::new();
    while let Ok(sample) = samples.try_recv() {
        dispatch_ms.push(sample);
    }
    Ok(LatencySamples {
        round_trip_ms,
        dispatch_ms,
    })
}

/// Starts a one-step workflow and awaits its completion, in one call as a caller who wants
/// the result makes it (`StartOptions::wait`).
async fn round_trip(client: &Client) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let options = StartOptions::new(ONE_STEP_GRAPH, json!({})).wait(POLL_WAIT);
    let answer = client.start_workflow(options).await?;
    let workflow = match answer.done {
        true => answer.workflow,
        false => await_done(client, &answer.workflow.id).await?,
    };
    let elapsed = started.elapsed();
    check_completed(&workflow, 1)?;
    Ok(elapsed)
}

/// A worker in raw gRPC: polls one job at a time, sends its dispatch latency in milliseconds
/// to `samples`, and completes it with `done`; until `shutdown`.
async fn raw_worker(
    mut client: WorkerServiceClient<Channel>,
    samples: mpsc::UnboundedSender<f64>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let wait = prost_types::Duration::try_from(POLL_WAIT).context("the poll wait")?;
    loop {
        let request = PollJobsRequest {
            worker: LATENCY_WORKER.to_owned(),
            operations: vec![OPERATION.to_owned()],
            max_jobs: 1,
            wait: Some(wait),
        };
        let polled = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            polled = client.poll_jobs(request) => polled?.into_inner(),
        };
        for job in polled.jobs {
            let received = SystemTime::now();
            let created = job
                .created_at
                .context("a leased job without `created_at`")?;
            let created = SystemTime::try_from(created).context("the job's `created_at`")?;
            // The receiver lives until this task has been awaited.
            let _ = samples.send(signed_millis(received, created));
            let complete = CompleteJobRequest {
                job_id: job.id,
                lease_token: job.lease_token,
                label: LABEL.to_owned(),
                output: "{}".to_owned(),
                next_operations: Vec::new(),
            };
            client.complete_job(complete).await?;
        }
    }
}

/// `later - earlier` in milliseconds, negative when `later` is in fact earlier.
fn signed_millis(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(elapsed) => elapsed.as_secs_f64() * 1e3,
        Err(error) => -error.duration().as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procstat::Usage;

    #[test]
    fn chain_graph_is_valid_and_has_one_node_per_step() {
        let def = rondo_engine::parse_yaml(&chain_yaml(10)).unwrap();
        let validated = def.validate().unwrap();
        assert_eq!(validated.graph.name(), CHAIN_GRAPH);
        assert_eq!(def.nodes.0.len(), 10);
    }

    #[test]
    fn one_step_graph_is_valid() {
        let def = rondo_engine::parse_yaml(ONE_STEP_YAML).unwrap();
        assert_eq!(def.start, ONE_STEP_NODE);
        assert_eq!(def.validate().unwrap().graph.name(), ONE_STEP_GRAPH);
    }

    #[test]
    fn the_median_run_is_reported_with_every_run_in_order() {
        let run = |secs: u64, calls: u64| Measured {
            value: BatchResult {
                wall: Duration::from_secs(secs),
                runs: vec![Duration::from_secs(secs)],
                handler_calls: calls,
            },
            usage: Usage {
                wall: Duration::from_secs(secs),
                process_cpu_s: None,
                server_cpu_s: Some(secs as f64 / 10.0),
                server_peak_rss_kib: None,
                host_busy_pct: None,
            },
        };
        let median = median(vec![run(3, 30), run(1, 10), run(2, 20)]);
        assert_eq!(median.value.wall, Duration::from_secs(2));
        assert_eq!(
            median.value.handler_calls, 20,
            "the median run's own figures"
        );
        assert_eq!(median.usage.server_cpu_s, Some(0.2));
        let secs: Vec<u64> = median.value.runs.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [3, 1, 2]);
    }

    #[test]
    fn signed_millis_is_negative_when_the_order_is_reversed() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(signed_millis(t1, t0), 250.0);
        assert_eq!(signed_millis(t0, t1), -250.0);
    }
}
