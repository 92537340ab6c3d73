//! Worker use cases: long-poll for jobs, heartbeat, complete, fail, release; and the engine's
//! own `timeout` completion when a lease runs out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rondo_engine::model::LABEL_TIMEOUT;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::Service;
use super::complete::refusals::parse_token;
use super::dispatch::{Reservation, Wake};
use super::error::ServiceError;
use super::plan::{self, EndJob};
use super::step::Outbox;
use super::types::LeasedJob;
use crate::store::GenericClient;
use crate::store::events::{EventKind, NewEvent};
use crate::store::jobs;
use crate::store::listen::Notice;

/// Most waiting pollers one claim query also leases jobs for.
const PEERS_PER_CLAIM: usize = 255;

/// Most jobs one poll may lease.
pub const MAX_JOBS_PER_POLL: u32 = 256;

/// A poll for jobs.
#[derive(Debug, Clone)]
pub struct PollRequest {
    /// Worker identity.
    pub worker: String,
    /// Operations it performs.
    pub operations: Vec<String>,
    /// Most jobs to lease.
    pub max_jobs: u32,
    /// How long to wait.
    pub wait: Duration,
}

impl Service {
    /// Long poll: leases ready jobs, waiting for a notification when there are none.
    pub async fn poll_jobs(&self, req: PollRequest) -> Result<Vec<LeasedJob>, ServiceError> {
        if req.worker.trim().is_empty() {
            return Err(ServiceError::InvalidArgument(
                "`worker` is required: give the worker an identity".into(),
            ));
        }
        if req.operations.is_empty() || req.operations.iter().any(|o| o.trim().is_empty()) {
            return Err(ServiceError::InvalidArgument(
                "`operations` must name at least one operation, none empty".into(),
            ));
        }
        let max_jobs = i64::from(req.max_jobs.clamp(1, MAX_JOBS_PER_POLL));
        let started = tokio::time::Instant::now();
        let deadline = started + req.wait.min(self.limits.max_poll_wait);
        let mut woken = false;
        loop {
            let mut waiter = self.dispatch().register(&req.operations);
            if woken || !self.dispatch().known_empty(&req.operations) {
                // A bounded share of the pool: a thousand pollers claiming at once must not
                // starve completions and starts of connections.
                let turn = self
                    .claims
                    .acquire()
                    .await
                    .map_err(|_| ServiceError::Unavailable("the server is stopping".into()))?;
                // One claim serves the pollers waiting here for the same operations too.
                let peers = self
                    .dispatch()
                    .reserve_peers(&req.operations, PEERS_PER_CLAIM);
                let mine = usize::try_from(max_jobs).unwrap_or(1);
                let mut workers = vec![req.worker.as_str(); mine];
                workers.extend(peers.iter().map(|p| p.worker()));
                let client = self.pool().get().await?;
                self.metrics().claim_query();
                let claimed = jobs::claim(&client, &req.operations, &workers).await?;
                drop(turn);
                if claimed.len() < workers.len() {
                    self.dispatch().mark_empty(&req.operations, waiter.epoch());
                } else {
                    // A full batch may leave more behind: pass the wake-up on.
                    self.dispatch().wake_ops(&req.operations);
                }
                let mut peers: Vec<Option<Reservation>> = peers.into_iter().map(Some).collect();
                let mut leased = Vec::new();
                for (slot, c) in claimed {
                    if let Some(op) = &c.job.operation {
                        self.metrics().job_leased(op);
                    }
                    let (graph, _) = self.graph(&client, &c.graph_name, c.graph_version).await?;
                    let job = LeasedJob::new(&graph, c)?;
                    match slot
                        .checked_sub(mine)
                        .and_then(|i| peers.get_mut(i)?.take())
                    {
                        Some(peer) => {
                            if let Err(job) = peer.deliver(job) {
                                self.dispatch().orphan(*job);
                            }
                        }
                        None => leased.push(job),
                    }
                }
                // Peers left without a job look again unless the operations are known empty.
                drop(peers);
                if !leased.is_empty() {
                    self.metrics().poll_wait(started.elapsed());
                    return Ok(leased);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.metrics().poll_wait(started.elapsed());
                return Ok(Vec::new());
            }
            waiter.arm(&req.worker);
            match waiter.wait_for_job(deadline).await {
                Wake::Job(job) => {
                    self.metrics().poll_wait(started.elapsed());
                    return Ok(vec![*job]);
                }
                Wake::Woken => {
                    self.metrics().poller_woken();
                    woken = true;
                }
                Wake::Dropped => woken = false,
                Wake::TimedOut => {
                    self.metrics().poll_wait(started.elapsed());
                    return Ok(Vec::new());
                }
            }
        }
    }

    /// Releases, until shutdown, the jobs leased to pollers that left before taking them.
    pub async fn release_orphans(self, shutdown: CancellationToken) {
        let Some(mut orphans) = self.dispatch().take_orphans() else {
            return;
        };
        loop {
            let job = tokio::select! {
                () = shutdown.cancelled() => return,
                job = orphans.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            let id = job.claimed.job.id;
            let token = job
                .claimed
                .job
                .lease_token
                .map(|t| t.to_string())
                .unwrap_or_default();
            if let Err(error) = self
                .release_job(id, &token, "the poller it was handed to had gone")
                .await
            {
                tracing::warn!(job = id, %error, "could not release a job whose poller had gone");
            }
        }
    }

    /// Extends a lease and records progress.
    pub async fn heartbeat(
        &self,
        job_id: i64,
        token: &str,
        progress: Option<(u32, String)>,
    ) -> Result<DateTime<Utc>, ServiceError> {
        let token = parse_token(token)?;
        if let Some((percent, _)) = &progress
            && *percent > 100
        {
            return Err(ServiceError::InvalidArgument(format!(
                "`progress.percent` is {percent}; give a number from 0 to 100"
            )));
        }
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let progress_ref = progress
            .as_ref()
            .map(|(p, m)| (i32::try_from(*p).unwrap_or(100), m.as_str()));
        match jobs::heartbeat(&tx, job_id, token, progress_ref).await? {
            Some(job) => {
                let expires = job.lease_expires_at.ok_or_else(|| {
                    ServiceError::Internal(format!("job {job_id} is leased without an expiry"))
                })?;
                if let Some((percent, message)) = &progress {
                    let event = NewEvent {
                        node: Some(job.node.clone()),
                        job_id: Some(job_id),
                        attempt: Some(job.attempt),
                        message: Some(message.clone()),
                        data: Some(json!({ "percent": percent })),
                        ..NewEvent::new(
                            EventKind::JobProgress,
                            job.worker.clone().unwrap_or_default(),
                        )
                    };
                    let mut outbox = Outbox::new();
                    outbox.writes.append(job.workflow_id, [event]);
                    self.commit(tx, outbox).await?;
                } else {
                    tx.commit().await?;
                }
                Ok(expires)
            }
            None => Err(self.why_not_live(&tx, job_id, token).await?),
        }
    }

    /// Gives a leased job back so another worker takes it.
    pub async fn release_job(
        &self,
        job_id: i64,
        token: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let token = parse_token(token)?;
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let Some((operation, workflow_id, node, attempt)) =
            jobs::release(&tx, job_id, token).await?
        else {
            return Err(self.why_not_live(&tx, job_id, token).await?);
        };
        let event = NewEvent {
            node: Some(node),
            job_id: Some(job_id),
            attempt: Some(attempt),
            message: Some(if reason.is_empty() {
                "released by worker".into()
            } else {
                reason.to_owned()
            }),
            ..NewEvent::new(EventKind::JobReleased, "worker")
        };
        let ready = Notice::JobReady {
            operation,
            available_at: Utc::now(),
            count: 1,
        };
        let mut outbox = Outbox::new();
        outbox.writes.append(workflow_id, [event]);
        outbox.push(ready);
        self.commit(tx, outbox).await?;
        Ok(())
    }

    /// The engine times out an expired lease (or a human node's clock). Returns false when the
    /// job was no longer expired (completed or extended meanwhile).
    pub async fn time_out(&self, job_id: i64) -> Result<bool, ServiceError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let Some(locked) = jobs::lock_with_workflow(&tx, job_id).await? else {
            return Ok(false);
        };
        if locked.job.lease_ran_out(locked.now) != Some(true) {
            return Ok(false);
        }
        let graph = self.graph_of(&tx, &locked.workflow).await?;
        let end = EndJob {
            label: LABEL_TIMEOUT,
            output: &Value::Object(Map::new()),
            actor: "engine",
            message: Some(match &locked.job.worker {
                Some(w) => format!("lease of worker `{w}` ran out"),
                None => "the node's timeout passed".into(),
            }),
            must_be_offered: false,
            eager: None,
        };
        let mut outbox = Outbox::new();
        let plan = plan::plan_end(&locked, &graph, end, self.limits(), rand::random())?;
        self.stage(&tx, plan, &mut outbox).await?;
        self.commit(tx, outbox).await?;
        if let Some(op) = &locked.job.operation {
            self.metrics().job_timed_out(op);
        }
        Ok(true)
    }
}
