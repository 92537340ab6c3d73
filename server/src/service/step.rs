//! Applies an engine [`Step`] inside the caller's transaction: create the next job or finish
//! the workflow, write the workflow row, append history, and notify. Every path that moves a
//! workflow (completion, failure, timeout, operator action, deadline, delayed start) ends here,
//! so they all keep the same invariants.

use rondo_engine::advance::RetryNote;
use rondo_engine::model::NodeDef;
use rondo_engine::{Graph, Next, Step};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Outbox;
use super::{Service, ServiceError, millis, to_i32};
use crate::store::GenericClient;
use crate::store::events::{EventKind, NewEvent};
use crate::store::jobs::{self, NewJob};
use crate::store::listen::Notice;
use crate::store::workflows::{self, WorkflowStatus, WorkflowUpdate};

/// Everything needed to apply one step to one (locked) workflow.
pub(crate) struct Apply<'a> {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Its graph.
    pub graph: &'a Graph,
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
    /// The job created, if any.
    pub job_id: Option<i64>,
    /// True when that job was leased at once to the eager worker.
    pub leased: bool,
}

impl Service {
    /// Applies a step; the caller holds the workflow's row lock, and commits afterwards with
    /// [`Service::commit`], which sends the notifications collected in `outbox`.
    pub(crate) async fn apply(
        &self,
        tx: &impl GenericClient,
        a: Apply<'_>,
        outbox: &mut Outbox,
    ) -> Result<Applied, ServiceError> {
        let Apply {
            workflow_id,
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
        let streaks = serde_json::to_value(&step.position.streaks)
            .map_err(|e| ServiceError::Internal(format!("encoding streaks: {e}")))?;
        let step_count = to_i32(step.position.step_count);
        let mut update = WorkflowUpdate {
            id: workflow_id,
            status: WorkflowStatus::Running,
            current_node: Some(&step.position.node),
            vars,
            step_count,
            streaks: &streaks,
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
                let lease_to = eager
                    .filter(|e| {
                        entry.delay.is_zero()
                            && node
                                .operation
                                .as_ref()
                                .is_some_and(|op| e.operations.contains(op))
                    })
                    .map(|e| e.worker);
                let job = NewJob {
                    workflow_id,
                    node: &entry.node,
                    operation: node.operation.as_deref(),
                    attempt: to_i32(entry.attempt),
                    idempotency_key: &key,
                    from_node: from,
                    delay_ms: millis(entry.delay),
                    timeout_ms: self.timeout_ms(node),
                    heartbeat_ms: node.heartbeat.map(millis),
                    lease_to,
                };
                let (job_id, available_at) = jobs::insert(tx, &job).await?;
                if let Some(operation) = &node.operation {
                    self.metrics().job_created(operation);
                    if lease_to.is_none() {
                        outbox.push(Notice::JobReady {
                            operation: operation.clone(),
                            available_at,
                            count: 1,
                        });
                    }
                }
                events.push(NewEvent {
                    node: Some(entry.node.clone()),
                    job_id: Some(job_id),
                    attempt: Some(job.attempt),
                    data: Some(json!({
                        "from": from,
                        "delay_ms": millis(entry.delay),
                        "idempotency_key": key,
                    })),
                    ..NewEvent::new(EventKind::NodeEntered, actor)
                });
                if let Some(worker) = lease_to {
                    events.push(NewEvent {
                        node: Some(entry.node.clone()),
                        job_id: Some(job_id),
                        attempt: Some(job.attempt),
                        message: Some("leased with the previous step's completion".into()),
                        ..NewEvent::new(EventKind::JobLeased, worker)
                    });
                }
                update.current_job_id = Some(job_id);
                Applied {
                    status: WorkflowStatus::Running,
                    node: Some(entry.node.clone()),
                    job_id: Some(job_id),
                    leased: lease_to.is_some(),
                }
            }
            Next::Complete { outcome } => {
                update.status = WorkflowStatus::Completed;
                update.current_node = None;
                update.outcome = Some(outcome);
                events.push(NewEvent {
                    label: Some(outcome.clone()),
                    message: Some(format!("completed with `{outcome}`")),
                    ..NewEvent::new(EventKind::WorkflowCompleted, actor)
                });
                outbox.push(Notice::WorkflowChanged(workflow_id));
                Applied {
                    status: WorkflowStatus::Completed,
                    node: None,
                    job_id: None,
                    leased: false,
                }
            }
            Next::Stuck(incident) => {
                update.status = WorkflowStatus::Stuck;
                update.incident = Some((
                    incident.reason.as_str(),
                    &incident.message,
                    &incident.node,
                    incident.label.as_deref(),
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
                    job_id: None,
                    leased: false,
                }
            }
        };
        workflows::update(tx, &update).await?;
        crate::store::events::append(tx, workflow_id, &events).await?;
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
