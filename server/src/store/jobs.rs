//! Job rows: creating, claiming under `FOR UPDATE SKIP LOCKED`, heartbeats, ending.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;
pub use super::rows::{JobRecord, JobState, JobWithWorkflow, LockedJob};
use super::rows::{job_columns, lease_live, lease_ran_out, workflow_columns};

/// Lease length: `timeout` from now, or with a heartbeat interval, the next heartbeat's due
/// time bounded by the attempt's whole `timeout`.
macro_rules! lease_expiry {
    () => {
        "CASE WHEN j.heartbeat_ms IS NULL THEN now() + j.timeout_ms * interval '1 millisecond' \
         ELSE least(now() + j.heartbeat_ms * interval '1 millisecond', \
                    coalesce(j.leased_at, now()) + j.timeout_ms * interval '1 millisecond') END"
    };
}

/// Leases ready jobs in order, job `n` to the `n`th worker of `$2`. Each operation is read
/// in `jobs_ready` order on its own: with `operation = ANY(...)` PostgreSQL cannot read the
/// index in order, and with a deep queue it sorts the whole queue for every claim instead.
const CLAIM: &str = concat!(
    "WITH picked AS ( \
       SELECT j.id FROM unnest($1::text[]) AS op(name), LATERAL ( \
         SELECT id, available_at FROM jobs \
         WHERE state = 'ready' AND operation = op.name AND available_at <= now() \
         ORDER BY available_at, id LIMIT cardinality($2::text[]) FOR UPDATE SKIP LOCKED) j \
       ORDER BY j.available_at, j.id LIMIT cardinality($2::text[])), \
     numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM picked), \
     assigned AS ( \
       SELECT numbered.id, s.worker, s.n FROM numbered \
       JOIN unnest($2::text[]) WITH ORDINALITY AS s(worker, n) ON s.n = numbered.n), \
     leased AS ( \
       UPDATE jobs j SET state = 'active', lease_token = gen_random_uuid(), worker = a.worker, \
         leased_at = now(), progress_percent = NULL, progress_message = NULL, \
         lease_expires_at = ",
    lease_expiry!(),
    " FROM assigned a WHERE j.id = a.id RETURNING j.*), \
     logged AS ( \
       INSERT INTO events (workflow_id, kind, node, job_id, attempt, actor) \
       SELECT workflow_id, 'job_leased', node, id, attempt, worker FROM leased) \
     SELECT a.n, ",
    job_columns!(),
    ", w.graph_name, w.graph_version, w.vars, w.input \
     FROM leased j JOIN assigned a ON a.id = j.id JOIN workflows w ON w.id = j.workflow_id \
     ORDER BY a.n"
);

/// Leases up to one ready job of `operations` per entry of `workers`, in one statement,
/// recording the lease events. Returns each job with the index of the worker it went to.
pub async fn claim(
    client: &impl GenericClient,
    operations: &[String],
    workers: &[&str],
) -> Result<Vec<(usize, JobWithWorkflow)>, StoreError> {
    let stmt = client.prepare_cached(CLAIM).await?;
    let rows = client.query(&stmt, &[&operations, &workers]).await?;
    rows.iter()
        .map(|row| {
            let n: i64 = row.try_get(0)?;
            let slot = usize::try_from(n - 1)
                .map_err(|_| StoreError::Corrupt(format!("claim slot {n}")))?;
            Ok((slot, JobWithWorkflow::from_row(row)?))
        })
        .collect()
}

const HEARTBEAT: &str = concat!(
    "UPDATE jobs j SET lease_expires_at = ",
    lease_expiry!(),
    ", progress_percent = coalesce($3, j.progress_percent), \
       progress_message = coalesce($4, j.progress_message) \
     WHERE j.id = $1 AND j.lease_token = $2 AND ",
    lease_live!(),
    " RETURNING ",
    job_columns!()
);

/// Extends a live lease and records progress; returns the job as it is now, or `None` when
/// the lease is not live.
pub async fn heartbeat(
    client: &impl GenericClient,
    id: i64,
    token: Uuid,
    progress: Option<(i32, &str)>,
) -> Result<Option<JobRecord>, StoreError> {
    let stmt = client.prepare_cached(HEARTBEAT).await?;
    let (percent, message) = progress.map_or((None, None), |(p, m)| (Some(p), Some(m)));
    let row = client
        .query_opt(&stmt, &[&id, &token, &percent, &message])
        .await?;
    row.as_ref().map(JobRecord::from_row).transpose()
}

const GET: &str = concat!("SELECT ", job_columns!(), " FROM jobs j WHERE j.id = $1");
const GET_WITH_WORKFLOW: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", w.graph_name, w.graph_version, w.vars, w.input \
     FROM jobs j JOIN workflows w ON w.id = j.workflow_id WHERE j.id = $1"
);

/// Reads one job with its workflow's context.
pub async fn get_with_workflow(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<JobWithWorkflow>, StoreError> {
    let stmt = client.prepare_cached(GET_WITH_WORKFLOW).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(JobWithWorkflow::from_row)
        .transpose()
}

/// Reads one job.
pub async fn get(client: &impl GenericClient, id: i64) -> Result<Option<JobRecord>, StoreError> {
    let stmt = client.prepare_cached(GET).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(JobRecord::from_row)
        .transpose()
}

const LOCK_WITH_WORKFLOW: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    workflow_columns!(),
    ", now() FROM jobs j JOIN workflows w ON w.id = j.workflow_id WHERE j.id = $1 FOR UPDATE OF w, j"
);

/// Reads a job and locks it and its workflow row (see [`LockedJob`]), in one round trip.
pub async fn lock_with_workflow(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<LockedJob>, StoreError> {
    let stmt = client.prepare_cached(LOCK_WITH_WORKFLOW).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(LockedJob::from_row)
        .transpose()
}

const LOCK_MANY: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", ",
    workflow_columns!(),
    ", now() FROM jobs j JOIN workflows w ON w.id = j.workflow_id WHERE j.id = ANY($1) \
     ORDER BY w.id FOR UPDATE OF w, j"
);

/// Reads jobs and locks them and their workflows (see [`LockedJob`]), in workflow id order so that two batches never wait
/// for each other crosswise; jobs not found are left out.
pub async fn lock_many(
    client: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<LockedJob>, StoreError> {
    let stmt = client.prepare_cached(LOCK_MANY).await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    rows.iter().map(LockedJob::from_row).collect()
}

const RELEASE: &str = "UPDATE jobs SET state = 'ready', lease_token = NULL, worker = NULL, \
     lease_expires_at = NULL, leased_at = NULL, available_at = now() \
     WHERE id = $1 AND lease_token = $2 AND state = 'active' AND operation IS NOT NULL \
     RETURNING operation, workflow_id, node, attempt";

/// Gives a leased job back; returns `(operation, workflow, node, attempt)` when it was live.
pub async fn release(
    client: &impl GenericClient,
    id: i64,
    token: Uuid,
) -> Result<Option<(String, Uuid, String, i32)>, StoreError> {
    let stmt = client.prepare_cached(RELEASE).await?;
    let row = client.query_opt(&stmt, &[&id, &token]).await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .transpose()
}

const EXPIRED: &str = concat!(
    "SELECT j.id FROM jobs j WHERE ",
    lease_ran_out!(),
    " ORDER BY j.lease_expires_at LIMIT $1"
);

/// Active jobs whose lease (or reminder clock) has run out.
pub async fn expired(client: &impl GenericClient, limit: i64) -> Result<Vec<i64>, StoreError> {
    let stmt = client.prepare_cached(EXPIRED).await?;
    let rows = client.query(&stmt, &[&limit]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

const READY_OPERATIONS: &str = "SELECT op FROM unnest($1::text[]) AS op WHERE EXISTS ( \
       SELECT 1 FROM jobs WHERE state = 'ready' AND operation = op AND available_at <= now())";

/// Which of `operations` have a job ready now (the safety net for lost notifications).
pub async fn ready_operations(
    client: &impl GenericClient,
    operations: &[String],
) -> Result<Vec<String>, StoreError> {
    let stmt = client.prepare_cached(READY_OPERATIONS).await?;
    let rows = client.query(&stmt, &[&operations]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

const QUEUE_DEPTH: &str =
    "SELECT operation, count(*) FROM jobs WHERE state = 'ready' GROUP BY operation";

/// Ready jobs per operation, for metrics.
pub async fn queue_depth(client: &impl GenericClient) -> Result<Vec<(String, i64)>, StoreError> {
    let stmt = client.prepare_cached(QUEUE_DEPTH).await?;
    let rows = client.query(&stmt, &[]).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

const INBOX: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", w.graph_name, w.graph_version, w.vars, w.input \
     FROM jobs j JOIN workflows w ON w.id = j.workflow_id \
     WHERE j.state = 'active' AND j.operation IS NULL \
       AND ($1::text IS NULL OR w.graph_name = $1) AND ($2::text IS NULL OR j.node = $2) \
       AND ($3::bigint IS NULL OR j.id = $3) AND j.id > $4 \
     ORDER BY j.id LIMIT $5"
);

/// Filters for [`inbox`].
#[derive(Debug, Default)]
pub struct InboxFilter<'a> {
    /// Only this graph.
    pub graph: Option<&'a str>,
    /// Only this node.
    pub node: Option<&'a str>,
    /// Only this job.
    pub job_id: Option<i64>,
    /// Continue after this job id.
    pub after_id: i64,
    /// Page size.
    pub limit: i64,
}

/// Open human tasks, oldest first.
pub async fn inbox(
    client: &impl GenericClient,
    f: &InboxFilter<'_>,
) -> Result<Vec<JobWithWorkflow>, StoreError> {
    let stmt = client.prepare_cached(INBOX).await?;
    let rows = client
        .query(
            &stmt,
            &[&f.graph, &f.node, &f.job_id, &f.after_id, &f.limit],
        )
        .await?;
    rows.iter().map(JobWithWorkflow::from_row).collect()
}
