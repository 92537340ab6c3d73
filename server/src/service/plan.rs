//! The step, decided. A [`StepPlan`] is computed from the workflow as read (locked, or warm
//! from memory), its graph and the request: the job the step ends, the job it creates (still
//! without id or lease), the workflow's new row, the history, the notices and what to count.
//! Rule: pure. No IO, no clock, no dispatcher, no metrics, no randomness of its own (jitter
//! is an argument): a plan can be computed many times at no cost, and a path that falls back
//! (warm to locked, a failed batch to one request at a time) simply decides again. `step`
//! stages plans for one transaction; what they count and hand over happens after the commit,
//! from what was written.

use std::sync::Arc;
use std::time::Duration;

use rondo_engine::advance::RetryNote;
use rondo_engine::model::{LABEL_ERROR, LABEL_TIMEOUT, NodeDef, RESERVED_LABELS};
use rondo_engine::{EngineError, Graph, Next, Position, Step, advance};
use serde_json::{Value, json};

use super::complete::refusals::{cancelled, lease_lost};
use super::error::ServiceError;
use super::types::{Applied, Completion, Pending};
use super::{Limits, millis, to_i32};
use crate::store::batch::{JobEnd, WorkflowUpdate};
use crate::store::events::{EventKind, NewEvent};
use crate::store::jobs::{JobState, LockedJob};
use crate::store::listen::Notice;
use crate::store::workflows::{WorkflowRecord, WorkflowStatus};

/// The workflow a step applies to, with what a worker leased its next job needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Workflow id.
    pub id: uuid::Uuid,
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

/// What the engine decided for one workflow, with what [`plan`] needs to write it down.
pub(crate) struct Apply<'a> {
    /// The workflow.
    pub workflow: Target<'a>,
    /// Its graph.
    pub graph: &'a Arc<Graph>,
    /// What the engine decided.
    pub step: Step,
    /// The workflow's vars after the step.
    pub vars: Value,
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

/// A step decided and not yet written.
pub(crate) struct StepPlan<'a> {
    /// The workflow.
    pub workflow: Target<'a>,
    /// Its graph, for the job a worker leases.
    pub graph: &'a Arc<Graph>,
    /// The job the step ends, if any.
    pub ended: Option<JobEnd>,
    /// The job the step creates, if any.
    pub entry: Option<PlannedJob>,
    /// The workflow's new row; its `current_job_id` is set when the entry gets its id.
    pub update: WorkflowUpdate,
    /// History up to the routing; the entry's own events follow once it has an id.
    pub events: Vec<NewEvent>,
    /// Notices of the workflow stopping.
    pub notices: Vec<Notice>,
    /// What to count once the step is written.
    pub counts: Vec<Count>,
    /// Where the workflow stands afterwards.
    pub applied: Applied,
}

/// A job a step creates, before it has an id or a lease.
pub(crate) struct PlannedJob {
    /// Node entered.
    pub node: String,
    /// Its operation; None for a human node.
    pub operation: Option<String>,
    /// Attempt number.
    pub attempt: i32,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Node the workflow came from.
    pub from_node: Option<String>,
    /// Delay before it may be handed out.
    pub delay: Duration,
    /// Lease length, or the human node's reminder clock.
    pub timeout_ms: Option<i64>,
    /// Required heartbeat interval.
    pub heartbeat_ms: Option<i64>,
    /// Who entered the node.
    pub actor: String,
    /// The worker that takes it with its completion's answer (eager dispatch): it asked, it
    /// runs the operation, and the job is due at once.
    pub eager: Option<String>,
}

/// A metric a written step moves; recorded after the commit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Count {
    /// A job of this operation was created.
    Created(String),
    /// A job of this operation ended with this label.
    Completed {
        /// Operation.
        operation: String,
        /// Label.
        label: String,
    },
    /// A retry edge was taken from this node within its budget.
    Retried(String),
    /// A step took this long to decide and stage.
    Transition(Duration),
}

/// Turns an engine step into a plan.
pub(crate) fn plan<'a>(
    a: Apply<'a>,
    default_lease: Duration,
) -> Result<StepPlan<'a>, ServiceError> {
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
    let mut counts = Vec::new();
    match &step.retry {
        Some(RetryNote::Scheduled { retry, max, delay }) => {
            counts.push(Count::Retried(from.unwrap_or_default().to_owned()));
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
        id: workflow.id,
        status: WorkflowStatus::Running,
        current_node: Some(step.position.node.clone()),
        vars,
        step_count,
        streaks,
        outcome: None,
        incident: None,
        current_job_id: None,
        clear_deadline,
    };
    let mut notices = Vec::new();
    let mut entry = None;
    let applied = match step.next {
        Next::Enter(e) => {
            let node = graph.node(&e.node).ok_or_else(|| {
                ServiceError::Internal(format!("engine entered unknown node `{}`", e.node))
            })?;
            let idempotency_key = match previous_key {
                Some(key) if e.same_key => key.to_owned(),
                _ => format!("{}:{}:{step_count}", workflow.id, e.node),
            };
            let due_now = e.delay.is_zero();
            let eager = node
                .operation
                .as_ref()
                .zip(eager)
                .filter(|(op, eager)| due_now && eager.operations.contains(op))
                .map(|(_, eager)| eager.worker.to_owned());
            if let Some(operation) = &node.operation {
                counts.push(Count::Created(operation.clone()));
            }
            entry = Some(PlannedJob {
                node: e.node.clone(),
                operation: node.operation.clone(),
                attempt: to_i32(e.attempt),
                idempotency_key,
                from_node: from.map(str::to_owned),
                delay: e.delay,
                timeout_ms: timeout_ms(node, default_lease),
                heartbeat_ms: node.heartbeat.map(millis),
                actor: actor.to_owned(),
                eager,
            });
            Applied {
                status: WorkflowStatus::Running,
                node: Some(e.node),
            }
        }
        Next::Complete { outcome } => {
            update.status = WorkflowStatus::Completed;
            update.current_node = None;
            events.push(NewEvent {
                label: Some(outcome.clone()),
                message: Some(format!("completed with `{outcome}`")),
                ..NewEvent::new(EventKind::WorkflowCompleted, actor)
            });
            update.outcome = Some(outcome);
            notices.push(Notice::WorkflowChanged(workflow.id));
            Applied {
                status: WorkflowStatus::Completed,
                node: None,
            }
        }
        Next::Stuck(incident) => {
            update.status = WorkflowStatus::Stuck;
            events.push(NewEvent {
                node: Some(incident.node.clone()),
                label: incident.label.clone(),
                message: Some(incident.message.clone()),
                data: Some(json!({ "reason": incident.reason.as_str() })),
                ..NewEvent::new(EventKind::WorkflowStuck, "engine")
            });
            update.incident = Some((
                incident.reason.as_str().to_owned(),
                incident.message,
                incident.node,
                incident.label,
            ));
            notices.push(Notice::WorkflowChanged(workflow.id));
            Applied {
                status: WorkflowStatus::Stuck,
                node: Some(step.position.node.clone()),
            }
        }
    };
    Ok(StepPlan {
        workflow,
        graph,
        ended: None,
        entry,
        update,
        events,
        notices,
        counts,
        applied,
    })
}

/// Lease of a node's jobs: its timeout, or the default lease for operation nodes; a human
/// node without a timeout has no clock.
fn timeout_ms(node: &NodeDef, default_lease: Duration) -> Option<i64> {
    match (node.timeout, &node.operation) {
        (Some(t), _) => Some(millis(t)),
        (None, Some(_)) => Some(millis(default_lease)),
        (None, None) => None,
    }
}

/// How a job ends, for [`plan_end`].
pub(crate) struct EndJob<'a> {
    /// The label.
    pub label: &'a str,
    /// Output merged into vars.
    pub output: &'a Value,
    /// Who ended it.
    pub actor: &'a str,
    /// Failure message or operator comment.
    pub message: Option<String>,
    /// True when a worker or operator chose the label, so it must be an offered one; false
    /// for the labels the engine chooses (`timeout`, and `error` for FailJob).
    pub must_be_offered: bool,
    /// The worker asking for its next job at once, if any.
    pub eager: Option<Eager<'a>>,
}

/// Ends the locked job with a label and advances its workflow. `jitter` (from 0 to 1)
/// spreads a retry's delay.
pub(crate) fn plan_end<'a>(
    locked: &'a LockedJob,
    graph: &'a Arc<Graph>,
    end: EndJob<'a>,
    limits: &Limits,
    jitter: f64,
) -> Result<StepPlan<'a>, ServiceError> {
    let LockedJob { job, workflow, .. } = locked;
    if end.must_be_offered && RESERVED_LABELS.contains(&end.label) {
        return Err(ServiceError::InvalidArgument(format!(
            "node `{}`: label `{}` is reserved for the engine; answer with one of: {} (report \
             failures with FailJob)",
            job.node,
            end.label,
            graph
                .node(&job.node)
                .map(|n| n.offered_labels().join(", "))
                .unwrap_or_default()
        )));
    }
    let step =
        advance::advance(graph, &position_of(workflow), end.label, jitter).map_err(
            |e| match e {
                EngineError::LabelNotOffered { .. } if end.must_be_offered => {
                    ServiceError::InvalidArgument(e.to_string())
                }
                other => ServiceError::Internal(other.to_string()),
            },
        )?;
    let mut vars = workflow.vars.clone();
    if let (Value::Object(vars), Value::Object(output)) = (&mut vars, end.output) {
        for (k, v) in output {
            vars.insert(k.clone(), v.clone());
        }
        if end.label == LABEL_ERROR
            && let Some(message) = &end.message
        {
            vars.insert("last_error".into(), Value::String(message.clone()));
        }
    }
    limits.check_size("vars", &vars)?;
    let kind = if end.label == LABEL_TIMEOUT && !end.must_be_offered {
        EventKind::JobTimedOut
    } else {
        EventKind::JobCompleted
    };
    let event = NewEvent {
        node: Some(job.node.clone()),
        label: Some(end.label.to_owned()),
        job_id: Some(job.id),
        attempt: Some(job.attempt),
        message: end.message.clone(),
        data: (end.output.as_object().is_some_and(|o| !o.is_empty()))
            .then(|| json!({ "output": end.output })),
        ..NewEvent::new(kind, end.actor)
    };
    let apply = Apply {
        workflow: Target::of(workflow),
        graph,
        step,
        vars,
        from: Some(&job.node),
        previous_key: Some(&job.idempotency_key),
        events: vec![event],
        actor: "engine",
        clear_deadline: false,
        eager: end.eager,
    };
    let mut plan = plan(apply, limits.default_lease)?;
    plan.ended = Some(JobEnd {
        id: job.id,
        state: JobState::Completed,
        label: Some(end.label.to_owned()),
        output: Some(end.output.clone()),
        ended_by: end.actor.to_owned(),
    });
    if let Some(operation) = &job.operation {
        plan.counts.push(Count::Completed {
            operation: operation.clone(),
            label: end.label.to_owned(),
        });
    }
    Ok(plan)
}

/// How a worker's result for a locked job is judged.
pub(crate) enum Judged<'a> {
    /// It ends the job: apply this step.
    Step(Box<StepPlan<'a>>),
    /// It repeats the result the job already ended with: answer from the workflow as it
    /// stands. `eager_again` names the job its first answer may have carried, to hand over
    /// again rather than leave to time out.
    Repeat {
        /// The workflow's status.
        status: WorkflowStatus,
        /// Its node.
        node: Option<String>,
        /// The job to hand the worker again, if it is still leased to it.
        eager_again: Option<i64>,
    },
    /// It is refused; `late` records a result that arrived after its lease was lost.
    Refused {
        /// Why.
        error: ServiceError,
        /// The late result, to record even though nothing else is written.
        late: Option<NewEvent>,
    },
}

/// Judges a worker's result against its job and workflow as read (under lock, or as this
/// server wrote them), at the database time `locked.now`.
pub(crate) fn judge<'a>(
    pending: &'a Pending,
    locked: &'a LockedJob,
    graph: &'a Arc<Graph>,
    limits: &Limits,
    jitter: f64,
) -> Judged<'a> {
    let Pending {
        job_id,
        token,
        completion,
        output,
        next_operations,
    } = pending;
    let (job_id, token) = (*job_id, *token);
    let label = match completion {
        Completion::Label { label, .. } => label.as_str(),
        Completion::Failure { .. } => LABEL_ERROR,
    };
    let LockedJob { job, workflow, now } = locked;
    let worker = job.worker.as_deref().unwrap_or("worker");
    let live = job.state == JobState::Active
        && job.lease_token == Some(token)
        && job.lease_ran_out(*now) != Some(true);
    if !live {
        let error = match job.state {
            JobState::Cancelled => cancelled(job_id),
            JobState::Completed
                if job.lease_token == Some(token) && job.ended_by.as_deref() == Some(worker) =>
            {
                if job.label.as_deref() == Some(label) && job.output.as_ref() == Some(output) {
                    let eager_again = workflow
                        .current_job_id
                        .filter(|&id| id != job_id && !next_operations.is_empty());
                    return Judged::Repeat {
                        status: workflow.status,
                        node: workflow.current_node.clone(),
                        eager_again,
                    };
                }
                return Judged::Refused {
                    error: ServiceError::FailedPrecondition(format!(
                        "job {job_id} was already completed with label `{}`; a job is completed once",
                        job.label.clone().unwrap_or_default()
                    )),
                    late: None,
                };
            }
            _ if job.lease_token != Some(token) => {
                lease_lost(job_id, "the lease token does not match")
            }
            _ => lease_lost(job_id, "the lease ran out before the result arrived"),
        };
        let late =
            (job.lease_token == Some(token) && job.state != JobState::Cancelled).then(|| {
                NewEvent {
                    node: Some(job.node.clone()),
                    label: Some(label.to_owned()),
                    job_id: Some(job_id),
                    attempt: Some(job.attempt),
                    message: Some(
                        "result arrived after the lease was lost; recorded, not applied".into(),
                    ),
                    data: Some(json!({ "output": output, "worker": worker })),
                    ..NewEvent::new(EventKind::LateResult, worker)
                }
            });
        return Judged::Refused { error, late };
    }
    let (message, must_be_offered) = match completion {
        Completion::Failure { message } => (Some(message.clone()), false),
        Completion::Label { .. } => (None, true),
    };
    let end = EndJob {
        label,
        output,
        actor: worker,
        message,
        must_be_offered,
        eager: (!next_operations.is_empty()).then_some(Eager {
            worker,
            operations: next_operations,
        }),
    };
    match plan_end(locked, graph, end, limits, jitter) {
        Ok(plan) => Judged::Step(Box::new(plan)),
        Err(error) => Judged::Refused { error, late: None },
    }
}

/// The engine's view of where a workflow stands.
pub(crate) fn position_of(wf: &WorkflowRecord) -> Position {
    Position {
        node: wf.current_node.clone().unwrap_or_default(),
        step_count: u32::try_from(wf.step_count).unwrap_or(0),
        streaks: wf.streaks.clone(),
    }
}
