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

use super::group::{self, Answers, Applies, Keyed};
use super::workflows::{NewStart, Started, WorkflowView, new_row, request_hash};
use super::{Outbox, Service, ServiceError, to_i32};
use crate::store::batch;
use crate::store::jobs::JobRecord;
use crate::store::workflows::{self, WorkflowStatus};

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
        group::submit(&self.starts, self, pending, "start").await
    }

    /// Applies a batch of starts; each gets its answer. Starts due at once are written as
    /// their first step leaves them, all with one statement (atomic by itself); delayed
    /// starts go through one transaction.
    async fn try_starts(
        &self,
        batch: &[&PendingStart],
    ) -> Result<Vec<Result<Started, ServiceError>>, ServiceError> {
        let mut client = self.pool().get().await?;
        let mut resolved = Vec::with_capacity(batch.len());
        // Each graph once per batch: most batches start many workflows of one graph.
        let mut known: Vec<(GraphKey<'_>, (Arc<Graph>, i32))> = Vec::new();
        for pending in batch {
            let new = pending.as_new();
            let key = (new.graph, new.version);
            let found = match known.iter().find(|(k, _)| *k == key) {
                Some((_, found)) => Ok(found.clone()),
                None => self.graph(&client, new.graph, to_i32(new.version)).await,
            };
            if let Ok(found) = &found {
                known.push((key, found.clone()));
            }
            resolved.push(found.map(|(graph, version)| Resolved {
                hash: request_hash(&new),
                new,
                id: Uuid::now_v7(),
                graph,
                version,
            }));
        }

        let mut outbox = Outbox::new();
        let mut rows = Vec::new();
        for r in resolved
            .iter()
            .flatten()
            .filter(|r| r.new.start_at.is_none())
        {
            rows.push(new_row(&r.new, r.id, &r.graph, r.version, &r.hash));
            let running = (r.id, WorkflowStatus::Running);
            self.enter_first(&client, &r.new, running, &r.graph, r.version, &mut outbox)
                .await?;
        }
        let mut started = match rows.is_empty() {
            true => Vec::new(),
            false => batch::insert_started(&client, &rows, outbox.writes).await?,
        };
        self.hand_over_written(&started);
        let jobs: Vec<JobRecord> = started.iter().filter_map(|w| w.job.clone()).collect();
        self.announce(outbox.notices, outbox.leases, &jobs)?;

        let mut delayed = Vec::new();
        let delayed_starts: Vec<&Resolved<'_>> = resolved
            .iter()
            .flatten()
            .filter(|r| r.new.start_at.is_some())
            .collect();
        if !delayed_starts.is_empty() {
            let tx = client.transaction().await?;
            let mut outbox = Outbox::new();
            for r in delayed_starts {
                if let Some(id) = self.insert_workflow(&tx, &r.new, &mut outbox).await? {
                    delayed.push((r.id, id));
                }
            }
            self.commit(tx, outbox).await?;
        }

        let mut results = Vec::with_capacity(batch.len());
        for r in resolved {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let inserted = match take(&mut started, |w| w.workflow.id == r.id) {
                Some(w) => Some(WorkflowView {
                    workflow: w.workflow,
                    job: w.job,
                }),
                None => match delayed.iter().find(|(mine, _)| *mine == r.id) {
                    Some(&(_, id)) => match workflows::get(&client, id).await? {
                        Some(workflow) => Some(self.view_with(&client, workflow).await?),
                        None => None,
                    },
                    None => None,
                },
            };
            results.push(match inserted {
                Some(view) => Ok(Started {
                    view,
                    existing: false,
                }),
                None => self.existing_start(&client, &r.new).await,
            });
        }
        Ok(results)
    }
}

/// Removes and returns the first item matching `found`.
fn take<T>(items: &mut Vec<T>, found: impl Fn(&T) -> bool) -> Option<T> {
    let i = items.iter().position(found)?;
    Some(items.swap_remove(i))
}

impl Applies<PendingStart, Started> for Service {
    async fn apply_batch<'a>(
        &'a self,
        requests: &'a [&'a PendingStart],
    ) -> Result<Answers<Started>, ServiceError> {
        let started = self.try_starts(requests).await?;
        Ok(started.into_iter().map(Some).collect())
    }
}
