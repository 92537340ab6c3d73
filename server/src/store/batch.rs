//! The writes of one transaction, gathered while its steps are decided and sent at commit time
//! as at most four array statements, pipelined on one round trip. A transaction that applies
//! fifty completions pays the same four statements as one that applies one: PostgreSQL's cost
//! per statement and per round trip is paid per batch, not per step.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::StoreError;
use super::events::NewEvent;
use super::jobs::{JobRecord, JobState};
use super::workflows::{WorkflowRecord, WorkflowStatus};

/// A job to create, with its id taken from the sequence beforehand so that the step's events
/// and its workflow row can name it in the same round trip.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Id, from [`next_job_ids`].
    pub id: i64,
    /// Workflow id.
    pub workflow_id: Uuid,
    /// Node.
    pub node: String,
    /// Operation; None for a human node (the job goes straight to the inbox).
    pub operation: Option<String>,
    /// Attempt number.
    pub attempt: i32,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Node the workflow came from.
    pub from_node: Option<String>,
    /// Delay before it may be handed out, in milliseconds.
    pub delay_ms: i64,
    /// Lease length, or the human node's reminder clock.
    pub timeout_ms: Option<i64>,
    /// Required heartbeat interval.
    pub heartbeat_ms: Option<i64>,
    /// Worker the job is leased to at once, with the lease token; None leaves it ready.
    pub lease: Option<(String, Uuid)>,
}

/// How a job ends.
#[derive(Debug, Clone)]
pub struct JobEnd {
    /// Job id.
    pub id: i64,
    /// COMPLETED or CANCELLED.
    pub state: JobState,
    /// Label it ended with.
    pub label: Option<String>,
    /// Output it ended with.
    pub output: Option<Value>,
    /// Who ended it.
    pub ended_by: String,
}

/// Why a workflow is STUCK: reason, message, node, label.
pub type Incident = (String, String, String, Option<String>);

/// A workflow's new state after a step.
#[derive(Debug, Clone)]
pub struct WorkflowUpdate {
    /// Workflow id.
    pub id: Uuid,
    /// New status.
    pub status: WorkflowStatus,
    /// New node (None once completed).
    pub current_node: Option<String>,
    /// New vars.
    pub vars: Value,
    /// New step count.
    pub step_count: i32,
    /// New streaks.
    pub streaks: Value,
    /// Outcome when completed.
    pub outcome: Option<String>,
    /// Incident when STUCK.
    pub incident: Option<Incident>,
    /// The job created by the step; None keeps the last one (shown as the workflow's job).
    pub current_job_id: Option<i64>,
    /// Whether the deadline has fired (cleared so it fires once).
    pub clear_deadline: bool,
}

/// Writes gathered for one transaction; [`Writes::flush`] sends them.
#[derive(Debug, Default)]
pub struct Writes {
    ends: Vec<JobEnd>,
    jobs: Vec<NewJob>,
    workflows: Vec<WorkflowUpdate>,
    events: Vec<(Uuid, NewEvent)>,
}

impl Writes {
    /// Ends a job (the caller holds its workflow's lock).
    pub fn end_job(&mut self, end: JobEnd) {
        self.ends.push(end);
    }

    /// Creates a job.
    pub fn insert_job(&mut self, job: NewJob) {
        self.jobs.push(job);
    }

    /// Writes a workflow's new state.
    pub fn update_workflow(&mut self, update: WorkflowUpdate) {
        self.workflows.push(update);
    }

    /// Appends events to a workflow's history, in order.
    pub fn append(&mut self, workflow_id: Uuid, events: impl IntoIterator<Item = NewEvent>) {
        self.events
            .extend(events.into_iter().map(|e| (workflow_id, e)));
    }

    /// Takes over another set of writes, after this one's.
    pub fn extend(&mut self, other: Writes) {
        self.ends.extend(other.ends);
        self.jobs.extend(other.jobs);
        self.workflows.extend(other.workflows);
        self.events.extend(other.events);
    }

    /// Prepares the statements [`Writes::flush`] will send, so that flushing sends them all
    /// at once (see [`super::PipelinedTx::commit_with`]).
    pub async fn prepare(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        let needed = [
            (!self.ends.is_empty(), END_JOBS),
            (!self.jobs.is_empty(), INSERT_JOBS),
            (!self.workflows.is_empty(), UPDATE_WORKFLOWS),
            (!self.events.is_empty(), APPEND_EVENTS),
        ];
        for (needed, query) in needed {
            if needed {
                client.prepare_cached(query).await?;
            }
        }
        Ok(())
    }

    /// Sends every write, pipelined, and returns what it made, as stored. The statements go
    /// in the order the writes were gathered in: jobs end before the workflows that read them.
    pub async fn flush(self, client: &impl GenericClient) -> Result<Flushed, StoreError> {
        // Prepared first, so that each statement is sent when first polled, in order.
        self.prepare(client).await?;
        let (ends, created, finished, appended) = tokio::join!(
            end_jobs(client, &self.ends),
            insert_jobs(client, &self.jobs),
            update_workflows(client, &self.workflows),
            append_events(client, &self.events),
        );
        let mut failure = None;
        for e in [ends.err(), appended.err()].into_iter().flatten() {
            failure = Some(root_cause(failure, e));
        }
        match (created, finished, failure) {
            (Ok(created), Ok(finished), None) => Ok(Flushed { created, finished }),
            (Err(e), _, failure) | (_, Err(e), failure) => Err(root_cause(failure, e)),
            (_, _, Some(e)) => Err(e),
        }
    }
}

/// What [`Writes::flush`] made.
#[derive(Debug, Default)]
pub struct Flushed {
    /// The jobs created.
    pub created: Vec<JobRecord>,
    /// The workflows that completed or were cancelled, each with its last job.
    pub finished: Vec<Finished>,
}

/// A workflow that completed or was cancelled in the flushed transaction: final, since
/// neither state ever changes again.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The workflow as stored.
    pub workflow: WorkflowRecord,
    /// Its last job as stored.
    pub job: JobRecord,
}

/// Of two errors of one pipeline, the one that is not merely "the transaction is aborted":
/// when one statement fails the others report only that.
fn root_cause(first: Option<StoreError>, next: StoreError) -> StoreError {
    match first {
        Some(first) if !is_aborted(&first) => first,
        _ => next,
    }
}

fn is_aborted(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(db) if db.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION))
}

/// Sequence behind `jobs.id`.
const NEXT_JOB_IDS: &str =
    "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, $1::int)";

/// Takes `n` job ids from the sequence (the server hands them out from memory).
pub async fn next_job_ids(client: &impl GenericClient, n: i32) -> Result<Vec<i64>, StoreError> {
    let stmt = client.prepare_cached(NEXT_JOB_IDS).await?;
    let rows = client.query(&stmt, &[&n]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

const END_JOBS: &str = "UPDATE jobs j SET state = u.state, label = u.label, output = u.output, \
       ended_by = u.ended_by, ended_at = now() \
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::text[]) \
       AS u(id, state, label, output, ended_by) \
     WHERE j.id = u.id";

async fn end_jobs(client: &impl GenericClient, ends: &[JobEnd]) -> Result<(), StoreError> {
    if ends.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = ends.iter().map(|e| e.id).collect();
    let states: Vec<&str> = ends.iter().map(|e| e.state.as_str()).collect();
    let labels: Vec<Option<&str>> = ends.iter().map(|e| e.label.as_deref()).collect();
    let outputs: Vec<Option<&Value>> = ends.iter().map(|e| e.output.as_ref()).collect();
    let by: Vec<&str> = ends.iter().map(|e| e.ended_by.as_str()).collect();
    let stmt = client.prepare_cached(END_JOBS).await?;
    client
        .execute(&stmt, &[&ids, &states, &labels, &outputs, &by])
        .await?;
    Ok(())
}

/// Inserts jobs from `u` (the columns of [`job_params`]). A human node's job goes straight to
/// the inbox and a job with a worker straight to that worker, both with their clock running;
/// the lease is the heartbeat interval when shorter than the timeout. `created_at` is the
/// moment of the insert, not the transaction's start.
macro_rules! insert_jobs_from {
    ($source:literal) => {
        concat!(
            "INSERT INTO jobs AS j (id, workflow_id, node, operation, state, attempt, \
               idempotency_key, from_node, available_at, timeout_ms, heartbeat_ms, worker, \
               lease_token, leased_at, lease_expires_at, created_at) OVERRIDING SYSTEM VALUE \
             SELECT u.id, u.workflow_id, u.node, u.operation, \
               CASE WHEN u.operation IS NULL OR u.worker IS NOT NULL THEN 'active' ELSE 'ready' END, \
               u.attempt, u.key, u.from_node, now() + u.delay_ms * interval '1 millisecond', \
               u.timeout_ms, u.heartbeat_ms, u.worker, u.token, \
               CASE WHEN u.worker IS NOT NULL THEN now() END, \
               CASE WHEN u.operation IS NULL THEN now() + u.timeout_ms * interval '1 millisecond' \
                    WHEN u.worker IS NOT NULL THEN now() + least(coalesce(u.heartbeat_ms, \
                      u.timeout_ms), u.timeout_ms) * interval '1 millisecond' END, \
               clock_timestamp() \
             FROM ",
            $source
        )
    };
}

/// Names the columns of [`job_params`].
macro_rules! job_columns_of_u {
    () => {
        " AS u(id, workflow_id, node, operation, attempt, key, from_node, delay_ms, timeout_ms, \
           heartbeat_ms, worker, token)"
    };
}

const INSERT_JOBS: &str = concat!(
    insert_jobs_from!(
        "unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], \
           $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::uuid[])"
    ),
    job_columns_of_u!(),
    " RETURNING ",
    super::jobs::job_columns!()
);

/// Owned statement parameters.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// The parameters as a statement takes them.
fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The twelve arrays that describe new jobs.
fn job_params(jobs: &[NewJob]) -> Params {
    let lease = |j: &NewJob| j.lease.clone();
    vec![
        Box::new(jobs.iter().map(|j| j.id).collect::<Vec<i64>>()),
        Box::new(jobs.iter().map(|j| j.workflow_id).collect::<Vec<Uuid>>()),
        Box::new(jobs.iter().map(|j| j.node.clone()).collect::<Vec<String>>()),
        Box::new(jobs.iter().map(|j| j.operation.clone()).collect::<Vec<_>>()),
        Box::new(jobs.iter().map(|j| j.attempt).collect::<Vec<i32>>()),
        Box::new(
            jobs.iter()
                .map(|j| j.idempotency_key.clone())
                .collect::<Vec<String>>(),
        ),
        Box::new(jobs.iter().map(|j| j.from_node.clone()).collect::<Vec<_>>()),
        Box::new(jobs.iter().map(|j| j.delay_ms).collect::<Vec<i64>>()),
        Box::new(jobs.iter().map(|j| j.timeout_ms).collect::<Vec<_>>()),
        Box::new(jobs.iter().map(|j| j.heartbeat_ms).collect::<Vec<_>>()),
        Box::new(
            jobs.iter()
                .map(|j| lease(j).map(|(w, _)| w))
                .collect::<Vec<_>>(),
        ),
        Box::new(
            jobs.iter()
                .map(|j| lease(j).map(|(_, t)| t))
                .collect::<Vec<_>>(),
        ),
    ]
}

async fn insert_jobs(
    client: &impl GenericClient,
    jobs: &[NewJob],
) -> Result<Vec<JobRecord>, StoreError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let params = job_params(jobs);
    let stmt = client.prepare_cached(INSERT_JOBS).await?;
    let rows = client.query(&stmt, &refs(&params)).await?;
    rows.iter().map(JobRecord::from_row).collect()
}

/// Writes the workflows' new state, and returns those that completed or were cancelled with
/// their last job, which an earlier statement of the same flush ended.
const UPDATE_WORKFLOWS: &str = concat!(
    "WITH w AS (UPDATE workflows w SET status = u.status, \
       current_node = u.current_node, vars = u.vars, step_count = u.step_count, \
       streaks = u.streaks, outcome = u.outcome, incident_reason = u.reason, \
       incident_message = u.message, incident_node = u.node, incident_label = u.label, \
       incident_at = CASE WHEN u.reason IS NULL THEN NULL ELSE now() END, \
       current_job_id = coalesce(u.job_id, w.current_job_id), \
       deadline_at = CASE WHEN u.clear_deadline THEN NULL ELSE w.deadline_at END, \
       updated_at = now(), \
       ended_at = CASE WHEN u.status IN ('completed', 'cancelled') THEN now() ELSE NULL END \
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::jsonb[], \
       $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], \
       $13::bool[]) \
       AS u(id, status, current_node, vars, step_count, streaks, outcome, reason, message, \
            node, label, job_id, clear_deadline) \
     WHERE w.id = u.id RETURNING w.*) \
     SELECT ",
    super::jobs::job_columns!(),
    ", ",
    super::workflows::workflow_columns!(),
    " FROM w JOIN jobs j ON j.id = w.current_job_id WHERE w.status IN ('completed', 'cancelled')"
);

async fn update_workflows(
    client: &impl GenericClient,
    updates: &[WorkflowUpdate],
) -> Result<Vec<Finished>, StoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    fn incident(u: &WorkflowUpdate) -> Option<&Incident> {
        u.incident.as_ref()
    }
    let ids: Vec<Uuid> = updates.iter().map(|u| u.id).collect();
    let statuses: Vec<&str> = updates.iter().map(|u| u.status.as_str()).collect();
    let nodes: Vec<Option<&str>> = updates.iter().map(|u| u.current_node.as_deref()).collect();
    let vars: Vec<&Value> = updates.iter().map(|u| &u.vars).collect();
    let steps: Vec<i32> = updates.iter().map(|u| u.step_count).collect();
    let streaks: Vec<&Value> = updates.iter().map(|u| &u.streaks).collect();
    let outcomes: Vec<Option<&str>> = updates.iter().map(|u| u.outcome.as_deref()).collect();
    let reasons: Vec<Option<&str>> = updates
        .iter()
        .map(|u| incident(u).map(|i| i.0.as_str()))
        .collect();
    let messages: Vec<Option<&str>> = updates
        .iter()
        .map(|u| incident(u).map(|i| i.1.as_str()))
        .collect();
    let incident_nodes: Vec<Option<&str>> = updates
        .iter()
        .map(|u| incident(u).map(|i| i.2.as_str()))
        .collect();
    let labels: Vec<Option<&str>> = updates
        .iter()
        .map(|u| incident(u).and_then(|i| i.3.as_deref()))
        .collect();
    let jobs: Vec<Option<i64>> = updates.iter().map(|u| u.current_job_id).collect();
    let clear: Vec<bool> = updates.iter().map(|u| u.clear_deadline).collect();
    let stmt = client.prepare_cached(UPDATE_WORKFLOWS).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &ids,
                &statuses,
                &nodes,
                &vars,
                &steps,
                &streaks,
                &outcomes,
                &reasons,
                &messages,
                &incident_nodes,
                &labels,
                &jobs,
                &clear,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            // The two column lists share names, so the workflow's half is read by position.
            Ok(Finished {
                job: JobRecord::from_row(row)?,
                workflow: WorkflowRecord::from_row_offset(row, super::jobs::JOB_COLUMN_COUNT)?,
            })
        })
        .collect()
}

/// Appends events from `u` (the columns of [`event_params`], with their ordinal `n`);
/// `ORDER BY n` keeps them in the order given, so their ids follow it.
macro_rules! append_events_from {
    ($source:literal) => {
        concat!(
            "INSERT INTO events (workflow_id, kind, node, label, job_id, attempt, actor, \
               message, data) \
             SELECT workflow_id, kind, node, label, job_id, attempt, actor, message, data FROM ",
            $source
        )
    };
}

/// Names the columns of [`event_params`] and their ordinal.
macro_rules! event_columns_of_u {
    () => {
        " WITH ORDINALITY AS u(workflow_id, kind, node, label, job_id, attempt, actor, message, \
           data, n)"
    };
}

const APPEND_EVENTS: &str = concat!(
    append_events_from!(
        "unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[], \
           $7::text[], $8::text[], $9::jsonb[])"
    ),
    event_columns_of_u!(),
    " ORDER BY n"
);

/// The nine arrays that describe events.
fn event_params(events: &[(Uuid, NewEvent)]) -> Params {
    vec![
        Box::new(events.iter().map(|(w, _)| *w).collect::<Vec<Uuid>>()),
        Box::new(
            events
                .iter()
                .map(|(_, e)| e.kind.as_str())
                .collect::<Vec<&'static str>>(),
        ),
        Box::new(
            events
                .iter()
                .map(|(_, e)| e.node.clone())
                .collect::<Vec<_>>(),
        ),
        Box::new(
            events
                .iter()
                .map(|(_, e)| e.label.clone())
                .collect::<Vec<_>>(),
        ),
        Box::new(events.iter().map(|(_, e)| e.job_id).collect::<Vec<_>>()),
        Box::new(events.iter().map(|(_, e)| e.attempt).collect::<Vec<_>>()),
        Box::new(
            events
                .iter()
                .map(|(_, e)| e.actor.clone())
                .collect::<Vec<String>>(),
        ),
        Box::new(
            events
                .iter()
                .map(|(_, e)| e.message.clone())
                .collect::<Vec<_>>(),
        ),
        Box::new(
            events
                .iter()
                .map(|(_, e)| e.data.clone())
                .collect::<Vec<_>>(),
        ),
    ]
}

pub(crate) async fn append_events(
    client: &impl GenericClient,
    events: &[(Uuid, NewEvent)],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let params = event_params(events);
    let stmt = client.prepare_cached(APPEND_EVENTS).await?;
    client.execute(&stmt, &refs(&params)).await?;
    Ok(())
}

/// New workflows written as their first step left them, with that step's jobs and events, in
/// ONE statement: atomic by itself, so it needs no transaction around it. A workflow whose
/// idempotency key exists already is left out, and so are its jobs and events.
const INSERT_STARTED: &str = concat!(
    "WITH w AS ( \
       INSERT INTO workflows AS w (id, graph_name, graph_version, status, input, vars, \
         idempotency_key, request_hash, schedule_id, deadline_at, current_node, step_count, \
         streaks, outcome, incident_reason, incident_message, incident_node, incident_label, \
         incident_at, current_job_id, ended_at) \
       SELECT s.id, s.graph_name, s.graph_version, s.status, s.input, s.vars, s.key, s.hash, \
         s.schedule_id, now() + s.deadline_ms * interval '1 millisecond', s.current_node, \
         s.step_count, s.streaks, s.outcome, s.reason, s.message, s.inode, s.ilabel, \
         CASE WHEN s.reason IS NULL THEN NULL ELSE now() END, s.job_id, \
         CASE WHEN s.status IN ('completed', 'cancelled') THEN now() END \
       FROM unnest($1::uuid[], $2::text[], $3::int[], $4::jsonb[], $5::text[], $6::text[], \
         $7::text[], $8::bigint[], $9::text[], $10::text[], $11::jsonb[], $12::int[], \
         $13::jsonb[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], \
         $19::bigint[]) \
         AS s(id, graph_name, graph_version, input, key, hash, schedule_id, deadline_ms, status, \
              current_node, vars, step_count, streaks, outcome, reason, message, inode, ilabel, \
              job_id) \
       ON CONFLICT (idempotency_key) DO NOTHING \
       RETURNING *), \
     j AS (",
    insert_jobs_from!(
        "unnest($20::bigint[], $21::uuid[], $22::text[], $23::text[], $24::int[], $25::text[], \
           $26::text[], $27::bigint[], $28::bigint[], $29::bigint[], $30::text[], $31::uuid[])"
    ),
    job_columns_of_u!(),
    " WHERE u.workflow_id IN (SELECT id FROM w) RETURNING *), \
     e AS (",
    append_events_from!(
        "unnest($32::uuid[], $33::text[], $34::text[], $35::text[], $36::bigint[], $37::int[], \
           $38::text[], $39::text[], $40::jsonb[])"
    ),
    event_columns_of_u!(),
    " WHERE u.workflow_id IN (SELECT id FROM w) ORDER BY n) \
     SELECT ",
    super::jobs::job_columns!(),
    ", ",
    super::workflows::workflow_columns!(),
    " FROM w LEFT JOIN j ON j.workflow_id = w.id"
);

/// Writes new workflows in the state their first step left them (`writes` holds that step's
/// workflow updates, jobs and events) with one statement, and returns each one inserted with
/// its job. `rows` and the updates must name the same workflows.
pub async fn insert_started(
    client: &impl GenericClient,
    rows: &[super::workflows::NewWorkflow<'_>],
    writes: Writes,
) -> Result<Vec<(WorkflowRecord, Option<JobRecord>)>, StoreError> {
    let mut started = Vec::with_capacity(rows.len());
    for row in rows {
        let update = writes
            .workflows
            .iter()
            .find(|u| u.id == row.id)
            .ok_or_else(|| StoreError::Corrupt(format!("workflow {} started no step", row.id)))?;
        started.push((row, update));
    }
    // Reason, message, node and label of each workflow's incident, as four columns.
    let incident = |part: fn(&Incident) -> Option<String>| {
        started
            .iter()
            .map(|(_, u)| u.incident.as_ref().and_then(part))
            .collect::<Vec<Option<String>>>()
    };
    let mut params: Params = vec![
        Box::new(started.iter().map(|(r, _)| r.id).collect::<Vec<Uuid>>()),
        Box::new(
            started
                .iter()
                .map(|(r, _)| r.graph_name.to_owned())
                .collect::<Vec<String>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(r, _)| r.graph_version)
                .collect::<Vec<i32>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(r, _)| r.input.clone())
                .collect::<Vec<Value>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(r, _)| r.idempotency_key.map(str::to_owned))
                .collect::<Vec<_>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(r, _)| r.request_hash.map(str::to_owned))
                .collect::<Vec<_>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(r, _)| r.schedule_id.map(str::to_owned))
                .collect::<Vec<_>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(r, _)| r.deadline_ms)
                .collect::<Vec<_>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(_, u)| u.status.as_str())
                .collect::<Vec<&'static str>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(_, u)| u.current_node.clone())
                .collect::<Vec<_>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(_, u)| u.vars.clone())
                .collect::<Vec<Value>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(_, u)| u.step_count)
                .collect::<Vec<i32>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(_, u)| u.streaks.clone())
                .collect::<Vec<Value>>(),
        ),
        Box::new(
            started
                .iter()
                .map(|(_, u)| u.outcome.clone())
                .collect::<Vec<_>>(),
        ),
        Box::new(incident(|i| Some(i.0.clone()))),
        Box::new(incident(|i| Some(i.1.clone()))),
        Box::new(incident(|i| Some(i.2.clone()))),
        Box::new(incident(|i| i.3.clone())),
        Box::new(
            started
                .iter()
                .map(|(_, u)| u.current_job_id)
                .collect::<Vec<_>>(),
        ),
    ];
    params.extend(job_params(&writes.jobs));
    params.extend(event_params(&writes.events));
    let stmt = client.prepare_cached(INSERT_STARTED).await?;
    let rows = client.query(&stmt, &refs(&params)).await?;
    rows.iter()
        .map(super::workflows::with_job_from_row)
        .collect()
}
