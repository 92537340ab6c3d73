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
pub use super::rows::Written;
use super::rows::{JobRecord, JobState, WorkflowStatus, job_columns, lease_live, written_columns};

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
            (self.ends.len(), END_JOBS),
            (self.jobs.len(), INSERT_JOBS),
            (self.workflows.len(), UPDATE_WORKFLOWS),
            (self.events.len(), APPEND_EVENTS),
        ];
        for (rows, statements) in needed {
            if rows > 0 {
                client
                    .prepare_cached(Rows::of(rows).pick(statements))
                    .await?;
            }
        }
        Ok(())
    }

    /// Sends every write, pipelined, and returns what it made, as stored. The statements go
    /// in the order the writes were gathered in: jobs end before the workflows that read them.
    pub async fn flush(self, client: &impl GenericClient) -> Result<Flushed, StoreError> {
        // Prepared first, so that each statement is sent when first polled, in order.
        self.prepare(client).await?;
        let (ends, created, written, appended) = tokio::join!(
            end_jobs(client, &self.ends),
            insert_jobs(client, &self.jobs),
            update_workflows(client, &self.workflows),
            append_events(client, &self.events),
        );
        let mut failure = None;
        for e in [ends.err(), appended.err()].into_iter().flatten() {
            failure = Some(root_cause(failure, e));
        }
        match (created, written, failure) {
            (Ok(created), Ok(written), None) => Ok(Flushed { created, written }),
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
    /// The workflows updated, as stored.
    pub written: Vec<Written>,
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

/// How a statement reads rows out of its parallel array parameters; every statement here
/// comes in both forms, `[Few, Many]`.
///
/// `unnest(a, b, c)` runs one set-returning function per array, and PostgreSQL materialises
/// each one's result on its own, a cost paid per array whatever the batch; the statements of
/// a step take forty-odd arrays. `Few` unnests only the first array, with its ordinal, and
/// takes the others by subscript: one function, which made an idle server's start and warm
/// completion 2-13% faster to execute. But a subscript into an array of variable-width
/// elements (text, jsonb) walks it from the start, so that form costs the square of the
/// batch, and `Many` keeps the plain `unnest` for big batches (docs/performance.md,
/// 2026-11-23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// First array unnested, the others subscripted.
    Few,
    /// Every array unnested.
    Many,
}

impl Rows {
    /// Longest array read in the `Few` form.
    const FEW_MAX: usize = 16;

    /// The form for arrays of at most `longest` elements.
    fn of(longest: usize) -> Rows {
        if longest <= Rows::FEW_MAX {
            Rows::Few
        } else {
            Rows::Many
        }
    }

    /// This form's statement among `[Few, Many]`.
    fn pick(self, statements: [&'static str; 2]) -> &'static str {
        statements[self as usize]
    }
}

/// The rows of parallel arrays, each row with its ordinal as a last column, as a FROM item to
/// be aliased `AS u(..., n)`, in the form `Few` or `Many` (see [`Rows`]).
macro_rules! rows {
    (Few; $first:literal $(, $rest:literal)*) => {
        concat!(
            "(SELECT r.v", $(", (", $rest, ")[r.i]",)* ", r.i FROM unnest(", $first,
            ") WITH ORDINALITY AS r(v, i))"
        )
    };
    (Many; $first:literal $(, $rest:literal)*) => {
        concat!("unnest(", $first, $(", ", $rest,)* ") WITH ORDINALITY")
    };
}

/// A statement in both forms of [`Rows`], `[Few, Many]`: `statement!(Form; args)` for each.
macro_rules! in_both_forms {
    ($statement:ident!($($args:tt)*)) => {
        [$statement!(Few; $($args)*), $statement!(Many; $($args)*)]
    };
}

/// Ends jobs from `u` (the columns of [`end_params`]).
macro_rules! end_jobs_from {
    ($form:ident; $($array:literal),+) => {
        concat!(
            "UPDATE jobs j SET state = u.state, label = u.label, output = u.output, \
               ended_by = u.ended_by, ended_at = now() FROM ",
            rows!($form; $($array),+),
            " AS u(id, state, label, output, ended_by, n) WHERE j.id = u.id"
        )
    };
}

const END_JOBS: [&str; 2] = in_both_forms!(end_jobs_from!(
    "$1::bigint[]",
    "$2::text[]",
    "$3::text[]",
    "$4::jsonb[]",
    "$5::text[]"
));

/// The five arrays that describe how jobs end.
fn end_params(ends: &[JobEnd]) -> Params {
    vec![
        column(ends, |e| e.id),
        column(ends, |e| e.state.as_str()),
        column(ends, |e| e.label.clone()),
        column(ends, |e| e.output.clone()),
        column(ends, |e| e.ended_by.clone()),
    ]
}

async fn end_jobs(client: &impl GenericClient, ends: &[JobEnd]) -> Result<(), StoreError> {
    if ends.is_empty() {
        return Ok(());
    }
    let params = end_params(ends);
    let stmt = client
        .prepare_cached(Rows::of(ends.len()).pick(END_JOBS))
        .await?;
    client.execute(&stmt, &refs(&params)).await?;
    Ok(())
}

/// Inserts jobs from `u` (the columns of [`job_params`]). A human node's job goes straight to
/// the inbox and a job with a worker straight to that worker, both with their clock running;
/// the lease is the heartbeat interval when shorter than the timeout. `created_at` is the
/// moment of the insert, not the transaction's start.
macro_rules! insert_jobs_from {
    ($form:ident; $($array:literal),+) => {
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
            rows!($form; $($array),+),
            " AS u(id, workflow_id, node, operation, attempt, key, from_node, delay_ms, \
               timeout_ms, heartbeat_ms, worker, token, n)"
        )
    };
}

/// [`insert_jobs_from`] with the arrays `$1` to `$12`, returning the jobs.
macro_rules! insert_jobs {
    ($form:ident;) => {
        concat!(
            insert_jobs_from!($form; "$1::bigint[]", "$2::uuid[]", "$3::text[]", "$4::text[]",
                "$5::int[]", "$6::text[]", "$7::text[]", "$8::bigint[]", "$9::bigint[]",
                "$10::bigint[]", "$11::text[]", "$12::uuid[]"),
            " RETURNING ",
            job_columns!()
        )
    };
}

const INSERT_JOBS: [&str; 2] = in_both_forms!(insert_jobs!());

/// Owned statement parameters.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// One array parameter: `value` of each item.
fn column<T, U>(items: &[T], value: impl Fn(&T) -> U) -> Box<dyn ToSql + Sync + Send>
where
    U: ToSql + Sync + Send + 'static,
{
    Box::new(items.iter().map(value).collect::<Vec<U>>())
}

/// The parameters as a statement takes them.
fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The twelve arrays that describe new jobs.
fn job_params(jobs: &[NewJob]) -> Params {
    vec![
        column(jobs, |j| j.id),
        column(jobs, |j| j.workflow_id),
        column(jobs, |j| j.node.clone()),
        column(jobs, |j| j.operation.clone()),
        column(jobs, |j| j.attempt),
        column(jobs, |j| j.idempotency_key.clone()),
        column(jobs, |j| j.from_node.clone()),
        column(jobs, |j| j.delay_ms),
        column(jobs, |j| j.timeout_ms),
        column(jobs, |j| j.heartbeat_ms),
        column(jobs, |j| j.lease.as_ref().map(|(worker, _)| worker.clone())),
        column(jobs, |j| j.lease.as_ref().map(|(_, token)| *token)),
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
    let stmt = client
        .prepare_cached(Rows::of(jobs.len()).pick(INSERT_JOBS))
        .await?;
    let rows = client.query(&stmt, &refs(&params)).await?;
    rows.iter().map(JobRecord::from_row).collect()
}

/// Writes the workflows' new state, and returns those that completed or were cancelled with
/// their last job, which an earlier statement of the same flush ended.
/// Writes workflows' new state from `u` (the columns of [`workflow_params`]).
macro_rules! update_workflows_from {
    ($form:ident; $($array:literal),+) => {
        concat!(
            "UPDATE workflows w SET status = u.status, \
               current_node = u.current_node, vars = u.vars, step_count = u.step_count, \
               streaks = u.streaks, outcome = u.outcome, incident_reason = u.reason, \
               incident_message = u.message, incident_node = u.node, incident_label = u.label, \
               incident_at = CASE WHEN u.reason IS NULL THEN NULL ELSE now() END, \
               current_job_id = coalesce(u.job_id, w.current_job_id), \
               deadline_at = CASE WHEN u.clear_deadline THEN NULL ELSE w.deadline_at END, \
               updated_at = now(), \
               ended_at = CASE WHEN u.status IN ('completed', 'cancelled') THEN now() ELSE NULL END \
             FROM ",
            rows!($form; $($array),+),
            " AS u(id, status, current_node, vars, step_count, streaks, outcome, reason, \
               message, node, label, job_id, clear_deadline, n) \
             WHERE w.id = u.id"
        )
    };
}

/// The written rows carry their version, for [`Written`].
macro_rules! returning_versioned {
    () => {
        " RETURNING w.*, w.xmin::text::bigint AS version"
    };
}

/// Each workflow updated, as stored, with its version and its current job (the job ended in
/// the same transaction, or the one it created).
macro_rules! update_workflows {
    ($form:ident;) => {
        concat!(
            "WITH w AS (",
            update_workflows_from!($form; "$1::uuid[]", "$2::text[]", "$3::text[]",
                "$4::jsonb[]", "$5::int[]", "$6::jsonb[]", "$7::text[]", "$8::text[]",
                "$9::text[]", "$10::text[]", "$11::text[]", "$12::bigint[]", "$13::bool[]"),
            returning_versioned!(),
            ") SELECT ",
            written_columns!(),
            " FROM w LEFT JOIN jobs j ON j.id = w.current_job_id"
        )
    };
}

const UPDATE_WORKFLOWS: [&str; 2] = in_both_forms!(update_workflows!());

/// The thirteen arrays that describe workflow updates.
fn workflow_params(updates: &[WorkflowUpdate]) -> Params {
    let incident = |part: fn(&Incident) -> Option<String>| {
        column(updates, move |u| u.incident.as_ref().and_then(part))
    };
    vec![
        column(updates, |u| u.id),
        column(updates, |u| u.status.as_str()),
        column(updates, |u| u.current_node.clone()),
        column(updates, |u| u.vars.clone()),
        column(updates, |u| u.step_count),
        column(updates, |u| u.streaks.clone()),
        column(updates, |u| u.outcome.clone()),
        incident(|i| Some(i.0.clone())),
        incident(|i| Some(i.1.clone())),
        incident(|i| Some(i.2.clone())),
        incident(|i| i.3.clone()),
        column(updates, |u| u.current_job_id),
        column(updates, |u| u.clear_deadline),
    ]
}

async fn update_workflows(
    client: &impl GenericClient,
    updates: &[WorkflowUpdate],
) -> Result<Vec<Written>, StoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let params = workflow_params(updates);
    let statement = Rows::of(updates.len()).pick(UPDATE_WORKFLOWS);
    written(client, statement, &params).await
}

/// Appends events from `u` (the columns of [`event_params`], with their ordinal `n`);
/// `ORDER BY n` keeps them in the order given, so their ids follow it.
macro_rules! append_events_from {
    ($form:ident; $($array:literal),+) => {
        concat!(
            "INSERT INTO events (workflow_id, kind, node, label, job_id, attempt, actor, \
               message, data) \
             SELECT workflow_id, kind, node, label, job_id, attempt, actor, message, data FROM ",
            rows!($form; $($array),+),
            " AS u(workflow_id, kind, node, label, job_id, attempt, actor, message, data, n)"
        )
    };
}

macro_rules! append_events {
    ($form:ident;) => {
        concat!(
            append_events_from!($form; "$1::uuid[]", "$2::text[]", "$3::text[]", "$4::text[]",
                "$5::bigint[]", "$6::int[]", "$7::text[]", "$8::text[]", "$9::jsonb[]"),
            " ORDER BY n"
        )
    };
}

const APPEND_EVENTS: [&str; 2] = in_both_forms!(append_events!());

/// The nine arrays that describe events.
fn event_params(events: &[(Uuid, NewEvent)]) -> Params {
    vec![
        column(events, |(w, _)| *w),
        column(events, |(_, e)| e.kind.as_str()),
        column(events, |(_, e)| e.node.clone()),
        column(events, |(_, e)| e.label.clone()),
        column(events, |(_, e)| e.job_id),
        column(events, |(_, e)| e.attempt),
        column(events, |(_, e)| e.actor.clone()),
        column(events, |(_, e)| e.message.clone()),
        column(events, |(_, e)| e.data.clone()),
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
    let stmt = client
        .prepare_cached(Rows::of(events.len()).pick(APPEND_EVENTS))
        .await?;
    client.execute(&stmt, &refs(&params)).await?;
    Ok(())
}

/// New workflows written as their first step left them, with that step's jobs and events, in
/// ONE statement: atomic by itself, so it needs no transaction around it. A workflow whose
/// idempotency key exists already is left out, and so are its jobs and events.
macro_rules! insert_started {
    ($form:ident;) => {
        concat!(
            "WITH w AS ( \
               INSERT INTO workflows AS w (id, graph_name, graph_version, status, input, vars, \
                 idempotency_key, request_hash, schedule_id, deadline_at, current_node, \
                 step_count, streaks, outcome, incident_reason, incident_message, \
                 incident_node, incident_label, incident_at, current_job_id, ended_at) \
               SELECT s.id, s.graph_name, s.graph_version, s.status, s.input, s.vars, s.key, \
                 s.hash, s.schedule_id, now() + s.deadline_ms * interval '1 millisecond', \
                 s.current_node, s.step_count, s.streaks, s.outcome, s.reason, s.message, \
                 s.inode, s.ilabel, CASE WHEN s.reason IS NULL THEN NULL ELSE now() END, \
                 s.job_id, CASE WHEN s.status IN ('completed', 'cancelled') THEN now() END \
               FROM ",
            rows!($form; "$1::uuid[]", "$2::text[]", "$3::int[]", "$4::jsonb[]", "$5::text[]",
                "$6::text[]", "$7::text[]", "$8::bigint[]", "$9::uuid[]", "$10::text[]",
                "$11::text[]", "$12::jsonb[]", "$13::int[]", "$14::jsonb[]", "$15::text[]",
                "$16::text[]", "$17::text[]", "$18::text[]", "$19::text[]", "$20::bigint[]",
                "$21::bool[]"),
            " AS s(id, graph_name, graph_version, input, key, hash, schedule_id, deadline_ms, \
                 updated, status, current_node, vars, step_count, streaks, outcome, reason, \
                 message, inode, ilabel, job_id, clear_deadline, n) \
               ON CONFLICT (idempotency_key) DO NOTHING",
            returning_versioned!(),
            "), j AS (",
            insert_jobs_from!($form; "$22::bigint[]", "$23::uuid[]", "$24::text[]",
                "$25::text[]", "$26::int[]", "$27::text[]", "$28::text[]", "$29::bigint[]",
                "$30::bigint[]", "$31::bigint[]", "$32::text[]", "$33::uuid[]"),
            " WHERE u.workflow_id IN (SELECT id FROM w) RETURNING *), \
             e AS (",
            append_events_from!($form; "$34::uuid[]", "$35::text[]", "$36::text[]",
                "$37::text[]", "$38::bigint[]", "$39::int[]", "$40::text[]", "$41::text[]",
                "$42::jsonb[]"),
            " WHERE u.workflow_id IN (SELECT id FROM w) ORDER BY n) \
             SELECT ",
            written_columns!(),
            " FROM w LEFT JOIN j ON j.workflow_id = w.id"
        )
    };
}

const INSERT_STARTED: [&str; 2] = in_both_forms!(insert_started!());

/// Writes new workflows in the state their first step left them (`writes` holds that step's
/// workflow updates, jobs and events) with one statement, and returns each one inserted with
/// its job. `rows` and the updates must name the same workflows.
pub async fn insert_started(
    client: &impl GenericClient,
    rows: &[super::workflows::NewWorkflow<'_>],
    writes: Writes,
) -> Result<Vec<Written>, StoreError> {
    let (params, longest) = started_params(rows, &writes)?;
    written(client, Rows::of(longest).pick(INSERT_STARTED), &params).await
}

/// The parameters of [`INSERT_STARTED`], and the length of its longest array.
fn started_params(
    rows: &[super::workflows::NewWorkflow<'_>],
    writes: &Writes,
) -> Result<(Params, usize), StoreError> {
    let mut updates = Vec::with_capacity(rows.len());
    for row in rows {
        let update = writes
            .workflows
            .iter()
            .find(|u| u.id == row.id)
            .ok_or_else(|| StoreError::Corrupt(format!("workflow {} started no step", row.id)))?;
        updates.push(update.clone());
    }
    let mut params: Params = vec![
        column(rows, |r| r.id),
        column(rows, |r| r.graph_name.to_owned()),
        column(rows, |r| r.graph_version),
        column(rows, |r| r.input.clone()),
        column(rows, |r| r.idempotency_key.map(str::to_owned)),
        column(rows, |r| r.request_hash.map(str::to_owned)),
        column(rows, |r| r.schedule_id.map(str::to_owned)),
        column(rows, |r| r.deadline_ms),
    ];
    params.extend(workflow_params(&updates));
    params.extend(job_params(&writes.jobs));
    params.extend(event_params(&writes.events));
    let longest = rows.len().max(writes.jobs.len()).max(writes.events.len());
    Ok((params, longest))
}

/// Runs `statement`, whose rows are [`Written`] ones, and reads them.
async fn written(
    client: &impl GenericClient,
    statement: &str,
    params: &[Box<dyn ToSql + Sync + Send>],
) -> Result<Vec<Written>, StoreError> {
    let stmt = client.prepare_cached(statement).await?;
    let rows = client.query(&stmt, &refs(params)).await?;
    rows.iter().map(Written::from_row).collect()
}

/// A workflow row and job lease a warm completion expects to find unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Its row's version, as last written.
    pub version: i64,
    /// The job being completed.
    pub job_id: i64,
    /// Its lease token.
    pub token: Uuid,
}

/// Completions decided from rows this server wrote, in ONE statement (atomic by itself, with
/// its commit in the same round trip). It first locks each workflow whose row is still the
/// expected version and whose job is still under the expected, unexpired lease (in workflow
/// id order, like [`super::jobs::lock_many`], so that batches never wait crosswise); every
/// write of a workflow that fails this check is left out, and that workflow is missing from
/// the answer. The job tests sit inside a CASE, and so does the gate of the ended jobs, so
/// that the only way the planner can find a job is by its id: a bare `state = 'active'` lets
/// it read every active job through `jobs_expiry`, and a bare `workflow_id` test lets it read
/// every job a workflow ever had through `jobs_workflow`, both costs that grow with the
/// database (docs/performance.md, 2026-11-23). Each workflow written is returned with its new
/// version and its current job (the one created, else the one ended).
macro_rules! complete_warm {
    ($form:ident;) => {
        concat!(
            "WITH checked AS ( \
               SELECT w.id FROM ",
            rows!($form; "$1::uuid[]", "$2::bigint[]", "$3::bigint[]", "$4::uuid[]"),
            " AS x(workflow_id, version, job_id, token, n) \
               JOIN workflows w ON w.id = x.workflow_id JOIN jobs j ON j.id = x.job_id \
               WHERE w.xmin::text::bigint = x.version \
                 AND CASE WHEN j.workflow_id = x.workflow_id AND j.lease_token = x.token AND ",
            lease_live!(),
            " THEN true END \
               ORDER BY w.id FOR UPDATE OF w, j), \
             ended AS (",
            end_jobs_from!($form; "$5::bigint[]", "$6::text[]", "$7::text[]", "$8::jsonb[]",
                "$9::text[]"),
            " AND CASE WHEN j.workflow_id IN (SELECT id FROM checked) THEN true END \
             RETURNING j AS job), \
             created AS (",
            insert_jobs_from!($form; "$10::bigint[]", "$11::uuid[]", "$12::text[]",
                "$13::text[]", "$14::int[]", "$15::text[]", "$16::text[]", "$17::bigint[]",
                "$18::bigint[]", "$19::bigint[]", "$20::text[]", "$21::uuid[]"),
            " WHERE u.workflow_id IN (SELECT id FROM checked) RETURNING j AS job), \
             w AS (",
            update_workflows_from!($form; "$22::uuid[]", "$23::text[]", "$24::text[]",
                "$25::jsonb[]", "$26::int[]", "$27::jsonb[]", "$28::text[]", "$29::text[]",
                "$30::text[]", "$31::text[]", "$32::text[]", "$33::bigint[]", "$34::bool[]"),
            " AND w.id IN (SELECT id FROM checked)",
            returning_versioned!(),
            "), logged AS (",
            append_events_from!($form; "$35::uuid[]", "$36::text[]", "$37::text[]",
                "$38::text[]", "$39::bigint[]", "$40::int[]", "$41::text[]", "$42::text[]",
                "$43::jsonb[]"),
            " WHERE u.workflow_id IN (SELECT id FROM checked) ORDER BY n) \
             SELECT ",
            written_columns!(),
            " FROM w \
             LEFT JOIN created c ON (c.job).workflow_id = w.id \
             LEFT JOIN ended e ON (e.job).workflow_id = w.id, \
             LATERAL (SELECT (coalesce(c.job, e.job)).*) j"
        )
    };
}

const COMPLETE_WARM: [&str; 2] = in_both_forms!(complete_warm!());

/// Writes completions decided from rows this server wrote, each only if its workflow row is
/// still the version it expects and its job still under the lease it expects (see
/// [`COMPLETE_WARM`]); returns the workflows written. `writes` must hold at most one ended
/// job, one new job and one update per workflow.
pub async fn complete_warm(
    client: &impl GenericClient,
    expected: &[Expected],
    writes: Writes,
) -> Result<Vec<Written>, StoreError> {
    let (params, longest) = warm_params(expected, &writes);
    written(client, Rows::of(longest).pick(COMPLETE_WARM), &params).await
}

/// The parameters of [`COMPLETE_WARM`], and the length of its longest array.
fn warm_params(expected: &[Expected], writes: &Writes) -> (Params, usize) {
    let mut params: Params = vec![
        Box::new(
            expected
                .iter()
                .map(|e| e.workflow_id)
                .collect::<Vec<Uuid>>(),
        ),
        Box::new(expected.iter().map(|e| e.version).collect::<Vec<i64>>()),
        Box::new(expected.iter().map(|e| e.job_id).collect::<Vec<i64>>()),
        Box::new(expected.iter().map(|e| e.token).collect::<Vec<Uuid>>()),
    ];
    params.extend(end_params(&writes.ends));
    params.extend(job_params(&writes.jobs));
    params.extend(workflow_params(&writes.workflows));
    params.extend(event_params(&writes.events));
    let longest = expected.len().max(writes.events.len());
    (params, longest)
}

#[cfg(all(test, feature = "testing"))]
mod plans {
    use super::COMPLETE_WARM;
    use crate::testing::TestDb;

    /// Statistics that make reading jobs other than by id look cheap: many workflows of one
    /// job each (so `jobs_workflow` seems to return one row), and few active jobs (so
    /// `jobs_expiry` seems small).
    const SEED: &str = "
        INSERT INTO workflows (id, graph_name, graph_version, status, input, vars)
        SELECT gen_random_uuid(), 'g', 1,
               CASE WHEN i <= 64 THEN 'running' ELSE 'completed' END, '{}', '{}'
        FROM generate_series(1, 20000) i;
        INSERT INTO jobs (workflow_id, node, operation, state, attempt, idempotency_key,
                          lease_token, lease_expires_at)
        SELECT id, 'step', 'op', CASE WHEN status = 'running' THEN 'active' ELSE 'completed' END,
               1, 'key', gen_random_uuid(),
               CASE WHEN status = 'running' THEN now() + interval '1 hour' END
        FROM workflows;
        ANALYZE workflows, jobs;";

    /// The highest `$n` in `sql`.
    fn parameters(sql: &str) -> usize {
        sql.split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn the_warm_statement_reads_jobs_only_by_id_whatever_the_statistics() {
        let db = TestDb::new().await;
        let pool = super::super::pool(&db.url, 1).unwrap();
        let client = pool.get().await.unwrap();
        client.batch_execute(SEED).await.unwrap();
        for (form, statement) in ["few", "many"].into_iter().zip(COMPLETE_WARM) {
            client
                .batch_execute(&format!("PREPARE warm_{form} AS {statement}"))
                .await
                .unwrap();
            // Pooled sessions plan generically, as the server's do; NULLs stand for the arrays.
            let nulls = vec!["NULL"; parameters(statement)].join(", ");
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN EXECUTE warm_{form}({nulls})"), &[])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains("jobs_pkey"), "{form}: {plan}");
            for path in [
                "jobs_expiry",
                "jobs_workflow",
                "jobs_inbox",
                "Seq Scan on jobs",
            ] {
                assert!(
                    !plan.contains(path),
                    "the warm statement ({form}) reads jobs through {path}, a cost that grows \
                     with the database:\n{plan}"
                );
            }
        }
    }
}

/// Both forms of each statement (see [`Rows`]) write the same rows from the same parameters.
#[cfg(all(test, feature = "testing"))]
mod forms {
    use deadpool_postgres::Object;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::store::events::EventKind;
    use crate::store::workflows::NewWorkflow;
    use crate::testing::TestDb;

    /// Every row of the three tables a step writes, as JSON, in order; timestamps (set by
    /// the clock) become `true`, and event ids (from a sequence) are left out.
    const SNAPSHOT: &str = "
        WITH rows AS (
            SELECT 'workflow' AS t, id::text AS k, to_jsonb(x) AS r FROM workflows x
            UNION ALL SELECT 'job', lpad(id::text, 20, '0'), to_jsonb(x) FROM jobs x
            UNION ALL SELECT 'event', lpad(id::text, 20, '0'), to_jsonb(x) - 'id' FROM events x)
        SELECT coalesce(jsonb_agg(jsonb_build_array(t, (
                   SELECT jsonb_object_agg(key, CASE WHEN value #>> '{}' ~ '^\\d{4}-\\d\\d-\\d\\dT'
                                                     THEN 'true'::jsonb ELSE value END)
                   FROM jsonb_each(r))) ORDER BY t, k), '[]')::text
        FROM rows";

    /// What each form of `statements` leaves in the tables, each run in a transaction rolled
    /// back afterwards; with the number of rows each returned.
    async fn run_both(
        client: &mut Object,
        statements: [&str; 2],
        params: &[Box<dyn ToSql + Sync + Send>],
    ) -> [(String, usize); 2] {
        let mut seen = Vec::new();
        for statement in statements {
            let tx = client.transaction().await.unwrap();
            let returned = tx.query(statement, &refs(params)).await.unwrap().len();
            let snapshot: String = tx.query_one(SNAPSHOT, &[]).await.unwrap().get(0);
            tx.rollback().await.unwrap();
            seen.push((snapshot, returned));
        }
        [seen.remove(0), seen.remove(0)]
    }

    fn event(kind: EventKind, node: &str, job_id: i64, data: Option<Value>) -> NewEvent {
        NewEvent {
            node: Some(node.to_owned()),
            job_id: Some(job_id),
            attempt: Some(1),
            message: data.is_none().then(|| format!("entered {node}")),
            data,
            ..NewEvent::new(kind, "engine")
        }
    }

    fn update(
        id: Uuid,
        status: WorkflowStatus,
        node: Option<&str>,
        job: Option<i64>,
    ) -> WorkflowUpdate {
        WorkflowUpdate {
            id,
            status,
            current_node: node.map(str::to_owned),
            vars: json!({ "step": node, "list": [1, 2, 3] }),
            step_count: 1,
            streaks: json!({}),
            outcome: (status == WorkflowStatus::Completed).then(|| "sent".to_owned()),
            incident: None,
            current_job_id: job,
            clear_deadline: false,
        }
    }

    fn job(
        id: i64,
        workflow_id: Uuid,
        node: &str,
        operation: Option<&str>,
        lease: Option<Uuid>,
    ) -> NewJob {
        NewJob {
            id,
            workflow_id,
            node: node.to_owned(),
            operation: operation.map(str::to_owned),
            attempt: 1,
            idempotency_key: format!("{workflow_id}:{node}:1"),
            from_node: None,
            delay_ms: 0,
            timeout_ms: Some(60_000),
            heartbeat_ms: None,
            lease: lease.map(|token| ("worker-a".to_owned(), token)),
        }
    }

    /// Starts three workflows (one of them at a human node) in both forms, commits the start,
    /// then completes all three in both forms, warm and by the locked path's statements: one
    /// workflow moves on to a new job, one completes, one is left out by the warm check.
    #[tokio::test]
    async fn few_and_many_write_the_same_rows() {
        let db = TestDb::new().await;
        let pool = super::super::pool(&db.url, 1).unwrap();
        let mut client = pool.get().await.unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let tokens: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let input = json!({ "order": 42, "note": "ünïcode" });
        let keys = ["key-0".to_owned(), "key-1".to_owned(), "key-2".to_owned()];
        let rows: Vec<NewWorkflow<'_>> = ids
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (id, key))| NewWorkflow {
                id: *id,
                graph_name: "g",
                graph_version: 1,
                input: &input,
                idempotency_key: (i != 1).then_some(key.as_str()),
                request_hash: Some("hash"),
                schedule_id: None,
                start_at: None,
                deadline_ms: (i == 2).then_some(5_000),
            })
            .collect();
        let mut start = Writes::default();
        for (i, id) in ids.iter().enumerate() {
            let job_id = 1_000 + i as i64;
            let human = i == 2;
            let node = if human { "approve" } else { "work" };
            let operation = (!human).then_some("op");
            start.insert_job(job(
                job_id,
                *id,
                node,
                operation,
                (!human).then_some(tokens[i]),
            ));
            start.update_workflow(update(
                *id,
                WorkflowStatus::Running,
                Some(node),
                Some(job_id),
            ));
            start.append(
                *id,
                [
                    event(
                        EventKind::WorkflowStarted,
                        node,
                        job_id,
                        Some(json!({ "i": i })),
                    ),
                    event(EventKind::NodeEntered, node, job_id, None),
                ],
            );
        }
        let (params, _) = started_params(&rows, &start).unwrap();
        let [few, many] = run_both(&mut client, INSERT_STARTED, &params).await;
        assert_eq!(few.1, 3);
        assert!(
            few.0.contains("approve") && few.0.contains("ünïcode"),
            "{}",
            few.0
        );
        assert_eq!(few, many);

        let started = insert_started(&client, &rows, start).await.unwrap();
        let snapshot_before: String = client.query_one(SNAPSHOT, &[]).await.unwrap().get(0);
        assert_eq!(snapshot_before, few.0);

        // Workflow 0 moves on to a new job, 1 completes, 2 expects a lease it does not hold.
        let mut done = Writes::default();
        let mut expected = Vec::new();
        for (i, w) in started.iter().enumerate() {
            let id = w.workflow.id;
            let job_id = 1_000 + i as i64;
            expected.push(Expected {
                workflow_id: id,
                version: w.version,
                job_id,
                token: if i == 2 { Uuid::new_v4() } else { tokens[i] },
            });
            done.end_job(JobEnd {
                id: job_id,
                state: JobState::Completed,
                label: Some("done".to_owned()),
                output: (i == 0).then(|| json!({ "paid": true })),
                ended_by: "worker-a".to_owned(),
            });
            let next = (i == 0).then_some(2_000);
            if let Some(next) = next {
                done.insert_job(job(next, id, "ship", Some("op"), None));
            }
            let status = if i == 1 {
                WorkflowStatus::Completed
            } else {
                WorkflowStatus::Running
            };
            done.update_workflow(update(id, status, next.map(|_| "ship"), next));
            done.append(
                id,
                [event(
                    EventKind::JobCompleted,
                    "work",
                    job_id,
                    Some(json!([i])),
                )],
            );
        }
        let (params, _) = warm_params(&expected, &done);
        let [few, many] = run_both(&mut client, COMPLETE_WARM, &params).await;
        assert_eq!(few.1, 2, "the workflow whose lease is wrong is left out");
        assert_ne!(few.0, snapshot_before);
        assert_eq!(few, many);

        let locked = [
            (END_JOBS, end_params(&done.ends)),
            (INSERT_JOBS, job_params(&done.jobs)),
            (UPDATE_WORKFLOWS, workflow_params(&done.workflows)),
            (APPEND_EVENTS, event_params(&done.events)),
        ];
        for (statements, params) in locked {
            let [few, many] = run_both(&mut client, statements, &params).await;
            assert_ne!(few.0, snapshot_before, "{}", statements[0]);
            assert_eq!(few, many, "{}", statements[0]);
        }
    }

    #[test]
    fn a_batch_above_the_few_limit_is_read_the_many_way() {
        assert_eq!(Rows::of(1), Rows::Few);
        assert_eq!(Rows::of(Rows::FEW_MAX), Rows::Few);
        assert_eq!(Rows::of(Rows::FEW_MAX + 1), Rows::Many);
        assert!(INSERT_JOBS[0].contains("[r.i]") && !INSERT_JOBS[1].contains("[r.i]"));
        assert_eq!(Rows::Few.pick(INSERT_JOBS), INSERT_JOBS[0]);
        assert_eq!(Rows::Many.pick(INSERT_JOBS), INSERT_JOBS[1]);
    }
}
