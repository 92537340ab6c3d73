//! Applies an engine [`Step`] inside the caller's transaction: create the next job or finish
//! the workflow, write the workflow row, append history, and notify. Every path that moves a
//! workflow (completion, failure, timeout, operator action, deadline, delayed start) ends here,
//! so they all keep the same invariants.

use std::sync::Arc;

use chrono::Utc;
use rondo_engine::advance::RetryNote;
use rondo_engine::model::NodeDef;
use rondo_engine::{Graph, Next, Step};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Lease, Outbox, Recipient};
use super::{Service, ServiceError, millis, to_i32};
use crate::store::GenericClient;
use crate::store::batch::{NewJob, WorkflowUpdate};
use crate::store::events::{EventKind, NewEvent};
use crate::store::listen::Notice;
use crate::store::workflows::{WorkflowRecord, WorkflowStatus};

/// The workflow a step applies to, with what a worker leased its next job needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Workflow id.
    pub id: Uuid,
    /// Graph name.
    pub graph_name: &'a str,
    /// Graph version.
    pub graph_version: i32,
    /// The workflow's input.
    pub input: &'a Value,
}

impl<'a> Target<'a> {
    /// The target of a stored workflow.
    pub fn of(workflow: &'a WorkflowRecord) -> Self {
        Target {
            id: workflow.id,
            graph_name: &workflow.graph_name,
            graph_version: workflow.graph_version,
            input: &workflow.input,
        }
    }
}

/// Everything needed to apply one step to one (locked) workflow.
pub(crate) struct Apply<'a> {
    /// The workflow.
    pub workflow: Target<'a>,
    /// Its graph.
    pub graph: &'a Arc<Graph>,
    /// What the engine decided.
    pub step: Step,
    /// The workflow's vars after the step.
    pub vars: &'a Value,
    /// Node the workflow leaves (for the next job's `from_node`).
    pub from: Option<&'a str>,
    /// Idempotency key of the job that ended, reused when the engine continues its streak.
    pub previous_key: Option<&'a str>,
    /// Events that happened before the routing (job completed, operator moved, ...).
    pub events: Vec<NewEvent>,
    /// Who caused the step.
    pub actor: &'a str,
    /// True when the step fires the deadline, so it fires only once.
    pub clear_deadline: bool,
    /// A worker asking for the next job (eager dispatch), if any.
    pub eager: Option<Eager<'a>>,
}

/// A worker that will run the next job at once if it handles its operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eager<'a> {
    /// The worker's identity.
    pub worker: &'a str,
    /// The operations it handles.
    pub operations: &'a [String],
}

/// Where the workflow stands after a step.
#[derive(Debug, Clone)]
pub struct Applied {
    /// New status.
    pub status: WorkflowStatus,
    /// Node it is at (None once completed).
    pub node: Option<String>,
}

impl Service {
    /// Applies a step; the caller holds the workflow's row lock, and commits afterwards with
    /// [`Service::commit`], which sends the writes, notifications and leases gathered in
    /// `outbox`. A job available at once goes to the eager worker if it runs the operation,
    /// else to a poller waiting here, else to the queue with a notification.
    pub(crate) async fn apply(
        &self,
        tx: &impl GenericClient,
        a: Apply<'_>,
        outbox: &mut Outbox,
    ) -> Result<Applied, ServiceError> {
        let Apply {
            workflow,
            graph,
            step,
            vars,
            from,
            previous_key,
            mut events,
            actor,
            clear_deadline,
            eager,
        } = a;
        match &step.retry {
            Some(RetryNote::Scheduled { retry, max, delay }) => {
                self.metrics().retried(from.unwrap_or_default());
                events.push(NewEvent {
                    node: from.map(str::to_owned),
                    message: Some(format!("retry {retry} of {max}")),
                    data: Some(json!({ "retry": retry, "max": max, "delay_ms": millis(*delay) })),
                    ..NewEvent::new(EventKind::RetryScheduled, "engine")
                });
            }
            Some(RetryNote::Exhausted { max }) => events.push(NewEvent {
                node: from.map(str::to_owned),
                message: Some(format!("retry budget of {max} spent")),
                data: Some(json!({ "max": max })),
                ..NewEvent::new(EventKind::RetryExhausted, "engine")
            }),
            None => {}
        }
        let workflow_id = workflow.id;
        let streaks = serde_json::to_value(&step.position.streaks)
            .map_err(|e| ServiceError::Internal(format!("encoding streaks: {e}")))?;
        let step_count = to_i32(step.position.step_count);
        let mut update = WorkflowUpdate {
            id: workflow_id,
            status: WorkflowStatus::Running,
            current_node: Some(step.position.node.clone()),
            vars: vars.clone(),
            step_count,
            streaks,
            outcome: None,
            incident: None,
            current_job_id: None,
            clear_deadline,
        };
        let applied = match &step.next {
            Next::Enter(entry) => {
                let node = graph.node(&entry.node).ok_or_else(|| {
                    ServiceError::Internal(format!("engine entered unknown node `{}`", entry.node))
                })?;
                let key = match previous_key {
                    Some(key) if entry.same_key => key.to_owned(),
                    _ => format!("{workflow_id}:{}:{step_count}", entry.node),
                };
                let operation = node.operation.as_ref().filter(|_| entry.delay.is_zero());
                let lease_to =
                    operation.and_then(|op| match eager.filter(|e| e.operations.contains(op)) {
                        Some(e) => Some((e.worker.to_owned(), Recipient::Caller)),
                        None => self
                            .dispatch()
                            .reserve(op)
                            .map(|r| (r.worker().to_owned(), Recipient::Poller(r))),
                    });
                let job_id = self.next_job_id(tx).await?;
                let attempt = to_i32(entry.attempt);
                let job = NewJob {
                    id: job_id,
                    workflow_id,
                    node: entry.node.clone(),
                    operation: node.operation.clone(),
                    attempt,
                    idempotency_key: key.clone(),
                    from_node: from.map(str::to_owned),
                    delay_ms: millis(entry.delay),
                    timeout_ms: self.timeout_ms(node),
                    heartbeat_ms: node.heartbeat.map(millis),
                    lease: lease_to
                        .as_ref()
                        .map(|(worker, _)| (worker.clone(), Uuid::new_v4())),
                };
                outbox.writes.insert_job(job);
                if let Some(operation) = &node.operation {
                    self.metrics().job_created(operation);
                    if lease_to.is_none() {
                        outbox.push(Notice::JobReady {
                            operation: operation.clone(),
                            available_at: Utc::now() + entry.delay,
                            count: 1,
                        });
                    }
                }
                events.push(NewEvent {
                    node: Some(entry.node.clone()),
                    job_id: Some(job_id),
                    attempt: Some(attempt),
                    data: Some(json!({
                        "from": from,
                        "delay_ms": millis(entry.delay),
                        "idempotency_key": key,
                    })),
                    ..NewEvent::new(EventKind::NodeEntered, actor)
                });
                if let Some((worker, to)) = lease_to {
                    let how = match to {
                        Recipient::Caller => "leased with the previous step's completion",
                        Recipient::Poller(_) => "handed to a waiting poller",
                    };
                    events.push(NewEvent {
                        node: Some(entry.node.clone()),
                        job_id: Some(job_id),
                        attempt: Some(attempt),
                        message: Some(how.into()),
                        ..NewEvent::new(EventKind::JobLeased, worker)
                    });
                    outbox.leases.push(Lease {
                        job_id,
                        graph: Arc::clone(graph),
                        context: (
                            workflow.graph_name.to_owned(),
                            workflow.graph_version,
                            vars.clone(),
                            workflow.input.clone(),
                        ),
                        to,
                    });
                }
                update.current_job_id = Some(job_id);
                Applied {
                    status: WorkflowStatus::Running,
                    node: Some(entry.node.clone()),
                }
            }
            Next::Complete { outcome } => {
                update.status = WorkflowStatus::Completed;
                update.current_node = None;
                update.outcome = Some(outcome.clone());
                events.push(NewEvent {
                    label: Some(outcome.clone()),
                    message: Some(format!("completed with `{outcome}`")),
                    ..NewEvent::new(EventKind::WorkflowCompleted, actor)
                });
                outbox.push(Notice::WorkflowChanged(workflow_id));
                Applied {
                    status: WorkflowStatus::Completed,
                    node: None,
                }
            }
            Next::Stuck(incident) => {
                update.status = WorkflowStatus::Stuck;
                update.incident = Some((
                    incident.reason.as_str().to_owned(),
                    incident.message.clone(),
                    incident.node.clone(),
                    incident.label.clone(),
                ));
                events.push(NewEvent {
                    node: Some(incident.node.clone()),
                    label: incident.label.clone(),
                    message: Some(incident.message.clone()),
                    data: Some(json!({ "reason": incident.reason.as_str() })),
                    ..NewEvent::new(EventKind::WorkflowStuck, "engine")
                });
                outbox.push(Notice::WorkflowChanged(workflow_id));
                Applied {
                    status: WorkflowStatus::Stuck,
                    node: Some(step.position.node.clone()),
                }
            }
        };
        outbox.writes.update_workflow(update);
        outbox.writes.append(workflow_id, events);
        Ok(applied)
    }

    /// Lease of a node's jobs: its timeout, or the default lease for operation nodes; a human
    /// node without a timeout has no clock.
    fn timeout_ms(&self, node: &NodeDef) -> Option<i64> {
        match (node.timeout, &node.operation) {
            (Some(t), _) => Some(millis(t)),
            (None, Some(_)) => Some(millis(self.limits.default_lease)),
            (None, None) => None,
        }
    }
}
