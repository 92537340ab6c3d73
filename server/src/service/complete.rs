//! Group commit of job completions (see `group`): one transaction locks every workflow
//! concerned with one statement, decides each step in memory, and sends the writes of all of
//! them as a handful of array statements before one commit. Each caller is answered only
//! after that commit. A batch that fails as a whole (a database error) is retried one
//! completion at a time, so one bad completion cannot fail the others.

use std::collections::HashSet;

use serde_json::Value;
use uuid::Uuid;

use super::group::{self, Answers, Applies, Keyed};
use super::jobs::{Completed, Completion};
use super::{Outbox, Service, ServiceError};
use crate::store::{PipelinedTx, jobs};

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

    /// Applies a batch in one transaction. Each completion gets its answer, or None when
    /// another completion of the batch concerned the same workflow (it goes in the next batch).
    async fn try_batch(&self, batch: &[&Pending]) -> Result<Answers<Completed>, ServiceError> {
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
        let mut leased = self.commit_pipelined(tx, outbox).await?;
        self.metrics().completion_batch(batch.len());
        Ok(results
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
            .collect())
    }
}

impl Applies<Pending, Completed> for Service {
    fn apply_batch<'a>(
        &'a self,
        requests: &'a [&'a Pending],
    ) -> impl Future<Output = Result<Answers<Completed>, ServiceError>> + Send + 'a {
        self.try_batch(requests)
    }
}
