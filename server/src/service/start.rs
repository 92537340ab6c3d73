//! Group commit of workflow starts (see `group`): one transaction inserts every new workflow
//! with one statement, enters each first node in memory, and sends the writes of all of them
//! as a handful of array statements before one commit; the answers are read back with two
//! queries. A start whose idempotency key already exists is answered from the existing
//! workflow. A batch that fails as a whole (a database error) is retried one start at a time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rondo_engine::Graph;
use serde_json::Value;
use uuid::Uuid;

use super::group::{self, Keyed, Queued};
use super::workflows::{NewStart, Started, WorkflowView, new_row, request_hash};
use super::{Committed, Outbox, Service, ServiceError, to_i32};
use crate::store::workflows;

/// A start, checked for shape, waiting for its batch.
pub(crate) struct PendingStart {
    /// Graph name.
    pub graph: String,
    /// Graph version; 0 for the latest.
    pub version: u32,
    /// Input, a JSON object.
    pub input: Value,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Delayed start.
    pub start_at: Option<DateTime<Utc>>,
    /// Schedule starting it.
    pub schedule_id: Option<String>,
}

impl PendingStart {
    fn as_new(&self) -> NewStart<'_> {
        NewStart {
            graph: &self.graph,
            version: self.version,
            input: &self.input,
            idempotency_key: self.idempotency_key.as_deref(),
            start_at: self.start_at,
            schedule_id: self.schedule_id.as_deref(),
            actor: "client",
        }
    }
}

impl Keyed for PendingStart {
    type Key = String;
    fn key(&self) -> Option<String> {
        self.idempotency_key.clone()
    }
}

/// Starts waiting to be applied together.
pub(crate) type Starts = group::Group<PendingStart, Started>;

/// A graph as a start names it: name and version (0 for the latest).
type GraphKey<'a> = (&'a str, u32);

/// A start whose graph was found, with its new workflow's id.
struct Resolved<'a> {
    new: NewStart<'a>,
    id: Uuid,
    graph: Arc<Graph>,
    version: i32,
    hash: String,
}

impl Service {
    /// Queues a checked start and waits for its batch to commit.
    pub(crate) async fn start_queued(
        &self,
        pending: PendingStart,
    ) -> Result<Started, ServiceError> {
        let (answer, start_runner) = self.starts.push(pending);
        if start_runner {
            tokio::spawn(self.clone().run_starts());
        }
        group::answer(answer, "the start").await
    }

    /// Applies queued starts, batch after batch, until none is left.
    async fn run_starts(self) {
        while let Some(batch) = self.starts.take() {
            self.start_batch(batch).await;
        }
    }

    /// Applies one batch and answers its callers; on a database error, retries each alone.
    async fn start_batch(&self, batch: Vec<Queued<PendingStart, Started>>) {
        let requests: Vec<&PendingStart> = batch.iter().map(|q| &q.request).collect();
        match self.try_starts(&requests).await {
            Ok(results) => {
                for (q, result) in batch.into_iter().zip(results) {
                    let _ = q.reply.send(result);
                }
            }
            Err(error) if batch.len() > 1 => {
                tracing::warn!(%error, size = batch.len(), "start batch failed; starting one by one");
                for q in batch {
                    let result = match self.try_starts(&[&q.request]).await {
                        Ok(mut results) => results.pop().unwrap_or_else(|| {
                            Err(ServiceError::Internal("start was not applied".into()))
                        }),
                        Err(error) => Err(error),
                    };
                    let _ = q.reply.send(result);
                }
            }
            Err(error) => {
                for q in batch {
                    let _ = q.reply.send(Err(group::clone_error(&error)));
                }
            }
        }
    }

    /// Applies a batch of starts in one transaction; each gets its answer.
    async fn try_starts(
        &self,
        batch: &[&PendingStart],
    ) -> Result<Vec<Result<Started, ServiceError>>, ServiceError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let mut resolved = Vec::with_capacity(batch.len());
        // Each graph once per batch: most batches start many workflows of one graph.
        let mut known: Vec<(GraphKey<'_>, (Arc<Graph>, i32))> = Vec::new();
        for pending in batch {
            let new = pending.as_new();
            let key = (new.graph, new.version);
            let found = match known.iter().find(|(k, _)| *k == key) {
                Some((_, found)) => Ok(found.clone()),
                None => self.graph(&tx, new.graph, to_i32(new.version)).await,
            };
            if let Ok(found) = &found {
                known.push((key, found.clone()));
            }
            resolved.push(match found {
                Ok((graph, version)) => Ok(Resolved {
                    hash: request_hash(&new),
                    new,
                    id: Uuid::now_v7(),
                    graph,
                    version,
                }),
                Err(e) => Err(e),
            });
        }
        let rows: Vec<_> = resolved
            .iter()
            .flatten()
            .map(|r| new_row(&r.new, r.id, &r.graph, r.version, &r.hash))
            .collect();
        let inserted = workflows::insert_many(&tx, &rows).await?;
        let mut outbox = Outbox::new();
        for r in resolved.iter().flatten() {
            if let Some(row) = inserted.iter().find(|w| w.id == r.id) {
                self.enter_first(&tx, &r.new, row, &r.graph, r.version, &mut outbox)
                    .await?;
            }
        }
        let Committed {
            mut jobs,
            mut workflows,
            ..
        } = self.commit(tx, outbox).await?;
        let mut results = Vec::with_capacity(batch.len());
        for r in resolved {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            // A running workflow is as its first step left it; a pending one as inserted.
            let stored = take(&mut workflows, |w| w.id == r.id)
                .or_else(|| inserted.iter().find(|w| w.id == r.id).cloned());
            let result = match stored {
                Some(workflow) => Ok(Started {
                    view: WorkflowView {
                        job: take(&mut jobs, |j| j.workflow_id == r.id),
                        workflow,
                    },
                    existing: false,
                }),
                None => self.existing_start(&client, &r.new).await,
            };
            results.push(result);
        }
        Ok(results)
    }
}

/// Removes and returns the first item matching `found`.
fn take<T>(items: &mut Vec<T>, found: impl Fn(&T) -> bool) -> Option<T> {
    let i = items.iter().position(found)?;
    Some(items.swap_remove(i))
}
