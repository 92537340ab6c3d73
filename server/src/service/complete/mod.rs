//! A worker's `CompleteJob` or `FailJob`, from its checks to its answer. The whole way:
//!
//! 1. [`Service::complete_job`] checks the token and the output, and queues the completion;
//!    `group` gathers the completions that arrive together into one batch and hands it to
//!    `apply_batch` below. Each caller is answered only after the commit that applied its
//!    completion. A batch that fails as a whole (a database error) before it committed is
//!    retried one completion at a time, so one bad completion cannot fail the others.
//! 2. `plan::judge` decides each completion from its row without IO: a refusal (see
//!    `refusals`), an identical repeat, or a step.
//! 3. `step` stages each step in the batch's outbox, then carries it out after the commit;
//!    the SQL is in `store::batch`.
//!
//! A batch goes one of two ways:
//! - **warm**: every job was leased by this server as it wrote it (see `warm`). The steps are
//!   decided from the rows as written, and written with ONE statement that first checks each
//!   workflow row is still that version: one round trip, commit included. A completion whose
//!   workflow changed meanwhile writes nothing and goes to the next batch, the locking way.
//! - **locked**: one statement reads and locks every workflow concerned, the steps are
//!   decided in memory, and the writes of all of them go as a handful of array statements
//!   with the commit.

pub(crate) mod refusals;
mod warm;

use std::collections::HashSet;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::Service;
use super::error::ServiceError;
use super::group::{self, Answers, Applies, BatchError, Keyed};
use super::plan::{self, Judged, StepPlan};
use super::step::Outbox;
use super::types::{Completed, Completion, LeasedJob, Pending};
use crate::store::jobs::{self, JobState};
use crate::store::{GenericClient, PipelinedTx};
use refusals::{job_not_found, parse_token};

impl Keyed for Pending {
    type Key = i64;
    fn key(&self) -> Option<i64> {
        Some(self.job_id)
    }
}

impl Service {
    /// A worker ends its job: verifies the lease and the label, then advances the workflow.
    /// Completions arriving together are applied in one transaction (see the module); each
    /// is answered after that transaction commits. An identical repeat succeeds with no new
    /// effect.
    pub async fn complete_job(
        &self,
        job_id: i64,
        token: &str,
        completion: Completion,
        next_operations: &[String],
    ) -> Result<Completed, ServiceError> {
        let token = parse_token(token)?;
        let output = match &completion {
            Completion::Label { output, .. } => Value::Object(self.parse_object("output", output)?),
            Completion::Failure { .. } => Value::Object(Map::new()),
        };
        let pending = Pending {
            job_id,
            token,
            completion,
            output,
            next_operations: next_operations.to_vec(),
        };
        group::submit(&self.completions, self, pending, "completion").await
    }

    /// Applies a batch: the warm way when every job is warm under its lease, else locked.
    async fn try_batch(&self, batch: &[&Pending]) -> Result<Answers<Completed>, BatchError> {
        let leases: Vec<(i64, Uuid)> = batch.iter().map(|p| (p.job_id, p.token)).collect();
        if let Some(warm) = self.warm.take_all(&leases)
            && let Some((results, leased)) = self.try_warm(batch, warm).await?
        {
            return Ok(with_next_jobs(results, leased));
        }
        self.warm.forget(leases.iter().map(|(id, _)| *id));
        self.try_locked(batch).await
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
                results.push(Some(Err(job_not_found(pending.job_id))));
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
        Ok(Some(LeasedJob::new(&graph, job)?))
    }
}

/// A batch's answers as decided, each with its workflow, before the jobs leased by their
/// steps (the second part) are given to them.
type Decided = (
    Vec<Option<Result<(Completed, Uuid), ServiceError>>>,
    Vec<LeasedJob>,
);

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
