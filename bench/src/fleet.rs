//! A fleet of long-polling pollers in raw gRPC, as many idle workers would be: each loops on
//! `PollJobs` for the benchmark's operation and completes every job it gets with the graph's
//! label. The fleet counts what it received, can hold back new polls (pause), and stops on
//! request.
//!
//! Pollers share a few HTTP/2 connections, as workers in a few processes would. Their first
//! polls wait for spread-out times, so that in the steady state their waits run out (and
//! they poll again) evenly over time instead of all together every 30 s: a measurement
//! window of any length then sees the steady rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use rondo_gen::v1::worker_service_client::WorkerServiceClient;
use rondo_gen::v1::{CompleteJobRequest, Job, PollJobsRequest};
use rondo_worker::CancellationToken;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::workloads::{LABEL, OPERATION, POLL_WAIT};

/// Most polls in flight on one connection: below the HTTP/2 stream limit servers commonly
/// set (hyper's default is 200).
const POLLS_PER_CONNECTION: u32 = 125;

/// Fewest connections the fleet opens.
const MIN_CONNECTIONS: u32 = 8;

/// Pause after a failed call, so that a failing server is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What the pollers share with the fleet.
#[derive(Debug)]
struct Shared {
    /// Jobs each poller has received, by poller number.
    jobs_by_poller: Vec<AtomicU64>,
    /// `PollJobs` calls sent.
    polls_sent: AtomicU64,
    /// Calls that failed (polls and completions).
    errors: AtomicU64,
    /// Jobs received in all.
    received: watch::Sender<u64>,
    /// Jobs completed in all.
    completed: watch::Sender<u64>,
    /// True while pollers must not send new polls.
    paused: watch::Sender<bool>,
}

/// Pollers running until [`Fleet::stop`] (or until dropped).
#[derive(Debug)]
pub struct Fleet {
    /// What the pollers report.
    shared: Arc<Shared>,
    /// The poller tasks.
    tasks: JoinSet<()>,
    /// Cancelled to stop them; cancelled on drop too.
    shutdown: CancellationToken,
}

impl Fleet {
    /// Starts `pollers` pollers against the server at `grpc_url`.
    pub async fn start(grpc_url: &str, pollers: u32) -> anyhow::Result<Fleet> {
        let mut channels = Vec::new();
        for _ in 0..connections_for(pollers) {
            // Each `connect` opens a connection of its own.
            let channel = Endpoint::from_shared(grpc_url.to_owned())?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting a poller to {grpc_url}"))?;
            channels.push(channel);
        }
        let shared = Arc::new(Shared {
            jobs_by_poller: (0..pollers).map(|_| AtomicU64::new(0)).collect(),
            polls_sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            received: watch::Sender::new(0),
            completed: watch::Sender::new(0),
            paused: watch::Sender::new(false),
        });
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for number in 0..pollers {
            let poller = Poller {
                number,
                client: WorkerServiceClient::new(
                    channels[number as usize % channels.len()].clone(),
                ),
                first_wait: first_wait(number, pollers),
                shared: Arc::clone(&shared),
            };
            tasks.spawn(poller.run(shutdown.clone()));
        }
        Ok(Fleet {
            shared,
            tasks,
            shutdown,
        })
    }

    /// `PollJobs` calls sent so far.
    pub fn polls_sent(&self) -> u64 {
        self.shared.polls_sent.load(Ordering::Relaxed)
    }

    /// Calls that failed so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Jobs received so far, by poller.
    pub fn jobs_by_poller(&self) -> Vec<u64> {
        self.shared
            .jobs_by_poller
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Jobs received so far.
    pub fn received(&self) -> u64 {
        *self.shared.received.borrow()
    }

    /// Jobs completed so far.
    pub fn completed(&self) -> u64 {
        *self.shared.completed.borrow()
    }

    /// Waits until `count` jobs in all have been received; false if `deadline` came first.
    pub async fn received_at_least(&self, count: u64, deadline: Instant) -> bool {
        at_least(&self.shared.received, count, deadline).await
    }

    /// Waits until `count` jobs in all have been completed; false if `deadline` came first.
    pub async fn completed_at_least(&self, count: u64, deadline: Instant) -> bool {
        at_least(&self.shared.completed, count, deadline).await
    }

    /// Holds back new polls: a poller whose wait runs out waits for [`Fleet::resume`].
    /// Polls already waiting go on waiting.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Lets pollers poll again.
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// Stops every poller (a job being completed is completed first) and waits for them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Waits until `counter` reaches `count`; false if `deadline` came first.
async fn at_least(counter: &watch::Sender<u64>, count: u64, deadline: Instant) -> bool {
    let mut receiver = counter.subscribe();
    matches!(
        tokio::time::timeout_at(deadline, receiver.wait_for(|n| *n >= count)).await,
        Ok(Ok(_))
    )
}

/// One poller.
struct Poller {
    /// Its number, from 0; its identity is `bench-poller-{number}`.
    number: u32,
    /// Its stub, on a connection shared with other pollers.
    client: WorkerServiceClient<Channel>,
    /// Wait of its first poll.
    first_wait: Duration,
    /// What it reports to.
    shared: Arc<Shared>,
}

impl Poller {
    /// Polls until `shutdown`, completing every job it gets.
    async fn run(mut self, shutdown: CancellationToken) {
        let worker = format!("bench-poller-{}", self.number);
        let mut wait = self.first_wait;
        let mut paused = self.shared.paused.subscribe();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = paused.wait_for(|paused| !paused) => {}
            }
            let request = PollJobsRequest {
                worker: worker.clone(),
                operations: vec![OPERATION.to_owned()],
                max_jobs: 1,
                wait: prost_types::Duration::try_from(wait).ok(),
            };
            wait = POLL_WAIT;
            self.shared.polls_sent.fetch_add(1, Ordering::Relaxed);
            let polled = tokio::select! {
                () = shutdown.cancelled() => return,
                polled = self.client.poll_jobs(request) => polled,
            };
            match polled {
                Ok(response) => {
                    for job in response.into_inner().jobs {
                        self.complete(job).await;
                    }
                }
                Err(status) => self.failed("PollJobs", &status).await,
            }
        }
    }

    /// Counts `job` as received and completes it with the benchmark's label.
    async fn complete(&mut self, job: Job) {
        if let Some(count) = self.shared.jobs_by_poller.get(self.number as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.received.send_modify(|n| *n += 1);
        let request = CompleteJobRequest {
            job_id: job.id,
            lease_token: job.lease_token,
            label: LABEL.to_owned(),
            output: "{}".to_owned(),
            next_operations: Vec::new(),
        };
        match self.client.complete_job(request).await {
            Ok(_) => self.shared.completed.send_modify(|n| *n += 1),
            Err(status) => self.failed("CompleteJob", &status).await,
        }
    }

    /// Counts a failed call, logs it, and backs off.
    async fn failed(&self, call: &str, status: &tonic::Status) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(poller = self.number, call, %status, "benchmark poller's call failed");
        tokio::time::sleep(ERROR_BACKOFF).await;
    }
}

/// Connections for `pollers` pollers: at least [`MIN_CONNECTIONS`], and few enough polls on
/// each to stay within [`POLLS_PER_CONNECTION`].
fn connections_for(pollers: u32) -> u32 {
    pollers.div_ceil(POLLS_PER_CONNECTION).max(MIN_CONNECTIONS)
}

/// Wait of poller `number`'s first poll: its share of [`POLL_WAIT`], so that the first polls
/// of `pollers` pollers run out evenly over one full wait.
fn first_wait(number: u32, pollers: u32) -> Duration {
    POLL_WAIT * (number + 1) / pollers.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_pollers_use_eight_connections() {
        assert_eq!(connections_for(1), MIN_CONNECTIONS);
        assert_eq!(connections_for(1000), 8);
        assert_eq!(connections_for(1001), 9);
        assert_eq!(connections_for(5000), 40);
    }

    #[test]
    fn first_waits_spread_evenly_up_to_the_full_wait() {
        assert_eq!(first_wait(0, 1000), Duration::from_millis(30));
        assert_eq!(first_wait(499, 1000), Duration::from_secs(15));
        assert_eq!(first_wait(999, 1000), POLL_WAIT);
        assert_eq!(first_wait(0, 1), POLL_WAIT);
    }

    #[tokio::test]
    async fn waiting_for_a_count_ends_when_it_is_reached_or_at_the_deadline() {
        let counter = watch::Sender::new(0_u64);
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!at_least(&counter, 1, soon).await);
        counter.send_modify(|n| *n += 2);
        let later = Instant::now() + Duration::from_secs(5);
        assert!(at_least(&counter, 2, later).await);
    }
}
