//! The append-only history: events are inserted, never updated.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use super::StoreError;

/// Kind of a history event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The workflow was created.
    WorkflowStarted,
    /// A node was entered and its job created.
    NodeEntered,
    /// A worker leased a job.
    JobLeased,
    /// A heartbeat carried progress.
    JobProgress,
    /// A job ended with a label and the edge was chosen.
    JobCompleted,
    /// A lease ran out.
    JobTimedOut,
    /// A result arrived after the lease was lost.
    LateResult,
    /// A retry edge was taken.
    RetryScheduled,
    /// A retry budget ran out.
    RetryExhausted,
    /// A terminal label was taken.
    WorkflowCompleted,
    /// The workflow was cancelled.
    WorkflowCancelled,
    /// The workflow became STUCK.
    WorkflowStuck,
    /// The deadline passed.
    DeadlinePassed,
    /// An operator moved the workflow.
    OperatorMoved,
    /// An operator retried the current node.
    OperatorRetried,
    /// A job was cancelled.
    JobCancelled,
    /// A worker gave a job back.
    JobReleased,
}

const KINDS: [(EventKind, &str); 17] = [
    (EventKind::WorkflowStarted, "workflow_started"),
    (EventKind::NodeEntered, "node_entered"),
    (EventKind::JobLeased, "job_leased"),
    (EventKind::JobProgress, "job_progress"),
    (EventKind::JobCompleted, "job_completed"),
    (EventKind::JobTimedOut, "job_timed_out"),
    (EventKind::LateResult, "late_result"),
    (EventKind::RetryScheduled, "retry_scheduled"),
    (EventKind::RetryExhausted, "retry_exhausted"),
    (EventKind::WorkflowCompleted, "workflow_completed"),
    (EventKind::WorkflowCancelled, "workflow_cancelled"),
    (EventKind::WorkflowStuck, "workflow_stuck"),
    (EventKind::DeadlinePassed, "deadline_passed"),
    (EventKind::OperatorMoved, "operator_moved"),
    (EventKind::OperatorRetried, "operator_retried"),
    (EventKind::JobCancelled, "job_cancelled"),
    (EventKind::JobReleased, "job_released"),
];

impl EventKind {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("unknown", |(_, s)| s)
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        KINDS
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(k, _)| *k)
            .ok_or_else(|| StoreError::Corrupt(format!("event kind `{s}`")))
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// Node concerned.
    pub node: Option<String>,
    /// Label concerned.
    pub label: Option<String>,
    /// Job concerned.
    pub job_id: Option<i64>,
    /// Attempt of the job.
    pub attempt: Option<i32>,
    /// Who acted.
    pub actor: String,
    /// Human-readable detail.
    pub message: Option<String>,
    /// Structured detail.
    pub data: Option<Value>,
}

impl NewEvent {
    /// An event with only a kind and an actor; fill the rest with struct update syntax.
    pub fn new(kind: EventKind, actor: impl Into<String>) -> Self {
        NewEvent {
            kind,
            node: None,
            label: None,
            job_id: None,
            attempt: None,
            actor: actor.into(),
            message: None,
            data: None,
        }
    }
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Position in the history (increasing).
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The event.
    pub event: NewEvent,
}

const LIST: &str = "SELECT id, at, kind, node, label, job_id, attempt, actor, message, data \
     FROM events WHERE workflow_id = $1 AND id > $2 ORDER BY id LIMIT $3";

/// Reads a workflow's history after `after_id`, oldest first.
pub async fn list(
    client: &impl GenericClient,
    workflow_id: Uuid,
    after_id: i64,
    limit: i64,
) -> Result<Vec<EventRecord>, StoreError> {
    let stmt = client.prepare_cached(LIST).await?;
    let rows = client
        .query(&stmt, &[&workflow_id, &after_id, &limit])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(EventRecord {
                id: r.try_get(0)?,
                at: r.try_get(1)?,
                event: NewEvent {
                    kind: EventKind::parse(r.try_get(2)?)?,
                    node: r.try_get(3)?,
                    label: r.try_get(4)?,
                    job_id: r.try_get(5)?,
                    attempt: r.try_get(6)?,
                    actor: r.try_get(7)?,
                    message: r.try_get(8)?,
                    data: r.try_get(9)?,
                },
            })
        })
        .collect()
}
