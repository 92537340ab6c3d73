//! Group commit of job completions (see `group`). Each caller is answered only after the
//! commit that applied its completion. A batch that fails as a whole (a database error) is
//! retried one completion at a time, so one bad completion cannot fail the others.
//!
//! A batch goes one of two ways:
//! - **warm**: every job was leased by this server as it wrote it (see `warm`). The steps are
//!   decided from the rows as written, and written with ONE statement that first checks each
//!   workflow row is still that version: one round trip, commit included. A completion whose
//!   workflow changed meanwhile writes nothing and goes to the next batch, the locking way.
//! - **locked**: one statement reads and locks every workflow concerned, the steps are
//!   decided in memory, and the writes of all of them go as a handful of array statements
//!   with the commit.

use chrono::Utc;
use std::collections::HashSet;
use uuid::Uuid;

use super::group::{self, Answers, Applies, BatchError, Keyed};
use super::plan::{self, Judged, StepPlan};
use super::types::{Completed, LeasedJob, Pending};
use super::warm::Warm;
use super::{Outbox, Service, ServiceError};
use crate::store::batch::{self, Expected};
use crate::store::jobs::{self, JobState, LockedJob};
use crate::store::{GenericClient, PipelinedTx};

impl Keyed for Pending {
    type Key = i64;
    fn key(&self) -> Option<i64> {
        Some(self.job_id)
    }
}

/// Completions waiting to be applied together.
pub(crate) type Completions = group::Group<Pending, Completed>;

impl Service {
    /// Queues a checked completion and waits for its batch to commit.
    pub(crate) async fn complete_queued(
        &self,
        pending: Pending,
    ) -> Result<Completed, ServiceError> {
        group::submit(&self.completions, self, pending, "completion").await
    }

    /// Applies a batch: the warm way when every job is warm under its lease, else locked.
    async fn try_batch(&self, batch: &[&Pending]) -> Result<Answers<Completed>, BatchError> {
        let leases: Vec<(i64, Uuid)> = batch.iter().map(|p| (p.job_id, p.token)).collect();
        if let Some(warm) = self.warm.take_all(&leases)
            && let Some(answers) = self.try_warm(batch, warm).await?
        {
            return Ok(answers);
        }
        self.warm.forget(leases.iter().map(|(id, _)| *id));
        self.try_locked(batch).await
    }

    /// Applies a batch of warm completions with one statement. None, with nothing written,
    /// when a step cannot be decided from memory (a refusal, say): the locking way decides it
    /// from the stored rows. A completion whose workflow row changed since it was written
    /// here is answered None, for the next batch.
    async fn try_warm(
        &self,
        batch: &[&Pending],
        warm: Vec<Warm>,
    ) -> Result<Option<Answers<Completed>>, BatchError> {
        let client = self.pool().get().await?;
        let now = Utc::now();
        let mut rows = Vec::with_capacity(warm.len());
        for Warm {
            workflow,
            version,
            job,
        } in warm
        {
            let graph = self.graph_of(&client, &workflow).await?;
            rows.push((LockedJob { job, workflow, now }, version, graph));
        }
        let mut plans = Vec::with_capacity(batch.len());
        for (&pending, (locked, _, graph)) in batch.iter().zip(&rows) {
            match plan::judge(pending, locked, graph, self.limits(), rand::random()) {
                Judged::Step(plan) => plans.push(*plan),
                Judged::Repeat { .. } | Judged::Refused { .. } => return Ok(None),
            }
        }
        let mut expected = Vec::with_capacity(batch.len());
        let mut steps = Vec::with_capacity(batch.len());
        let mut writes = batch::Writes::default();
        for ((&pending, (_, version, _)), plan) in batch.iter().zip(&rows).zip(plans) {
            let id = plan.workflow.id;
            let mut step = Outbox::new();
            let completed = self.stage_completion(&client, plan, &mut step).await?;
            expected.push(Expected {
                workflow_id: id,
                version: *version,
                job_id: pending.job_id,
                token: pending.token,
            });
            writes.extend(std::mem::take(&mut step.writes));
            steps.push((completed, id, step));
        }
        let written = batch::complete_warm(&client, &expected, writes).await?;
        drop(client);
        self.metrics()
            .completion_batch(batch.len(), "warm", written.len());
        let mut outbox = Outbox::new();
        let mut results = Vec::with_capacity(batch.len());
        for (completed, id, step) in steps {
            if written.iter().any(|w| w.workflow.id == id) {
                outbox.extend(step);
                results.push(Some(Ok((completed, id))));
            } else {
                // Dropping the step hands its reserved poller back, uncounted.
                results.push(None);
            }
        }
        let created: Vec<_> = written.iter().filter_map(|w| w.job.clone()).collect();
        let leased = self.after_commit(
            &written,
            outbox.notices,
            outbox.leases,
            &outbox.counts,
            &created,
        );
        Ok(Some(with_next_jobs(results, leased)))
    }

    /// Applies a batch in one transaction that locks every workflow and job first. Each
    /// completion gets its answer, or None when another completion of the batch concerned
    /// the same workflow (it goes in the next batch).
    async fn try_locked(&self, batch: &[&Pending]) -> Result<Answers<Completed>, BatchError> {
        let tx = PipelinedTx::new(self.pool().get().await?);
        let ids: Vec<i64> = batch.iter().map(|p| p.job_id).collect();
        let locked = tx.begin_with(jobs::lock_many(tx.client(), &ids)).await?;
        let mut graphs = Vec::with_capacity(locked.len());
        for l in &locked {
            graphs.push(self.graph_of(tx.client(), &l.workflow).await?);
        }
        let mut outbox = Outbox::new();
        let mut workflows = HashSet::new();
        let mut results = Vec::with_capacity(batch.len());
        for &pending in batch {
            let Some(i) = locked.iter().position(|l| l.job.id == pending.job_id) else {
                results.push(Some(Err(super::jobs::job_not_found(pending.job_id))));
                continue;
            };
            let locked = &locked[i];
            if !workflows.insert(locked.workflow.id) {
                results.push(None);
                continue;
            }
            let judged = plan::judge(pending, locked, &graphs[i], self.limits(), rand::random());
            let result = match judged {
                Judged::Step(plan) => self.stage_completion(tx.client(), *plan, &mut outbox).await,
                Judged::Repeat {
                    status,
                    node,
                    eager_again,
                } => {
                    let next_job = match eager_again {
                        Some(id) => {
                            let worker = locked.job.worker.as_deref().unwrap_or("worker");
                            let operations = &pending.next_operations;
                            self.eager_again(tx.client(), id, worker, operations)
                                .await?
                        }
                        None => None,
                    };
                    Ok(Completed {
                        duplicate: true,
                        status,
                        node,
                        next_job,
                    })
                }
                Judged::Refused { error, late } => {
                    outbox.writes.append(locked.workflow.id, late);
                    Err(error)
                }
            };
            results.push(Some(result.map(|c| (c, locked.workflow.id))));
        }
        let leased = self.commit_pipelined(tx, outbox).await?;
        let applied = results.iter().flatten().filter(|r| r.is_ok()).count();
        self.metrics()
            .completion_batch(batch.len(), "locked", applied);
        Ok(with_next_jobs(results, leased))
    }

    /// Stages a completion's step, answered once it has committed.
    async fn stage_completion(
        &self,
        client: &impl GenericClient,
        plan: StepPlan<'_>,
        outbox: &mut Outbox,
    ) -> Result<Completed, ServiceError> {
        let applied = self.stage(client, plan, outbox).await?;
        Ok(Completed {
            duplicate: false,
            status: applied.status,
            node: applied.node,
            next_job: None,
        })
    }

    /// The job `id` again, if it is still leased to `worker` for one of `operations`.
    async fn eager_again(
        &self,
        client: &impl GenericClient,
        id: i64,
        worker: &str,
        operations: &[String],
    ) -> Result<Option<LeasedJob>, ServiceError> {
        let Some(job) = jobs::get_with_workflow(client, id).await? else {
            return Ok(None);
        };
        let held = job.job.state == JobState::Active
            && job.job.worker.as_deref() == Some(worker)
            && job
                .job
                .operation
                .as_ref()
                .is_some_and(|op| operations.contains(op));
        if !held {
            return Ok(None);
        }
        let (graph, _) = self
            .graph(client, &job.graph_name, job.graph_version)
            .await?;
        Ok(Some(self.leased_job(&graph, job)?))
    }
}

/// The answers of a batch, each with the job leased to its worker by its step (eager
/// dispatch), if any.
fn with_next_jobs(
    results: Vec<Option<Result<(Completed, Uuid), ServiceError>>>,
    mut leased: Vec<LeasedJob>,
) -> Answers<Completed> {
    results
        .into_iter()
        .map(|r| {
            r.map(|r| {
                r.map(|(mut completed, workflow)| {
                    if completed.next_job.is_none()
                        && let Some(i) = leased
                            .iter()
                            .position(|j| j.claimed.job.workflow_id == workflow)
                    {
                        completed.next_job = Some(leased.swap_remove(i));
                    }
                    completed
                })
            })
        })
        .collect()
}

impl Applies<Pending, Completed> for Service {
    fn apply_batch<'a>(
        &'a self,
        requests: &'a [&'a Pending],
    ) -> impl Future<Output = Result<Answers<Completed>, BatchError>> + Send + 'a {
        self.try_batch(requests)
    }
}
