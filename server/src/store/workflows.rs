//! Workflow rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use super::StoreError;
pub use super::rows::{IncidentRecord, WORKFLOW_COLUMN_COUNT, WorkflowRecord, WorkflowStatus};
use super::rows::{JobRecord, job_columns, with_job_from_row, workflow_columns};

/// A new workflow to insert.
#[derive(Debug)]
pub struct NewWorkflow<'a> {
    /// Id.
    pub id: Uuid,
    /// Graph name.
    pub graph_name: &'a str,
    /// Graph version.
    pub graph_version: i32,
    /// Input.
    pub input: &'a Value,
    /// Idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// Hash of the start request.
    pub request_hash: Option<&'a str>,
    /// Schedule that started it.
    pub schedule_id: Option<&'a str>,
    /// Delayed start.
    pub start_at: Option<DateTime<Utc>>,
    /// Graph deadline in milliseconds, counted from the start.
    pub deadline_ms: Option<i64>,
}

const INSERT_MANY: &str = concat!(
    "INSERT INTO workflows AS w (id, graph_name, graph_version, status, \
       input, vars, idempotency_key, request_hash, schedule_id, start_at, deadline_at) \
     SELECT u.id, u.graph_name, u.graph_version, \
       CASE WHEN u.start_at > now() THEN 'pending' ELSE 'running' END, u.input, u.input, u.key, \
       u.hash, u.schedule_id, u.start_at, \
       greatest(now(), coalesce(u.start_at, now())) + u.deadline_ms * interval '1 millisecond' \
     FROM unnest($1::uuid[], $2::text[], $3::int[], $4::jsonb[], $5::text[], $6::text[], \
       $7::text[], $8::timestamptz[], $9::bigint[]) \
       AS u(id, graph_name, graph_version, input, key, hash, schedule_id, start_at, deadline_ms) \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING ",
    workflow_columns!()
);

/// Inserts workflows in one statement, each PENDING when its start time is ahead of the
/// database clock and RUNNING otherwise; returns those inserted. One whose idempotency key
/// exists already is left out (nothing is written for it).
pub async fn insert_many(
    client: &impl GenericClient,
    rows: &[NewWorkflow<'_>],
) -> Result<Vec<WorkflowRecord>, StoreError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let graphs: Vec<&str> = rows.iter().map(|r| r.graph_name).collect();
    let versions: Vec<i32> = rows.iter().map(|r| r.graph_version).collect();
    let inputs: Vec<&Value> = rows.iter().map(|r| r.input).collect();
    let keys: Vec<Option<&str>> = rows.iter().map(|r| r.idempotency_key).collect();
    let hashes: Vec<Option<&str>> = rows.iter().map(|r| r.request_hash).collect();
    let schedules: Vec<Option<&str>> = rows.iter().map(|r| r.schedule_id).collect();
    let start_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.start_at).collect();
    let deadlines: Vec<Option<i64>> = rows.iter().map(|r| r.deadline_ms).collect();
    let stmt = client.prepare_cached(INSERT_MANY).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &ids, &graphs, &versions, &inputs, &keys, &hashes, &schedules, &start_at,
                &deadlines,
            ],
        )
        .await?;
    rows.iter().map(WorkflowRecord::from_row).collect()
}

const GET: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    " FROM workflows w WHERE w.id = $1"
);
/// Workflows with their current (or last) job, in one snapshot. The job's columns come first
/// and are NULL when there is no job.
const GET_WITH_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    workflow_columns!(),
    " FROM workflows w LEFT JOIN jobs j ON j.id = w.current_job_id WHERE w.id = ANY($1)"
);

/// Reads workflows by id, each with its current (or last) job; missing ones are left out.
pub async fn get_with_jobs(
    client: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<(WorkflowRecord, Option<JobRecord>)>, StoreError> {
    let stmt = client.prepare_cached(GET_WITH_JOBS).await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    rows.iter().map(with_job_from_row).collect()
}

const GET_BY_KEY: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    " FROM workflows w WHERE w.idempotency_key = $1"
);
const LOCK: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    ", now() FROM workflows w WHERE w.id = $1 FOR UPDATE"
);

/// Reads one workflow.
pub async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<WorkflowRecord>, StoreError> {
    let stmt = client.prepare_cached(GET).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(WorkflowRecord::from_row)
        .transpose()
}

/// Reads one workflow by idempotency key.
pub async fn get_by_key(
    client: &impl GenericClient,
    key: &str,
) -> Result<Option<WorkflowRecord>, StoreError> {
    let stmt = client.prepare_cached(GET_BY_KEY).await?;
    client
        .query_opt(&stmt, &[&key])
        .await?
        .as_ref()
        .map(WorkflowRecord::from_row)
        .transpose()
}

/// Locks one workflow row for a state change (the workflow row is the lock every transition
/// of the workflow and its jobs takes first); returns it with the database clock.
pub async fn lock(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<(WorkflowRecord, DateTime<Utc>)>, StoreError> {
    let stmt = client.prepare_cached(LOCK).await?;
    let Some(row) = client.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some((
        WorkflowRecord::from_row(&row)?,
        row.try_get(WORKFLOW_COLUMN_COUNT)?,
    )))
}

/// Filters for [`list`].
#[derive(Debug, Default)]
pub struct ListFilter<'a> {
    /// Only this graph.
    pub graph: Option<&'a str>,
    /// Only this status.
    pub status: Option<WorkflowStatus>,
    /// Only at this node.
    pub node: Option<&'a str>,
    /// Continue strictly after this (created_at, id), newest first.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Page size.
    pub limit: i64,
}

const LIST: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    " FROM workflows w \
     WHERE ($1::text IS NULL OR w.graph_name = $1) \
       AND ($2::text IS NULL OR w.status = $2) \
       AND ($3::text IS NULL OR w.current_node = $3) \
       AND ($4::timestamptz IS NULL OR (w.created_at, w.id) < ($4, $5)) \
     ORDER BY w.created_at DESC, w.id DESC LIMIT $6"
);

/// Lists workflows, newest first.
pub async fn list(
    client: &impl GenericClient,
    f: &ListFilter<'_>,
) -> Result<Vec<WorkflowRecord>, StoreError> {
    let stmt = client.prepare_cached(LIST).await?;
    let (after_at, after_id) = f
        .after
        .map_or((None, None), |(at, id)| (Some(at), Some(id)));
    let status = f.status.map(WorkflowStatus::as_str);
    let rows = client
        .query(
            &stmt,
            &[&f.graph, &status, &f.node, &after_at, &after_id, &f.limit],
        )
        .await?;
    rows.iter().map(WorkflowRecord::from_row).collect()
}

const CANCEL: &str = "UPDATE workflows SET status = 'cancelled', incident_reason = NULL, \
     incident_message = NULL, incident_node = NULL, incident_label = NULL, incident_at = NULL, \
     updated_at = now(), ended_at = now() WHERE id = $1";

/// Marks a workflow CANCELLED (the caller holds its lock and has cancelled its job).
pub async fn cancel(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(CANCEL).await?;
    client.execute(&stmt, &[&id]).await?;
    Ok(())
}

const DUE_PENDING: &str = "SELECT id FROM workflows WHERE status = 'pending' AND start_at <= now() ORDER BY start_at LIMIT $1";

/// PENDING workflows whose start time has come.
pub async fn due_pending(client: &impl GenericClient, limit: i64) -> Result<Vec<Uuid>, StoreError> {
    let stmt = client.prepare_cached(DUE_PENDING).await?;
    let rows = client.query(&stmt, &[&limit]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

const DUE_DEADLINES: &str = "SELECT id FROM workflows WHERE status IN ('running', 'stuck') \
     AND deadline_at <= now() ORDER BY deadline_at LIMIT $1";

/// RUNNING or STUCK workflows whose deadline has passed and not yet fired.
pub async fn due_deadlines(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let stmt = client.prepare_cached(DUE_DEADLINES).await?;
    let rows = client.query(&stmt, &[&limit]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

const COUNT_BY_STATUS: &str = "SELECT status, count(*) FROM workflows GROUP BY status";

/// Number of workflows per status, for metrics.
pub async fn count_by_status(
    client: &impl GenericClient,
) -> Result<Vec<(String, i64)>, StoreError> {
    let stmt = client.prepare_cached(COUNT_BY_STATUS).await?;
    let rows = client.query(&stmt, &[]).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
