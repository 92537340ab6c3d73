//! Group commit of job completions. Each `CompleteJob` call queues its completion and waits;
//! a few runner tasks take whatever is queued, up to [`MAX_BATCH`], and apply it in ONE
//! transaction: one statement locks every workflow concerned, each step is decided in memory,
//! and the writes of all of them go out as a handful of array statements before one commit.
//! Every caller is answered only after that commit. On an idle server a batch holds one
//! completion and starts at once; under load the batches grow by themselves while the
//! runners are busy, so PostgreSQL's per-statement and per-commit costs are shared.
//!
//! A batch that fails as a whole (a database error) is retried one completion at a time, so
//! one bad completion cannot fail the others.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::jobs::{Completed, Completion};
use super::{Outbox, Service, ServiceError};
use crate::store::jobs;

/// Most completions applied in one transaction.
const MAX_BATCH: usize = 128;

/// Most batches in flight at once: enough to keep PostgreSQL busy while one batch commits,
/// few enough that waiting completions pile up into large batches.
const MAX_RUNNERS: usize = 4;

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
    /// Where the answer goes.
    reply: oneshot::Sender<Result<Completed, ServiceError>>,
}

/// Completions waiting for a batch, and how many runners are taking them.
#[derive(Default)]
pub(crate) struct Queue {
    waiting: VecDeque<Pending>,
    running: usize,
}

impl Queue {
    /// Takes up to [`MAX_BATCH`] completions of distinct jobs; a repeat of a job already taken
    /// waits for the next batch, which sees the first one's effect.
    fn take_batch(&mut self) -> Vec<Pending> {
        let mut batch = Vec::new();
        let mut jobs = HashSet::new();
        let mut left = VecDeque::new();
        while let Some(p) = self.waiting.pop_front() {
            if batch.len() == MAX_BATCH {
                left.push_back(p);
                left.extend(self.waiting.drain(..));
                break;
            }
            if jobs.insert(p.job_id) {
                batch.push(p);
            } else {
                left.push_back(p);
            }
        }
        self.waiting = left;
        batch
    }
}

impl Service {
    /// Queues a checked completion and waits for its batch to commit.
    pub(crate) async fn complete_queued(
        &self,
        job_id: i64,
        token: Uuid,
        completion: Completion,
        output: Value,
        next_operations: &[String],
    ) -> Result<Completed, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            job_id,
            token,
            completion,
            output,
            next_operations: next_operations.to_vec(),
            reply,
        };
        let start_runner = {
            let mut queue = self.completions.lock().expect("completion queue lock");
            queue.waiting.push_back(pending);
            let start = queue.running < MAX_RUNNERS;
            if start {
                queue.running += 1;
            }
            start
        };
        if start_runner {
            tokio::spawn(self.clone().run_completions());
        }
        answer.await.map_err(|_| {
            ServiceError::Unavailable(format!(
                "the server stopped before job {job_id}'s completion was applied; send it again"
            ))
        })?
    }

    /// Applies queued completions, batch after batch, until none is left.
    async fn run_completions(self) {
        loop {
            let batch = {
                let mut queue = self.completions.lock().expect("completion queue lock");
                let batch = queue.take_batch();
                if batch.is_empty() {
                    queue.running -= 1;
                    return;
                }
                batch
            };
            self.complete_batch(batch).await;
        }
    }

    /// Applies one batch and answers its callers; on a database error, retries each alone.
    async fn complete_batch(&self, batch: Vec<Pending>) {
        let results = match self.try_batch(&batch).await {
            Ok(results) => results,
            Err(error) if batch.len() > 1 => {
                tracing::warn!(%error, size = batch.len(), "completion batch failed; applying one by one");
                for pending in batch {
                    let result = match self.try_batch(std::slice::from_ref(&pending)).await {
                        Ok(mut results) => results.pop().flatten().unwrap_or_else(|| {
                            Err(ServiceError::Internal("completion was not applied".into()))
                        }),
                        Err(error) => Err(error),
                    };
                    let _ = pending.reply.send(result);
                }
                return;
            }
            Err(error) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(clone_error(&error)));
                }
                return;
            }
        };
        let mut again = Vec::new();
        for (pending, result) in batch.into_iter().zip(results) {
            match result {
                Some(result) => {
                    let _ = pending.reply.send(result);
                }
                None => again.push(pending),
            }
        }
        if !again.is_empty() {
            let mut queue = self.completions.lock().expect("completion queue lock");
            for pending in again.into_iter().rev() {
                queue.waiting.push_front(pending);
            }
        }
    }

    /// Applies a batch in one transaction. Each completion gets its answer, or None when
    /// another completion of the batch concerned the same workflow (it goes in the next batch).
    async fn try_batch(
        &self,
        batch: &[Pending],
    ) -> Result<Vec<Option<Result<Completed, ServiceError>>>, ServiceError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let ids: Vec<i64> = batch.iter().map(|p| p.job_id).collect();
        let locked = jobs::lock_many(&tx, &ids).await?;
        let mut outbox = Outbox::new();
        let mut workflows = HashSet::new();
        let mut results = Vec::with_capacity(batch.len());
        for pending in batch {
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
                .complete_locked(&tx, pending, locked, &mut outbox, &mut step)
                .await;
            if result.is_ok() {
                outbox.extend(step);
            }
            results.push(Some(result.map(|c| (c, locked.workflow.id))));
        }
        let mut leased = self.commit(tx, outbox).await?;
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

/// The same error again, for every completion of a batch that failed as a whole.
fn clone_error(e: &ServiceError) -> ServiceError {
    match e {
        ServiceError::Unavailable(m) => ServiceError::Unavailable(m.clone()),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// Queue state kept by the service.
pub(crate) type Completions = Mutex<Queue>;
