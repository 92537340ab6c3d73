//! Domain records to protobuf messages.

use chrono::{DateTime, Utc};
use rondo_gen::v1;

use crate::service::types::{LeasedJob, WorkflowView};
use crate::store::events::{EventKind, EventRecord};
use crate::store::jobs::{JobRecord, JobState};
use crate::store::workflows::{WorkflowRecord, WorkflowStatus};

/// A timestamp on the wire.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A wire timestamp as a time; `None` when out of range.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A duration on the wire.
pub fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A wire duration; negative ones are clamped to zero.
pub fn from_duration(d: &prost_types::Duration) -> std::time::Duration {
    std::time::Duration::try_from(*d).unwrap_or_default()
}

/// Status on the wire.
pub fn status(s: WorkflowStatus) -> v1::WorkflowStatus {
    match s {
        WorkflowStatus::Pending => v1::WorkflowStatus::Pending,
        WorkflowStatus::Running => v1::WorkflowStatus::Running,
        WorkflowStatus::Completed => v1::WorkflowStatus::Completed,
        WorkflowStatus::Cancelled => v1::WorkflowStatus::Cancelled,
        WorkflowStatus::Stuck => v1::WorkflowStatus::Stuck,
    }
}

/// A status filter from the wire.
pub fn status_filter(s: v1::WorkflowStatus) -> Option<WorkflowStatus> {
    match s {
        v1::WorkflowStatus::Unspecified => None,
        v1::WorkflowStatus::Pending => Some(WorkflowStatus::Pending),
        v1::WorkflowStatus::Running => Some(WorkflowStatus::Running),
        v1::WorkflowStatus::Completed => Some(WorkflowStatus::Completed),
        v1::WorkflowStatus::Cancelled => Some(WorkflowStatus::Cancelled),
        v1::WorkflowStatus::Stuck => Some(WorkflowStatus::Stuck),
    }
}

fn job_state(s: JobState) -> v1::JobState {
    match s {
        JobState::Ready => v1::JobState::Ready,
        JobState::Active => v1::JobState::Active,
        JobState::Completed => v1::JobState::Completed,
        JobState::Cancelled => v1::JobState::Cancelled,
    }
}

fn incident_reason(s: &str) -> v1::IncidentReason {
    match rondo_engine::IncidentReason::parse(s) {
        Some(rondo_engine::IncidentReason::NoRoute) => v1::IncidentReason::NoRoute,
        Some(rondo_engine::IncidentReason::RetriesExhausted) => {
            v1::IncidentReason::RetriesExhausted
        }
        Some(rondo_engine::IncidentReason::StepLimit) => v1::IncidentReason::StepLimit,
        Some(rondo_engine::IncidentReason::Deadline) => v1::IncidentReason::Deadline,
        Some(rondo_engine::IncidentReason::EngineError) => v1::IncidentReason::EngineError,
        None => v1::IncidentReason::Unspecified,
    }
}

/// A job summary on the wire.
pub fn job_summary(j: &JobRecord) -> v1::JobSummary {
    v1::JobSummary {
        id: j.id,
        node: j.node.clone(),
        operation: j.operation.clone().unwrap_or_default(),
        human: j.operation.is_none(),
        state: job_state(j.state).into(),
        attempt: u32::try_from(j.attempt).unwrap_or(0),
        idempotency_key: j.idempotency_key.clone(),
        available_at: Some(timestamp(j.available_at)),
        worker: j.worker.clone().unwrap_or_default(),
        lease_expires_at: j.lease_expires_at.map(timestamp),
        progress: j.progress_percent.map(|p| v1::Progress {
            percent: u32::try_from(p).unwrap_or(0),
            message: j.progress_message.clone().unwrap_or_default(),
        }),
        created_at: Some(timestamp(j.created_at)),
    }
}

/// A workflow on the wire (with its job when known).
pub fn workflow(w: &WorkflowRecord, job: Option<&JobRecord>) -> v1::Workflow {
    v1::Workflow {
        id: w.id.to_string(),
        graph: w.graph_name.clone(),
        graph_version: u32::try_from(w.graph_version).unwrap_or(0),
        status: status(w.status).into(),
        current_node: w.current_node.clone().unwrap_or_default(),
        input: w.input.to_string(),
        vars: w.vars.to_string(),
        step_count: u32::try_from(w.step_count).unwrap_or(0),
        outcome: w.outcome.clone().unwrap_or_default(),
        idempotency_key: w.idempotency_key.clone().unwrap_or_default(),
        start_at: w.start_at.map(timestamp),
        deadline_at: w.deadline_at.map(timestamp),
        created_at: Some(timestamp(w.created_at)),
        updated_at: Some(timestamp(w.updated_at)),
        ended_at: w.ended_at.map(timestamp),
        incident: w.incident.as_ref().map(|i| v1::Incident {
            reason: incident_reason(&i.reason).into(),
            message: i.message.clone(),
            node: i.node.clone(),
            label: i.label.clone().unwrap_or_default(),
            at: Some(timestamp(i.at)),
        }),
        current_job: job.map(job_summary),
        schedule_id: w.schedule_id.clone().unwrap_or_default(),
    }
}

/// A workflow view on the wire.
pub fn view(v: &WorkflowView) -> v1::Workflow {
    workflow(&v.workflow, v.job.as_ref())
}

fn event_kind(k: EventKind) -> v1::EventKind {
    match k {
        EventKind::WorkflowStarted => v1::EventKind::WorkflowStarted,
        EventKind::NodeEntered => v1::EventKind::NodeEntered,
        EventKind::JobLeased => v1::EventKind::JobLeased,
        EventKind::JobProgress => v1::EventKind::JobProgress,
        EventKind::JobCompleted => v1::EventKind::JobCompleted,
        EventKind::JobTimedOut => v1::EventKind::JobTimedOut,
        EventKind::LateResult => v1::EventKind::LateResult,
        EventKind::RetryScheduled => v1::EventKind::RetryScheduled,
        EventKind::RetryExhausted => v1::EventKind::RetryExhausted,
        EventKind::WorkflowCompleted => v1::EventKind::WorkflowCompleted,
        EventKind::WorkflowCancelled => v1::EventKind::WorkflowCancelled,
        EventKind::WorkflowStuck => v1::EventKind::WorkflowStuck,
        EventKind::DeadlinePassed => v1::EventKind::DeadlinePassed,
        EventKind::OperatorMoved => v1::EventKind::OperatorMoved,
        EventKind::OperatorRetried => v1::EventKind::OperatorRetried,
        EventKind::JobCancelled => v1::EventKind::JobCancelled,
        EventKind::JobReleased => v1::EventKind::JobReleased,
    }
}

/// A history event on the wire.
pub fn event(e: &EventRecord) -> v1::Event {
    v1::Event {
        seq: e.id,
        at: Some(timestamp(e.at)),
        kind: event_kind(e.event.kind).into(),
        node: e.event.node.clone().unwrap_or_default(),
        label: e.event.label.clone().unwrap_or_default(),
        job_id: e.event.job_id.unwrap_or_default(),
        attempt: e
            .event
            .attempt
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or_default(),
        actor: e.event.actor.clone(),
        message: e.event.message.clone().unwrap_or_default(),
        data: e
            .event
            .data
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// A leased job on the wire.
pub fn leased_job(l: &LeasedJob) -> v1::Job {
    let j = &l.claimed.job;
    v1::Job {
        id: j.id,
        workflow_id: j.workflow_id.to_string(),
        graph: l.claimed.graph_name.clone(),
        graph_version: u32::try_from(l.claimed.graph_version).unwrap_or(0),
        node: j.node.clone(),
        operation: j.operation.clone().unwrap_or_default(),
        params: serde_json::Value::Object(l.params.clone()).to_string(),
        vars: l.claimed.vars.to_string(),
        input: l.claimed.input.to_string(),
        labels: l.labels.clone(),
        attempt: u32::try_from(j.attempt).unwrap_or(0),
        idempotency_key: j.idempotency_key.clone(),
        lease_token: j.lease_token.map(|t| t.to_string()).unwrap_or_default(),
        lease_expires_at: j.lease_expires_at.map(timestamp),
        heartbeat_interval: l.heartbeat_interval.map(duration),
        created_at: Some(timestamp(j.created_at)),
    }
}
