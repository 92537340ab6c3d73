//! Workflow use cases: start (with idempotency keys and delayed starts), read, list, history,
//! await, and the operator actions cancel, move and retry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rondo_engine::{EngineError, Position, advance};
use serde_json::json;
use uuid::Uuid;

use super::Service;
use super::error::ServiceError;
use super::group::{self, Answers, Applies, BatchError, Keyed};
use super::plan::{Apply, Target, position_of};
use super::step::Outbox;
use super::types::{Read, WorkflowView};
use crate::store::batch::JobEnd;
use crate::store::events::{self, EventKind, EventRecord, NewEvent};
use crate::store::jobs::{self, JobState};
use crate::store::listen::Notice;
use crate::store::workflows::{self, ListFilter, WorkflowRecord, WorkflowStatus};
use crate::store::{self, GenericClient};

impl Keyed for Read {
    type Key = Uuid;
    fn key(&self) -> Option<Uuid> {
        None
    }
}

impl Applies<Read, WorkflowView> for Service {
    async fn apply_batch<'a>(
        &'a self,
        requests: &'a [&'a Read],
    ) -> Result<Answers<WorkflowView>, BatchError> {
        let ids: Vec<Uuid> = requests.iter().map(|r| r.0).collect();
        let client = self.pool().get().await?;
        let found = workflows::get_with_jobs(&client, &ids).await?;
        // Two calls may read the same workflow.
        Ok(ids
            .iter()
            .map(|id| {
                Some(
                    found
                        .iter()
                        .find(|(w, _)| w.id == *id)
                        .map(|(workflow, job)| WorkflowView {
                            workflow: workflow.clone(),
                            job: job.clone(),
                        })
                        .ok_or_else(|| not_found(*id)),
                )
            })
            .collect())
    }
}

/// Who performs an operator action, why, and what they saw.
#[derive(Debug, Clone, Default)]
pub struct OperatorAction {
    /// Operator identity.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// The (node, step count) the operator saw; the action fails if the workflow moved on.
    pub expected: Option<(String, u32)>,
}

/// One page of workflows.
#[derive(Debug, Clone)]
pub struct WorkflowPage {
    /// Workflows, newest first.
    pub workflows: Vec<WorkflowRecord>,
    /// Token for the next page.
    pub next_page_token: Option<String>,
}

/// Filters of a workflow listing.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Only this graph.
    pub graph: Option<String>,
    /// Only this status.
    pub status: Option<WorkflowStatus>,
    /// Only at this node.
    pub node: Option<String>,
    /// Page size (0: 100).
    pub page_size: u32,
    /// Continue from a previous page.
    pub page_token: Option<String>,
}

impl Service {
    /// Reads a workflow with its current job.
    pub async fn get_workflow(&self, id: Uuid) -> Result<WorkflowView, ServiceError> {
        group::submit(&self.reads, self, Read(id), "workflow read").await
    }

    pub(crate) async fn view_with(
        &self,
        client: &impl GenericClient,
        workflow: WorkflowRecord,
    ) -> Result<WorkflowView, ServiceError> {
        let job = match workflow.current_job_id {
            Some(job_id) => jobs::get(client, job_id).await?,
            None => None,
        };
        Ok(WorkflowView { workflow, job })
    }

    /// Lists workflows, newest first.
    pub async fn list_workflows(&self, req: ListRequest) -> Result<WorkflowPage, ServiceError> {
        let limit = page_size(req.page_size);
        let after = req
            .page_token
            .as_deref()
            .map(parse_page_token)
            .transpose()?;
        let mut client = self.pool().get().await?;
        let filter = ListFilter {
            graph: req.graph.as_deref(),
            status: req.status,
            node: req.node.as_deref(),
            after,
            limit: limit + 1,
        };
        // A read-only transaction, only so that its filters choose its index.
        let tx = client.transaction().await?;
        store::custom_plans(&tx).await?;
        let mut rows = workflows::list(&tx, &filter).await?;
        tx.commit().await?;
        let next_page_token = if rows.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            rows.pop();
            rows.last()
                .map(|w| format!("{}_{}", w.created_at.timestamp_micros(), w.id))
        } else {
            None
        };
        Ok(WorkflowPage {
            workflows: rows,
            next_page_token,
        })
    }

    /// Reads a workflow's history after `after_seq`, at most `limit` events (0: all).
    pub async fn history(
        &self,
        id: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, ServiceError> {
        let client = self.pool().get().await?;
        if workflows::get(&client, id).await?.is_none() {
            return Err(not_found(id));
        }
        let limit = if limit == 0 {
            i64::MAX
        } else {
            i64::from(limit)
        };
        Ok(events::list(&client, id, after_seq, limit).await?)
    }

    /// Waits until the workflow is neither PENDING nor RUNNING, or `wait` (capped) runs out.
    pub async fn await_workflow(
        &self,
        id: Uuid,
        wait: Duration,
    ) -> Result<(WorkflowView, bool), ServiceError> {
        let deadline = tokio::time::Instant::now() + wait.min(self.limits.max_poll_wait);
        loop {
            let waiter = self.dispatch().watch_workflow(id);
            // One this server wrote as running, with no notice since, runs still: no read.
            if !self.dispatch().known_running(id) {
                let view = self.get_workflow(id).await?;
                let done = view.workflow.status.is_done();
                if done || tokio::time::Instant::now() >= deadline {
                    return Ok((view, done));
                }
            }
            if !waiter.wait_until(deadline).await {
                // `done` says what the view returned shows, whatever the caches believed.
                let view = self.get_workflow(id).await?;
                let done = view.workflow.status.is_done();
                return Ok((view, done));
            }
            if let Some(view) = waiter.finished() {
                return Ok((WorkflowView::clone(&view), true));
            }
        }
    }

    /// Cancels a workflow and its job in hand. Cancelling a cancelled workflow changes nothing.
    pub async fn cancel_workflow(
        &self,
        id: Uuid,
        reason: &str,
        operator: &str,
    ) -> Result<WorkflowView, ServiceError> {
        let actor = actor_of(operator, "client");
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (wf, _) = workflows::lock(&tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        match wf.status {
            WorkflowStatus::Cancelled => {
                drop(tx);
                return self.view_with(&client, wf).await;
            }
            WorkflowStatus::Completed => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "workflow {id} already completed with `{}`; there is nothing to cancel",
                    wf.outcome.unwrap_or_default()
                )));
            }
            WorkflowStatus::Pending | WorkflowStatus::Running | WorkflowStatus::Stuck => {}
        }
        let mut outbox = Outbox::new();
        let mut log = self
            .cancel_open_job(&tx, &wf, &actor, reason, &mut outbox)
            .await?;
        log.push(NewEvent {
            node: wf.current_node.clone(),
            message: Some(non_empty(reason, "cancelled")),
            ..NewEvent::new(EventKind::WorkflowCancelled, actor.as_str())
        });
        workflows::cancel(&tx, id).await?;
        outbox.writes.append(id, log);
        outbox.push(Notice::WorkflowChanged(id));
        self.commit(tx, outbox).await?;
        drop(client);
        self.get_workflow(id).await
    }

    /// Operator escalation: moves a RUNNING or STUCK workflow to `to`, cancelling its job.
    pub async fn move_workflow(
        &self,
        id: Uuid,
        to: &str,
        action: OperatorAction,
    ) -> Result<WorkflowView, ServiceError> {
        self.operator_step(id, action, EventKind::OperatorMoved, |graph, pos| {
            advance::move_to(graph, pos, to).map_err(|e| match e {
                EngineError::UnknownNode { graph: g, node } => {
                    ServiceError::InvalidArgument(format!(
                        "node `{node}` does not exist in graph `{g}`; move to one of: {}",
                        graph
                            .def()
                            .nodes
                            .0
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
                other => ServiceError::InvalidArgument(other.to_string()),
            })
        })
        .await
    }

    /// Operator retry: creates the current node's job again with a fresh streak.
    pub async fn retry_workflow(
        &self,
        id: Uuid,
        action: OperatorAction,
    ) -> Result<WorkflowView, ServiceError> {
        self.operator_step(id, action, EventKind::OperatorRetried, |graph, pos| {
            advance::retry_current(graph, pos)
                .map_err(|e| ServiceError::FailedPrecondition(e.to_string()))
        })
        .await
    }

    async fn operator_step(
        &self,
        id: Uuid,
        action: OperatorAction,
        kind: EventKind,
        decide: impl FnOnce(&rondo_engine::Graph, &Position) -> Result<rondo_engine::Step, ServiceError>,
    ) -> Result<WorkflowView, ServiceError> {
        if action.operator.trim().is_empty() {
            return Err(ServiceError::InvalidArgument(
                "`operator` is required for operator actions: pass --operator or set RONDO_OPERATOR".into(),
            ));
        }
        if action.reason.trim().is_empty() {
            return Err(ServiceError::InvalidArgument(
                "`reason` is required for operator actions: say why, it is recorded in history"
                    .into(),
            ));
        }
        let actor = actor_of(&action.operator, "operator");
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (wf, _) = workflows::lock(&tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if !matches!(wf.status, WorkflowStatus::Running | WorkflowStatus::Stuck) {
            return Err(ServiceError::FailedPrecondition(format!(
                "workflow {id} is {}; only running or stuck workflows can be moved or retried",
                wf.status.as_str()
            )));
        }
        let node = wf.current_node.clone().unwrap_or_default();
        if let Some((expected_node, expected_step)) = &action.expected
            && (*expected_node != node || i64::from(*expected_step) != i64::from(wf.step_count))
        {
            return Err(ServiceError::Aborted(format!(
                "workflow {id} changed since you looked: it is at `{node}` step {} (you saw \
                 `{expected_node}` step {expected_step}); look again and decide on the new state",
                wf.step_count
            )));
        }
        let graph = self.graph_of(&tx, &wf).await?;
        let position = position_of(&wf);
        let step = decide(&graph, &position)?;
        let previous_key = match wf.current_job_id {
            Some(job_id) => jobs::get(&tx, job_id).await?.map(|j| j.idempotency_key),
            None => None,
        };
        let mut outbox = Outbox::new();
        let mut log = self
            .cancel_open_job(&tx, &wf, &actor, &action.reason, &mut outbox)
            .await?;
        let target = match &step.next {
            rondo_engine::Next::Enter(e) => e.node.clone(),
            _ => String::new(),
        };
        log.push(NewEvent {
            node: Some(node.clone()),
            message: Some(action.reason.clone()),
            data: Some(json!({ "from": node, "to": target })),
            ..NewEvent::new(kind, actor.as_str())
        });
        let apply = Apply {
            workflow: Target::of(&wf),
            graph: &graph,
            step,
            vars: wf.vars.clone(),
            from: Some(&node),
            previous_key: previous_key.as_deref(),
            events: log,
            actor: &actor,
            clear_deadline: false,
            eager: None,
        };
        self.apply(&tx, apply, &mut outbox).await?;
        self.commit(tx, outbox).await?;
        drop(client);
        self.get_workflow(id).await
    }

    /// Cancels the workflow's open job, if any; returns the history to record.
    pub(crate) async fn cancel_open_job(
        &self,
        tx: &impl GenericClient,
        wf: &WorkflowRecord,
        actor: &str,
        reason: &str,
        outbox: &mut Outbox,
    ) -> Result<Vec<NewEvent>, ServiceError> {
        let Some(job_id) = wf.current_job_id else {
            return Ok(Vec::new());
        };
        let Some(job) = jobs::get(tx, job_id).await? else {
            return Ok(Vec::new());
        };
        if !matches!(job.state, JobState::Ready | JobState::Active) {
            return Ok(Vec::new());
        }
        outbox.writes.end_job(JobEnd {
            id: job.id,
            state: JobState::Cancelled,
            label: None,
            output: None,
            ended_by: actor.to_owned(),
        });
        Ok(vec![NewEvent {
            node: Some(job.node.clone()),
            job_id: Some(job.id),
            attempt: Some(job.attempt),
            message: Some(non_empty(reason, "cancelled")),
            ..NewEvent::new(EventKind::JobCancelled, actor)
        }])
    }
}

/// `operator:<name>` for a named operator, else the fallback.
pub(crate) fn actor_of(operator: &str, fallback: &str) -> String {
    if operator.trim().is_empty() {
        fallback.to_owned()
    } else {
        format!("operator:{}", operator.trim())
    }
}

pub(crate) fn not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!("workflow {id} not found"))
}

fn non_empty(s: &str, fallback: &str) -> String {
    if s.trim().is_empty() {
        fallback.to_owned()
    } else {
        s.to_owned()
    }
}

/// Page size with the API's default and cap.
pub(crate) fn page_size(requested: u32) -> i64 {
    i64::from(match requested {
        0 => 100,
        n => n.min(1000),
    })
}

fn parse_page_token(token: &str) -> Result<(DateTime<Utc>, Uuid), ServiceError> {
    let bad = || {
        ServiceError::InvalidArgument(format!(
            "`page_token` `{token}` is not valid; pass the token of the previous page as is"
        ))
    };
    let (micros, id) = token.split_once('_').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, id.parse().map_err(|_| bad())?))
}
