//! The records as stored, the column lists their queries select, and the readers of the rows
//! those queries return, joined rows included. Every table module selects through these lists,
//! so a record, its column list and its reader change together; a test checks each list
//! against the database.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rondo_engine::advance::Streak;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::StoreError;

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker.
    Ready,
    /// Leased to a worker, or waiting in the operator inbox.
    Active,
    /// Ended with a label.
    Completed,
    /// Cancelled.
    Cancelled,
}

impl JobState {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "ready" => JobState::Ready,
            "active" => JobState::Active,
            "completed" => JobState::Completed,
            "cancelled" => JobState::Cancelled,
            other => return Err(StoreError::Corrupt(format!("job state `{other}`"))),
        })
    }
}

/// One job as stored.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Id.
    pub id: i64,
    /// Workflow id.
    pub workflow_id: Uuid,
    /// Node.
    pub node: String,
    /// Operation; None for human nodes.
    pub operation: Option<String>,
    /// State.
    pub state: JobState,
    /// Attempt number.
    pub attempt: i32,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Node the workflow came from.
    pub from_node: Option<String>,
    /// Not handed out before.
    pub available_at: DateTime<Utc>,
    /// Lease length (or human reminder clock) in milliseconds.
    pub timeout_ms: Option<i64>,
    /// Required heartbeat interval in milliseconds.
    pub heartbeat_ms: Option<i64>,
    /// Lease token.
    pub lease_token: Option<Uuid>,
    /// End of the lease.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Worker holding it.
    pub worker: Option<String>,
    /// Last progress percent.
    pub progress_percent: Option<i32>,
    /// Last progress message.
    pub progress_message: Option<String>,
    /// Label it ended with.
    pub label: Option<String>,
    /// Output it ended with.
    pub output: Option<Value>,
    /// Who ended it.
    pub ended_by: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Columns selected for a [`JobRecord`], prefixed `j.`.
macro_rules! job_columns {
    () => {
        "j.id, j.workflow_id, j.node, j.operation, j.state, j.attempt, j.idempotency_key, \
         j.from_node, j.available_at, j.timeout_ms, j.heartbeat_ms, j.lease_token, \
         j.lease_expires_at, j.worker, j.progress_percent, j.progress_message, j.label, \
         j.output, j.ended_by, j.created_at"
    };
}

pub(crate) use job_columns;

impl JobRecord {
    /// Reads a row selected with `job_columns!()`.
    pub fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(JobRecord {
            id: row.try_get("id")?,
            workflow_id: row.try_get("workflow_id")?,
            node: row.try_get("node")?,
            operation: row.try_get("operation")?,
            state: JobState::parse(row.try_get("state")?)?,
            attempt: row.try_get("attempt")?,
            idempotency_key: row.try_get("idempotency_key")?,
            from_node: row.try_get("from_node")?,
            available_at: row.try_get("available_at")?,
            timeout_ms: row.try_get("timeout_ms")?,
            heartbeat_ms: row.try_get("heartbeat_ms")?,
            lease_token: row.try_get("lease_token")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            worker: row.try_get("worker")?,
            progress_percent: row.try_get("progress_percent")?,
            progress_message: row.try_get("progress_message")?,
            label: row.try_get("label")?,
            output: row.try_get("output")?,
            ended_by: row.try_get("ended_by")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

#[cfg(test)]
impl JobRecord {
    /// A job of operation `a` leased to worker `w` with `token` until `lease_expires_at`, for
    /// unit tests.
    pub fn leased_for_test(
        id: i64,
        workflow_id: Uuid,
        token: Uuid,
        lease_expires_at: DateTime<Utc>,
    ) -> Self {
        let now = Utc::now();
        JobRecord {
            id,
            workflow_id,
            node: "n".into(),
            operation: Some("a".into()),
            state: JobState::Active,
            attempt: 1,
            idempotency_key: "k".into(),
            from_node: None,
            available_at: now,
            timeout_ms: Some(30_000),
            heartbeat_ms: None,
            lease_token: Some(token),
            lease_expires_at: Some(lease_expires_at),
            worker: Some("w".into()),
            progress_percent: None,
            progress_message: None,
            label: None,
            output: None,
            ended_by: None,
            created_at: now,
        }
    }
}

/// A job with what a worker or operator needs from its workflow.
#[derive(Debug, Clone)]
pub struct JobWithWorkflow {
    /// The job.
    pub job: JobRecord,
    /// Graph name.
    pub graph_name: String,
    /// Graph version.
    pub graph_version: i32,
    /// The workflow's vars.
    pub vars: Value,
    /// The workflow's input.
    pub input: Value,
}

impl JobWithWorkflow {
    /// Reads `job_columns!()` followed by the workflow's graph name, version, vars and input.
    pub(crate) fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(JobWithWorkflow {
            job: JobRecord::from_row(row)?,
            graph_name: row.try_get("graph_name")?,
            graph_version: row.try_get("graph_version")?,
            vars: row.try_get("vars")?,
            input: row.try_get("input")?,
        })
    }
}

/// A job read together with its locked workflow and the database clock. Both rows are locked:
/// a statement that waited for the workflow's lock then sees the job as the transaction it
/// waited for left it, not as it was when the statement began (PostgreSQL re-reads only the
/// rows a `FOR UPDATE` locks), so a completion racing an identical one is judged against the
/// ended job, never against the workflow's next step.
#[derive(Debug, Clone)]
pub struct LockedJob {
    /// The job.
    pub job: JobRecord,
    /// Its workflow, locked until the transaction ends.
    pub workflow: WorkflowRecord,
    /// The database's `now()`, for lease checks.
    pub now: DateTime<Utc>,
}

impl LockedJob {
    /// Reads `job_columns!()`, `workflow_columns!()`, then the database clock.
    pub(crate) fn from_row(row: &Row) -> Result<Self, StoreError> {
        // The two column lists share names (`id`, `created_at`), so the workflow's half is
        // read by position.
        Ok(LockedJob {
            job: JobRecord::from_row(row)?,
            workflow: WorkflowRecord::from_row_offset(row, JOB_COLUMN_COUNT)?,
            now: row.try_get(JOB_COLUMN_COUNT + WORKFLOW_COLUMN_COUNT)?,
        })
    }
}

impl JobRecord {
    /// The lease rule, written once here and once in SQL ([`lease_live`]): an active job's
    /// lease (a human job's reminder clock) runs out at its expiry, not after. Some(true) once
    /// it has run out at `now`, Some(false) while it runs, None for a job that is not active
    /// or whose clock does not run.
    pub fn lease_ran_out(&self, now: DateTime<Utc>) -> Option<bool> {
        if self.state != JobState::Active {
            return None;
        }
        self.lease_expires_at.map(|expires| expires <= now)
    }
}

/// The lease rule in SQL (see [`JobRecord::lease_ran_out`]): the job `j` is active and its
/// lease still runs.
macro_rules! lease_live {
    () => {
        "j.state = 'active' AND j.lease_expires_at > now()"
    };
}

pub(crate) use lease_live;

/// The lease rule in SQL (see [`JobRecord::lease_ran_out`]): the job `j` is active and its
/// lease has run out.
macro_rules! lease_ran_out {
    () => {
        "j.state = 'active' AND j.lease_expires_at <= now()"
    };
}

pub(crate) use lease_ran_out;

/// Number of columns in `job_columns!()`.
pub(crate) const JOB_COLUMN_COUNT: usize = 20;

/// Lifecycle state of a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowStatus {
    /// Waiting for its `start_at`.
    Pending,
    /// Walking its graph.
    Running,
    /// Took a terminal label.
    Completed,
    /// Cancelled.
    Cancelled,
    /// Needs an operator.
    Stuck,
}

impl WorkflowStatus {
    /// True unless PENDING or RUNNING: the workflow will not move on without an operator
    /// (what `AwaitWorkflow` and a start with a wait wait for).
    pub fn is_done(self) -> bool {
        !matches!(self, WorkflowStatus::Pending | WorkflowStatus::Running)
    }

    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Pending => "pending",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Cancelled => "cancelled",
            WorkflowStatus::Stuck => "stuck",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => WorkflowStatus::Pending,
            "running" => WorkflowStatus::Running,
            "completed" => WorkflowStatus::Completed,
            "cancelled" => WorkflowStatus::Cancelled,
            "stuck" => WorkflowStatus::Stuck,
            other => return Err(StoreError::Corrupt(format!("workflow status `{other}`"))),
        })
    }

    /// True for COMPLETED and CANCELLED, which never change again.
    pub fn is_final(self) -> bool {
        matches!(self, WorkflowStatus::Completed | WorkflowStatus::Cancelled)
    }
}

/// An incident recorded on a STUCK workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    /// Machine-readable reason (`no_route`, `retries_exhausted`, ...).
    pub reason: String,
    /// Message for people.
    pub message: String,
    /// Node concerned.
    pub node: String,
    /// Label concerned, if any.
    pub label: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// One workflow as stored.
#[derive(Debug, Clone)]
pub struct WorkflowRecord {
    /// Id.
    pub id: Uuid,
    /// Graph name.
    pub graph_name: String,
    /// Graph version.
    pub graph_version: i32,
    /// Status.
    pub status: WorkflowStatus,
    /// Node the workflow is at.
    pub current_node: Option<String>,
    /// Input given at start.
    pub input: Value,
    /// The workflow's memory.
    pub vars: Value,
    /// Steps taken.
    pub step_count: i32,
    /// Open retry streaks by node.
    pub streaks: BTreeMap<String, Streak>,
    /// Terminal label, once completed.
    pub outcome: Option<String>,
    /// Idempotency key given at start.
    pub idempotency_key: Option<String>,
    /// Hash of the start request.
    pub request_hash: Option<String>,
    /// Schedule that started it.
    pub schedule_id: Option<String>,
    /// Delayed start.
    pub start_at: Option<DateTime<Utc>>,
    /// Deadline, until it fires.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Set while STUCK.
    pub incident: Option<IncidentRecord>,
    /// The job in hand.
    pub current_job_id: Option<i64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it completed or was cancelled.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Columns selected for a [`WorkflowRecord`], prefixed `w.`: a macro so queries stay
/// compile-time constants built with `concat!`.
macro_rules! workflow_columns {
    () => {
        "w.id, w.graph_name, w.graph_version, w.status, w.current_node, w.input, w.vars, \
         w.step_count, w.streaks, w.outcome, w.idempotency_key, w.request_hash, w.schedule_id, \
         w.start_at, w.deadline_at, w.incident_reason, w.incident_message, w.incident_node, \
         w.incident_label, w.incident_at, w.current_job_id, w.created_at, w.updated_at, w.ended_at"
    };
}
pub(crate) use workflow_columns;

impl WorkflowRecord {
    /// Reads a row selected with `workflow_columns!()` first.
    pub fn from_row(row: &Row) -> Result<Self, StoreError> {
        Self::from_row_offset(row, 0)
    }

    /// Reads the `workflow_columns!()` that start at column `at` (after another record's
    /// columns, whose names overlap, so columns are read by position).
    pub fn from_row_offset(row: &Row, at: usize) -> Result<Self, StoreError> {
        let streaks: Value = row.try_get(at + 8)?;
        let streaks = serde_json::from_value(streaks)
            .map_err(|e| StoreError::Corrupt(format!("workflow streaks: {e}")))?;
        let incident = match row.try_get::<_, Option<String>>(at + 15)? {
            Some(reason) => Some(IncidentRecord {
                reason,
                message: row
                    .try_get::<_, Option<String>>(at + 16)?
                    .unwrap_or_default(),
                node: row
                    .try_get::<_, Option<String>>(at + 17)?
                    .unwrap_or_default(),
                label: row.try_get(at + 18)?,
                at: row
                    .try_get::<_, Option<DateTime<Utc>>>(at + 19)?
                    .unwrap_or_default(),
            }),
            None => None,
        };
        Ok(WorkflowRecord {
            id: row.try_get(at)?,
            graph_name: row.try_get(at + 1)?,
            graph_version: row.try_get(at + 2)?,
            status: WorkflowStatus::parse(row.try_get(at + 3)?)?,
            current_node: row.try_get(at + 4)?,
            input: row.try_get(at + 5)?,
            vars: row.try_get(at + 6)?,
            step_count: row.try_get(at + 7)?,
            streaks,
            outcome: row.try_get(at + 9)?,
            idempotency_key: row.try_get(at + 10)?,
            request_hash: row.try_get(at + 11)?,
            schedule_id: row.try_get(at + 12)?,
            start_at: row.try_get(at + 13)?,
            deadline_at: row.try_get(at + 14)?,
            incident,
            current_job_id: row.try_get(at + 20)?,
            created_at: row.try_get(at + 21)?,
            updated_at: row.try_get(at + 22)?,
            ended_at: row.try_get(at + 23)?,
        })
    }
}

/// Reads a row of `job_columns!()` (NULL when there is no job), then `workflow_columns!()`.
/// The two lists share names, so the workflow's half is read by position.
pub(crate) fn with_job_from_row(
    row: &Row,
) -> Result<(WorkflowRecord, Option<JobRecord>), StoreError> {
    let job = match row.try_get::<_, Option<i64>>(0)? {
        Some(_) => Some(JobRecord::from_row(row)?),
        None => None,
    };
    let workflow = WorkflowRecord::from_row_offset(row, JOB_COLUMN_COUNT)?;
    Ok((workflow, job))
}

/// Number of columns in `workflow_columns!()`.
pub const WORKFLOW_COLUMN_COUNT: usize = 24;

/// A workflow as a statement left it: the row, its version, and its current job.
#[derive(Debug, Clone)]
pub struct Written {
    /// The workflow as stored.
    pub workflow: WorkflowRecord,
    /// The row's version (`xmin`, the id of the transaction that wrote it): any later write
    /// of the row, by any server, changes it.
    pub version: i64,
    /// The workflow's current job as stored (its last one once it has ended).
    pub job: Option<JobRecord>,
}

impl Written {
    /// Reads `job_columns!()` (NULL when there is no job), `workflow_columns!()`, then the
    /// version.
    pub(crate) fn from_row(row: &Row) -> Result<Self, StoreError> {
        let (workflow, job) = with_job_from_row(row)?;
        let version = row.try_get(JOB_COLUMN_COUNT + WORKFLOW_COLUMN_COUNT)?;
        Ok(Written {
            workflow,
            version,
            job,
        })
    }
}

/// The columns of a [`Written`] row, as [`Written::from_row`] reads them, from `j` (the
/// current job) and `w` (the workflow with its version, `returning_versioned!` in `batch`).
macro_rules! written_columns {
    () => {
        concat!(
            $crate::store::rows::job_columns!(),
            ", ",
            $crate::store::rows::workflow_columns!(),
            ", w.version"
        )
    };
}

pub(crate) use written_columns;

/// Each column list selects what its reader reads, by count and by name: a column added to a
/// record and to its list but not to the count, or to the table but not to the list, fails here.
#[cfg(all(test, feature = "testing"))]
mod columns {
    use super::*;
    use crate::testing::TestDb;

    /// The columns `select` returns, by name.
    async fn columns(client: &deadpool_postgres::Object, select: &str) -> Vec<String> {
        let stmt = client.prepare(select).await.unwrap();
        stmt.columns().iter().map(|c| c.name().to_owned()).collect()
    }

    /// The columns of `table`, in order.
    async fn table(client: &deadpool_postgres::Object, table: &str) -> Vec<String> {
        columns(client, &format!("SELECT * FROM {table}")).await
    }

    #[tokio::test]
    async fn every_column_list_matches_its_count_its_reader_and_its_table() {
        let db = TestDb::new().await;
        let pool = super::super::pool(&db.url, 1).unwrap();
        let client = pool.get().await.unwrap();

        let job = columns(&client, concat!("SELECT ", job_columns!(), " FROM jobs j")).await;
        assert_eq!(job.len(), JOB_COLUMN_COUNT);
        // Every column a job row has is selected, except those only the database reads.
        let only_stored = ["leased_at", "ended_at"];
        for name in table(&client, "jobs").await {
            assert!(
                job.contains(&name) || only_stored.contains(&name.as_str()),
                "jobs.{name} is not in job_columns!()"
            );
        }

        let workflow = columns(
            &client,
            concat!("SELECT ", workflow_columns!(), " FROM workflows w"),
        )
        .await;
        assert_eq!(workflow.len(), WORKFLOW_COLUMN_COUNT);
        for name in table(&client, "workflows").await {
            assert!(
                workflow.contains(&name),
                "workflows.{name} is not in workflow_columns!()"
            );
        }
        // The workflow's half is read by position: check the positions the reader uses.
        for (at, name) in [
            (0, "id"),
            (3, "status"),
            (8, "streaks"),
            (15, "incident_reason"),
            (19, "incident_at"),
            (20, "current_job_id"),
            (23, "ended_at"),
        ] {
            assert_eq!(workflow[at], name, "workflow column {at}");
        }

        let written = columns(
            &client,
            concat!(
                "SELECT ",
                written_columns!(),
                " FROM (SELECT *, xmin::text::bigint AS version FROM workflows) w \
                 LEFT JOIN jobs j ON j.id = w.current_job_id"
            ),
        )
        .await;
        assert_eq!(written.len(), JOB_COLUMN_COUNT + WORKFLOW_COLUMN_COUNT + 1);
        assert_eq!(written[JOB_COLUMN_COUNT + WORKFLOW_COLUMN_COUNT], "version");

        let locked = columns(
            &client,
            concat!(
                "SELECT ",
                job_columns!(),
                ", ",
                workflow_columns!(),
                ", now() FROM jobs j JOIN workflows w ON w.id = j.workflow_id"
            ),
        )
        .await;
        assert_eq!(locked.len(), JOB_COLUMN_COUNT + WORKFLOW_COLUMN_COUNT + 1);
    }
}
