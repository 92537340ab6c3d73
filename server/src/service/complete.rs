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

use std::collections::HashSet;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::group::{self, Answers, Applies, Keyed};
use super::jobs::{Completed, Completion, LeasedJob};
use super::warm::Warm;
use super::{Outbox, Service, ServiceError};
use crate::store::PipelinedTx;
use crate::store::batch::{self, Expected, Writes};
use crate::store::jobs::{self, LockedJob};

/// A completion, checked for shape, waiting for its batch.
pub(crate) struct Pending {
    /// The job.
    pub job_id: i64,
    /// Its lease token.
    pub token: Uuid,
    /// How the worker ended it.
    pub completion: Completion,
    /// The output, parsed.
    pub output: Value,
    /// Operations the worker takes a next job for (eager dispatch).
    pub next_operations: Vec<String>,
}

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
    async fn try_batch(&self, batch: &[&Pending]) -> Result<Answers<Completed>, ServiceError> {
        let leases: Vec<(i64, Uuid)> = batch.iter().map(|p| (p.job_id, p.token)).collect();
        if let Some(warm) = self.warm.take_all(&leases)
            && let Some(answers) = self.try_warm(batch, warm).await?
        {
            return Ok(answers);
        }
        self.warm.forget(leases.iter().map(|(id, _)| *id));
        self.try_locked(batch).await
    }

    /// Applies a batch of warm completions with one statement. None when a step cannot be
    /// decided from memory (a refusal, say): the locking way decides it from the stored rows.
    /// A completion whose workflow row changed since it was written here is answered None,
    /// for the next batch.
    async fn try_warm(
        &self,
        batch: &[&Pending],
        warm: Vec<Warm>,
    ) -> Result<Option<Answers<Completed>>, ServiceError> {
        let client = self.pool().get().await?;
        let now = Utc::now();
        let mut writes = Writes::default();
        let mut expected = Vec::with_capacity(batch.len());
        let mut steps = Vec::with_capacity(batch.len());
        for (
            &pending,
            Warm {
                workflow,
                version,
                job,
            },
        ) in batch.iter().zip(warm)
        {
            let id = workflow.id;
            let locked = LockedJob { job, workflow, now };
            let (mut refused, mut step) = (Outbox::new(), Outbox::new());
            let Ok(completed) = self
                .complete_locked(&client, pending, &locked, &mut refused, &mut step)
                .await
            else {
                return Ok(None);
            };
            expected.push(Expected {
                workflow_id: id,
                version,
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
                // Dropping the step hands its reserved poller back.
                results.push(None);
            }
        }
        self.hand_over_written(&written);
        let created: Vec<_> = written.into_iter().filter_map(|w| w.job).collect();
        let leased = self.announce(outbox.notices, outbox.leases, &created)?;
        Ok(Some(with_next_jobs(results, leased)))
    }

    /// Applies a batch in one transaction that locks every workflow first. Each completion
    /// gets its answer, or None when another completion of the batch concerned the same
    /// workflow (it goes in the next batch).
    async fn try_locked(&self, batch: &[&Pending]) -> Result<Answers<Completed>, ServiceError> {
        let tx = PipelinedTx::new(self.pool().get().await?);
        let ids: Vec<i64> = batch.iter().map(|p| p.job_id).collect();
        let locked = tx.begin_with(jobs::lock_many(tx.client(), &ids)).await?;
        let mut outbox = Outbox::new();
        let mut workflows = HashSet::new();
        let mut results = Vec::with_capacity(batch.len());
        for &pending in batch {
            let Some(locked) = locked.iter().find(|l| l.job.id == pending.job_id) else {
                results.push(Some(Err(super::jobs::job_not_found(pending.job_id))));
                continue;
            };
            if !workflows.insert(locked.workflow.id) {
                results.push(None);
                continue;
            }
            let mut step = Outbox::new();
            let result = self
                .complete_locked(tx.client(), pending, locked, &mut outbox, &mut step)
                .await;
            if result.is_ok() {
                outbox.extend(step);
            }
            results.push(Some(result.map(|c| (c, locked.workflow.id))));
        }
        let leased = self.commit_pipelined(tx, outbox).await?;
        let applied = results.iter().flatten().filter(|r| r.is_ok()).count();
        self.metrics()
            .completion_batch(batch.len(), "locked", applied);
        Ok(with_next_jobs(results, leased))
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
    ) -> impl Future<Output = Result<Answers<Completed>, ServiceError>> + Send + 'a {
        self.try_batch(requests)
    }
}
