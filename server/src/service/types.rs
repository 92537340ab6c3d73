//! The types the use cases share: what a worker is handed, how it ends a job and what it is
//! answered, a workflow as shown, and the requests waiting in a batch. They live here, apart
//! from the code that makes them, so that completion, start, dispatch and the reads import
//! one module instead of one another.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use rondo_engine::Graph;

use super::error::ServiceError;
use crate::store::jobs::{JobRecord, JobWithWorkflow};
use crate::store::workflows::{WorkflowRecord, WorkflowStatus};

/// A leased job as handed to a worker.
#[derive(Debug, Clone)]
pub struct LeasedJob {
    /// The claimed row with its workflow's data.
    pub claimed: JobWithWorkflow,
    /// The node's static params.
    pub params: Map<String, Value>,
    /// Labels the worker may answer with.
    pub labels: Vec<String>,
    /// How often to heartbeat.
    pub heartbeat_interval: Option<Duration>,
}

impl LeasedJob {
    /// A claimed job with what its worker needs from its node in `graph`.
    pub(crate) fn new(graph: &Graph, claimed: JobWithWorkflow) -> Result<LeasedJob, ServiceError> {
        let node = graph.node(&claimed.job.node).ok_or_else(|| {
            ServiceError::Internal(format!(
                "job {} at unknown node `{}`",
                claimed.job.id, claimed.job.node
            ))
        })?;
        Ok(LeasedJob {
            params: node.params.clone(),
            labels: node.offered_labels(),
            heartbeat_interval: node.heartbeat.or(claimed
                .job
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))),
            claimed,
        })
    }
}

/// How a worker ends a job.
#[derive(Debug, Clone)]
pub enum Completion {
    /// With one of the offered labels and an output.
    Label {
        /// The label.
        label: String,
        /// Output JSON text.
        output: String,
    },
    /// With a failure it could not classify (the reserved label `error`).
    Failure {
        /// What went wrong.
        message: String,
    },
}

/// Result of a completion.
#[derive(Debug, Clone)]
pub struct Completed {
    /// True when it repeated an earlier identical completion.
    pub duplicate: bool,
    /// Workflow status afterwards.
    pub status: WorkflowStatus,
    /// Node afterwards.
    pub node: Option<String>,
    /// The next job, leased to the same worker (eager dispatch).
    pub next_job: Option<LeasedJob>,
}

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
}

/// Where the workflow stands after a step.
#[derive(Debug, Clone)]
pub struct Applied {
    /// New status.
    pub status: WorkflowStatus,
    /// Node it is at (None once completed).
    pub node: Option<String>,
}

/// A workflow with its current (or last) job.
#[derive(Debug, Clone)]
pub struct WorkflowView {
    /// The workflow.
    pub workflow: WorkflowRecord,
    /// Its current or last job.
    pub job: Option<JobRecord>,
}

/// Result of a start.
#[derive(Debug, Clone)]
pub struct Started {
    /// The workflow.
    pub view: WorkflowView,
    /// True when an idempotency key matched an existing workflow.
    pub existing: bool,
}

/// A checked start request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewStart<'a> {
    /// Graph name.
    pub graph: &'a str,
    /// Graph version; 0 for the latest.
    pub version: u32,
    /// Input, a JSON object.
    pub input: &'a Value,
    /// Idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// Delayed start.
    pub start_at: Option<DateTime<Utc>>,
    /// Schedule starting it.
    pub schedule_id: Option<&'a str>,
    /// Who starts it, recorded on the `workflow_started` event.
    pub actor: &'a str,
}

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
    /// The start as the writers take it.
    pub fn as_new(&self) -> NewStart<'_> {
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

/// A workflow to read, batched with the other reads waiting (see `group`): an
/// `AwaitWorkflow` reads its workflow when it arrives, so under load many arrive together.
pub(crate) struct Read(pub Uuid);
