//! A `StartWorkflow`, from its checks to its answer. [`Service::start_workflow`] checks the
//! request and queues it; `group` gathers the starts that arrive together and hands them to
//! `apply_batch` below. The new rows and first steps are built in `first`, and a repeated
//! idempotency key is answered in `refusals`.
//!
//! One transaction inserts every new workflow
//! with one statement, enters each first node in memory, and sends the writes of all of them
//! as a handful of array statements before one commit; the answers are read back with two
//! queries. A start whose idempotency key already exists is answered from the existing
//! workflow. A batch that fails as a whole (a database error) before anything committed is
//! retried one start at a time; once a write has committed, the batch is never applied again.

mod first;
mod refusals;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rondo_engine::Graph;
use serde_json::Value;
use uuid::Uuid;

use super::error::ServiceError;
use super::group::{self, Answers, Applies, BatchError, Keyed, clone_error};
use super::step::Outbox;
use super::types::{NewStart, PendingStart, Started, WorkflowView};
use super::{Service, to_i32};
use crate::store::GenericClient;
use crate::store::batch;
use crate::store::jobs::JobRecord;
use crate::store::workflows::{self, WorkflowStatus};
use first::{new_row, request_hash};

/// A request to start a workflow.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// Graph name.
    pub graph: String,
    /// Graph version; 0 for the latest.
    pub version: u32,
    /// Input JSON text ("" for `{}`).
    pub input: String,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Delayed start.
    pub start_at: Option<DateTime<Utc>>,
    /// Schedule starting it.
    pub schedule_id: Option<String>,
}

impl Keyed for PendingStart {
    type Key = String;
    fn key(&self) -> Option<String> {
        self.idempotency_key.clone()
    }
}

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
    /// Starts a workflow, or returns the one its idempotency key already started. Starts
    /// arriving together share one transaction (see the module).
    pub async fn start_workflow(&self, req: StartRequest) -> Result<Started, ServiceError> {
        if req.graph.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "`graph` is required: name the graph to start".into(),
            ));
        }
        let input = Value::Object(self.parse_object("input", &req.input)?);
        let pending = PendingStart {
            graph: req.graph,
            version: req.version,
            input,
            idempotency_key: req.idempotency_key,
            start_at: req.start_at,
            schedule_id: req.schedule_id,
        };
        group::submit(&self.starts, self, pending, "start").await
    }

    /// Applies a batch of starts; each gets its answer. Starts due at once are written as
    /// their first step leaves them, all with one statement (atomic by itself); delayed
    /// starts go through one transaction after it. Once that statement has committed, a
    /// failure answers only the starts it concerns: the batch is never applied again.
    async fn try_starts(&self, batch: &[&PendingStart]) -> Result<Answers<Started>, BatchError> {
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
        // Committed from here on: nothing below may send the batch round again.
        let committed = !rows.is_empty();
        outbox
            .counts
            .retain(|(id, _)| started.iter().any(|w| w.workflow.id == *id));
        let jobs: Vec<JobRecord> = started.iter().filter_map(|w| w.job.clone()).collect();
        self.after_commit(
            &started,
            outbox.notices,
            outbox.leases,
            &outbox.counts,
            &jobs,
        );

        let delayed_starts: Vec<&Resolved<'_>> = resolved
            .iter()
            .flatten()
            .filter(|r| r.new.start_at.is_some())
            .collect();
        let delayed = match self.insert_delayed(&mut client, &delayed_starts).await {
            Ok(delayed) => Ok(delayed),
            Err(error) if !committed => return Err(error.into()),
            Err(error) => Err(error),
        };

        let mut results = Vec::with_capacity(batch.len());
        for r in resolved {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    results.push(Some(Err(e)));
                    continue;
                }
            };
            let answer = match take(&mut started, |w| w.workflow.id == r.id) {
                Some(w) => Ok(Started {
                    view: WorkflowView {
                        workflow: w.workflow,
                        job: w.job,
                    },
                    existing: false,
                }),
                None if r.new.start_at.is_none() => self.existing_start(&client, &r.new).await,
                None => match &delayed {
                    Ok(delayed) => self.delayed_answer(&client, &r, delayed).await,
                    Err(error) => Err(clone_error(error)),
                },
            };
            results.push(Some(answer));
        }
        Ok(results)
    }

    /// Inserts the delayed starts in one transaction; returns for each start inserted its
    /// batch id and its workflow's id (a start whose idempotency key exists already inserts
    /// nothing).
    async fn insert_delayed(
        &self,
        client: &mut deadpool_postgres::Object,
        delayed: &[&Resolved<'_>],
    ) -> Result<Vec<(Uuid, Uuid)>, ServiceError> {
        if delayed.is_empty() {
            return Ok(Vec::new());
        }
        let tx = client.transaction().await?;
        let mut outbox = Outbox::new();
        let mut inserted = Vec::with_capacity(delayed.len());
        for r in delayed {
            if let Some(id) = self.insert_workflow(&tx, &r.new, &mut outbox).await? {
                inserted.push((r.id, id));
            }
        }
        self.commit(tx, outbox).await?;
        Ok(inserted)
    }

    /// The answer to a delayed start: the workflow it inserted, or the one its key names.
    async fn delayed_answer(
        &self,
        client: &impl GenericClient,
        r: &Resolved<'_>,
        inserted: &[(Uuid, Uuid)],
    ) -> Result<Started, ServiceError> {
        let Some(&(_, id)) = inserted.iter().find(|(mine, _)| *mine == r.id) else {
            return self.existing_start(client, &r.new).await;
        };
        let workflow = workflows::get(client, id)
            .await?
            .ok_or_else(|| super::workflows::not_found(id))?;
        Ok(Started {
            view: self.view_with(client, workflow).await?,
            existing: false,
        })
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
    ) -> Result<Answers<Started>, BatchError> {
        self.try_starts(requests).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use serde_json::json;

    use super::*;
    use crate::service::test_support::service_with_graph;
    use crate::testing::TestDb;

    const ONE_STEP: &str = "
name: once
start: work
nodes:
  work:
    operation: test.work
    timeout: 30s
    on: { done: ~ }
";

    /// Makes every insert of a PENDING workflow fail, as a fault after the batch's first
    /// commit would.
    const FAIL_DELAYED: &str = "
CREATE FUNCTION fail_delayed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'pending' THEN RAISE EXCEPTION 'injected fault'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER fail_delayed BEFORE INSERT ON workflows
  FOR EACH ROW EXECUTE FUNCTION fail_delayed();";

    fn start(start_at: Option<chrono::DateTime<Utc>>) -> PendingStart {
        PendingStart {
            graph: "once".into(),
            version: 0,
            input: json!({}),
            idempotency_key: None,
            start_at,
            schedule_id: None,
        }
    }

    #[tokio::test]
    async fn a_batch_whose_immediate_starts_committed_is_not_applied_again() {
        let db = TestDb::new().await;
        let service = service_with_graph(&db, ONE_STEP).await;
        let client = service.pool().get().await.unwrap();
        client.batch_execute(FAIL_DELAYED).await.unwrap();

        let (now, now_ok) = service.starts.push(start(None));
        let (later, _) = service
            .starts
            .push(start(Some(Utc::now() + Duration::hours(1))));
        assert!(
            now_ok,
            "the first push may start a runner; this test runs the batch itself"
        );
        let batch = service.starts.take().expect("both starts wait");
        assert_eq!(batch.len(), 2, "one batch holds both starts");
        service.starts.apply("start", batch, &service).await;

        let started = now.await.unwrap().expect("the immediate start committed");
        assert!(!started.existing);
        let refused = later.await.unwrap().unwrap_err();
        assert!(
            matches!(refused, ServiceError::Internal(_)),
            "the delayed start gets its own error: {refused}"
        );
        let rows: i64 = client
            .query_one("SELECT count(*) FROM workflows", &[])
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!(rows, 1, "the start without a key was written once");
    }
}
