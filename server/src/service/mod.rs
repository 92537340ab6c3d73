//! Use cases. Each state change is ONE transaction: lock the workflow row, ask the pure engine
//! what happens, and apply its answer through the store. Rule: no SQL here and no transport
//! types; errors are [`ServiceError`], turned into gRPC statuses once, in `api/`.

pub mod complete;
pub mod dispatch;
pub mod graphs;
mod group;
pub mod inbox;
pub mod jobs;
mod plan;
pub mod schedules;
mod start;
mod step;
pub mod sweeper;
pub mod types;
mod warm;
pub mod workflows;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rondo_engine::{Graph, GraphDef, Problem};
use serde_json::{Map, Value};
use uuid::Uuid;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::store::batch::{self, Writes};
use crate::store::jobs::{JobRecord, JobWithWorkflow};
use crate::store::listen::Notice;
use crate::store::workflows::WorkflowStatus;
use crate::store::{self, Pool, StoreError};
use plan::Count;
use types::{LeasedJob, WorkflowView};

pub use dispatch::Dispatcher;

/// Errors of the service layer; each maps to exactly one gRPC status code in `api/`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; the message says which field and how to fix it.
    #[error("{0}")]
    InvalidArgument(String),
    /// A graph definition failed validation.
    #[error("graph is invalid: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidGraph {
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing exists already in a different form.
    #[error("{0}")]
    AlreadyExists(String),
    /// The system is not in the state the request needs.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request lost a race (a lease, or an operator's expected state).
    #[error("{0}")]
    Aborted(String),
    /// The database is unreachable; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data; logged once, shown to clients as "internal error".
    #[error("internal: {0}")]
    Internal(String),
}

impl From<deadpool_postgres::PoolError> for ServiceError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<tokio_postgres::Error> for ServiceError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Pool(_) => ServiceError::Unavailable(e.to_string()),
            StoreError::Db(db) if db.is_closed() || db.as_db_error().is_none() => {
                ServiceError::Unavailable(e.to_string())
            }
            _ => ServiceError::Internal(e.to_string()),
        }
    }
}

/// What a transaction writes and announces: the writes its steps gathered (sent in a few
/// array statements just before the commit), and the notifications, leased jobs and counts
/// that [`Service::commit`] carries out once it has committed. Nothing in it leaves the
/// process before then, so a step that is decided again (a fallback) counts once.
#[derive(Default)]
pub(crate) struct Outbox {
    /// Writes not yet sent.
    pub writes: Writes,
    /// Notifications for waiting pollers and watchers, here and on other servers.
    pub notices: Vec<Notice>,
    /// Jobs leased inside the transaction, delivered after it commits.
    pub leases: Vec<Lease>,
    /// What the steps count, by workflow: recorded for the workflows written.
    pub counts: Vec<(Uuid, Count)>,
}

impl Outbox {
    /// Nothing yet.
    pub fn new() -> Self {
        Outbox::default()
    }

    /// Adds a notification.
    pub fn push(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    /// Takes over another outbox, after this one's contents.
    pub fn extend(&mut self, other: Outbox) {
        self.writes.extend(other.writes);
        self.notices.extend(other.notices);
        self.leases.extend(other.leases);
        self.counts.extend(other.counts);
    }
}

/// A job leased inside a transaction, with what its worker needs, and who gets it.
pub(crate) struct Lease {
    /// The job.
    pub job_id: i64,
    /// Its workflow's graph.
    pub graph: Arc<Graph>,
    /// Graph name and version, vars and input of its workflow after the step.
    pub context: (String, i32, Value, Value),
    /// Who gets it.
    pub to: Recipient,
}

/// Who a job leased inside a transaction goes to.
pub(crate) enum Recipient {
    /// The caller, in its answer (eager dispatch on completion).
    Caller,
    /// A poller waiting on this server.
    Poller(dispatch::Reservation),
}

/// Validated graphs by (name, version).
type GraphCache = HashMap<(String, i32), Arc<Graph>>;

/// Limits and defaults the use cases apply.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Lease of a job whose node sets no timeout.
    pub default_lease: Duration,
    /// Largest JSON payload in bytes.
    pub max_payload_bytes: usize,
    /// Longest wait of a long poll.
    pub max_poll_wait: Duration,
}

impl Limits {
    /// Checks a merged payload against the size limit.
    pub(crate) fn check_size(&self, field: &str, value: &Value) -> Result<(), ServiceError> {
        let len = value.to_string().len();
        if len > self.max_payload_bytes {
            return Err(too_large(field, len, self.max_payload_bytes));
        }
        Ok(())
    }
}

/// The use cases, shared by every gRPC service and background loop of one server.
#[derive(Clone)]
pub struct Service {
    /// Connection pool; no connection is held while a poll waits.
    pool: Pool,
    /// Limits from the configuration.
    limits: Arc<Limits>,
    /// Validated graphs by (name, version): versions are immutable, so they never go stale.
    graphs: Arc<RwLock<GraphCache>>,
    /// Waiting pollers and `AwaitWorkflow` calls, woken by notifications.
    dispatch: Arc<Dispatcher>,
    /// Prometheus metrics.
    metrics: Arc<Metrics>,
    /// Sends notifications after commit, batched on a connection of its own: a NOTIFY inside
    /// the step's transaction would serialize every commit on PostgreSQL's notify lock.
    notifier: mpsc::UnboundedSender<Notice>,
    /// Job ids taken from the sequence ahead of need, so a step knows its job's id before
    /// writing anything.
    job_ids: Arc<Mutex<VecDeque<i64>>>,
    /// Completions waiting to be applied together.
    completions: Arc<complete::Completions>,
    /// Starts waiting to be applied together.
    starts: Arc<start::Starts>,
    /// Workflow reads waiting for their batch.
    reads: Arc<workflows::Reads>,
    /// Jobs leased as this server wrote them, for completions decided from memory.
    warm: Arc<warm::WarmJobs>,
    /// Turns to run a claim query: at most a quarter of the pool claims at once.
    claims: Arc<tokio::sync::Semaphore>,
}

impl Service {
    /// Builds the service over a pool.
    pub fn new(
        pool: Pool,
        limits: Limits,
        dispatch: Arc<Dispatcher>,
        metrics: Arc<Metrics>,
        notifier: mpsc::UnboundedSender<Notice>,
    ) -> Self {
        let claim_turns = (pool.status().max_size / 4).max(1);
        Service {
            pool,
            limits: Arc::new(limits),
            graphs: Arc::default(),
            dispatch,
            metrics,
            notifier,
            job_ids: Arc::default(),
            completions: Arc::default(),
            starts: Arc::default(),
            reads: Arc::default(),
            warm: Arc::default(),
            claims: Arc::new(tokio::sync::Semaphore::new(claim_turns)),
        }
    }

    /// Sends the gathered writes and commits, then wakes this server's own waiters in memory,
    /// hands the notifications to the notifier for the other servers, and delivers the jobs
    /// leased to waiting pollers. Returns the jobs leased to the caller. A notification lost
    /// after the commit only delays a wake-up until the dispatcher's periodic re-check.
    pub(crate) async fn commit(
        &self,
        tx: store::Transaction<'_>,
        outbox: Outbox,
    ) -> Result<Vec<LeasedJob>, ServiceError> {
        let Outbox {
            writes,
            notices,
            leases,
            counts,
        } = outbox;
        let flushed = writes.flush(&tx).await?;
        tx.commit().await?;
        Ok(self.after_commit(&flushed.written, notices, leases, &counts, &flushed.created))
    }

    /// Like [`Service::commit`] for a pipelined transaction: the writes and the COMMIT go in
    /// one round trip.
    pub(crate) async fn commit_pipelined(
        &self,
        tx: store::PipelinedTx,
        outbox: Outbox,
    ) -> Result<Vec<LeasedJob>, ServiceError> {
        let Outbox {
            writes,
            notices,
            leases,
            counts,
        } = outbox;
        writes.prepare(tx.client()).await?;
        let flushed = tx.commit_with(writes.flush(tx.client())).await?;
        drop(tx);
        Ok(self.after_commit(&flushed.written, notices, leases, &counts, &flushed.created))
    }

    /// Carries out what a committed transaction announces, for what it wrote: the hand-overs
    /// of `written`, the counts, the notices and the leases of the jobs `created`. Returns
    /// the jobs leased to the caller.
    pub(crate) fn after_commit(
        &self,
        written: &[batch::Written],
        notices: Vec<Notice>,
        leases: Vec<Lease>,
        counts: &[(Uuid, Count)],
        created: &[JobRecord],
    ) -> Vec<LeasedJob> {
        self.hand_over_written(written);
        self.count(counts);
        self.announce(notices, leases, created)
    }

    /// Records what written steps count.
    pub(crate) fn count(&self, counts: &[(Uuid, Count)]) {
        let metrics = self.metrics();
        for (_, count) in counts {
            match count {
                Count::Created(operation) => metrics.job_created(operation),
                Count::Completed { operation, label } => metrics.job_completed(operation, label),
                Count::Retried(node) => metrics.retried(node),
                Count::Transition(took) => metrics.transition(*took),
            }
        }
    }

    /// After a commit: remembers the jobs of `written` leased as they were written (see
    /// `warm`) and the workflows left running, and hands the workflows that completed or were
    /// cancelled to this server's watchers, so that they answer without reading them back
    /// (before the notices wake them).
    fn hand_over_written(&self, written: &[batch::Written]) {
        self.warm.remember(written);
        for w in written {
            let running = w.workflow.status == WorkflowStatus::Running;
            self.dispatch.wrote_workflow(w.workflow.id, running);
            if let (true, Some(job)) = (w.workflow.status.is_final(), &w.job) {
                self.dispatch.workflow_finished(Arc::new(WorkflowView {
                    workflow: w.workflow.clone(),
                    job: Some(job.clone()),
                }));
            }
        }
    }

    /// After a commit: wakes this server's own waiters in memory, hands the notifications to
    /// the notifier for the other servers, and delivers the jobs leased to waiting pollers.
    /// Returns the jobs leased to the caller. A lease whose job was not written (its workflow
    /// was not inserted after all) is dropped, which sends its poller back to look. It cannot
    /// fail: what it announces has committed.
    pub(crate) fn announce(
        &self,
        notices: Vec<Notice>,
        leases: Vec<Lease>,
        jobs: &[JobRecord],
    ) -> Vec<LeasedJob> {
        for notice in notices {
            self.dispatch.deliver(notice.clone());
            let _ = self.notifier.send(notice);
        }
        let mut mine = Vec::new();
        for lease in leases {
            let Some(job) = jobs.iter().find(|j| j.id == lease.job_id) else {
                continue;
            };
            let leased = match self
                .leased_job(&lease.graph, with_context(job.clone(), lease.context))
            {
                Ok(leased) => leased,
                Err(error) => {
                    // Its node is in its validated graph, so this cannot happen; the job's
                    // lease runs out and the engine times it out.
                    tracing::error!(job = job.id, %error, "a job leased at commit cannot be handed over");
                    continue;
                }
            };
            if let Some(op) = &job.operation {
                self.metrics.job_leased(op);
            }
            match lease.to {
                Recipient::Caller => mine.push(leased),
                Recipient::Poller(reservation) => {
                    if let Err(job) = reservation.deliver(leased) {
                        self.dispatch.orphan(*job);
                    }
                }
            }
        }
        mine
    }

    /// The next job id, from the ids taken ahead.
    pub(crate) async fn next_job_id(
        &self,
        client: &impl store::GenericClient,
    ) -> Result<i64, ServiceError> {
        if let Some(id) = self.job_ids.lock().expect("job ids lock").pop_front() {
            return Ok(id);
        }
        let mut ids: VecDeque<i64> = batch::next_job_ids(client, JOB_IDS_AHEAD).await?.into();
        let id = ids
            .pop_front()
            .ok_or_else(|| ServiceError::Internal("the job id sequence returned no ids".into()))?;
        self.job_ids.lock().expect("job ids lock").extend(ids);
        Ok(id)
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The dispatcher.
    pub fn dispatch(&self) -> &Arc<Dispatcher> {
        &self.dispatch
    }

    /// Returns the validated graph of a stored version (0: the latest) and its version
    /// number, from cache or the database.
    pub(crate) async fn graph(
        &self,
        client: &impl store::GenericClient,
        name: &str,
        version: i32,
    ) -> Result<(Arc<Graph>, i32), ServiceError> {
        // Versions never change; the number of the latest is known until a notification
        // says a new one was stored.
        let version = match (version, self.dispatch.latest_graph(name)) {
            (0, Ok(latest)) => latest,
            (0, Err(epoch)) => match store::graphs::latest_version(client, name).await? {
                Some(latest) => {
                    self.dispatch.remember_latest_graph(name, latest, epoch);
                    latest
                }
                None => 0,
            },
            (v, _) => v,
        };
        if let Some(g) = self.cached_graph(name, version) {
            return Ok((g, version));
        }
        let record = store::graphs::get(client, name, version).await?.ok_or_else(|| {
            ServiceError::NotFound(if version == 0 {
                format!("graph `{name}` not found; apply it first with `rondo graph apply`")
            } else {
                format!("graph `{name}` has no version {version}; `rondo graph get {name}` shows the latest")
            })
        })?;
        let def: GraphDef = serde_json::from_value(record.definition).map_err(|e| {
            ServiceError::Internal(format!("stored graph `{name}` v{version}: {e}"))
        })?;
        let graph = def
            .validate()
            .map_err(|p| {
                ServiceError::Internal(format!("stored graph `{name}` v{version} invalid: {p:?}"))
            })?
            .graph;
        let graph = Arc::new(graph);
        self.graphs
            .write()
            .expect("graph cache lock")
            .insert((name.to_owned(), record.version), graph.clone());
        Ok((graph, record.version))
    }

    /// The validated graph a workflow runs.
    pub(crate) async fn graph_of(
        &self,
        client: &impl store::GenericClient,
        workflow: &store::workflows::WorkflowRecord,
    ) -> Result<Arc<Graph>, ServiceError> {
        let (graph, _) = self
            .graph(client, &workflow.graph_name, workflow.graph_version)
            .await?;
        Ok(graph)
    }

    fn cached_graph(&self, name: &str, version: i32) -> Option<Arc<Graph>> {
        if version == 0 {
            return None;
        }
        self.graphs
            .read()
            .expect("graph cache lock")
            .get(&(name.to_owned(), version))
            .cloned()
    }

    /// Parses a JSON object payload ("" means `{}`), enforcing the size limit.
    pub(crate) fn parse_object(
        &self,
        field: &str,
        text: &str,
    ) -> Result<Map<String, Value>, ServiceError> {
        if text.len() > self.limits.max_payload_bytes {
            return Err(too_large(field, text.len(), self.limits.max_payload_bytes));
        }
        if text.trim().is_empty() {
            return Ok(Map::new());
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(ServiceError::InvalidArgument(format!(
                "`{field}` must be a JSON object, got {}; wrap the value, e.g. {{\"value\": ...}}",
                json_kind(&other)
            ))),
            Err(e) => Err(ServiceError::InvalidArgument(format!(
                "`{field}` is not valid JSON: {e}"
            ))),
        }
    }

    /// The limits from the configuration.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }
}

fn too_large(field: &str, len: usize, max: usize) -> ServiceError {
    ServiceError::InvalidArgument(format!(
        "`{field}` is {len} bytes, over the limit of {max} bytes; store large data elsewhere and \
         pass a reference"
    ))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Job ids taken from the sequence at a time: one query per this many steps.
const JOB_IDS_AHEAD: i32 = 100;

/// A created job with its workflow's graph, vars and input.
fn with_context(
    job: JobRecord,
    (graph_name, graph_version, vars, input): (String, i32, Value, Value),
) -> JobWithWorkflow {
    JobWithWorkflow {
        job,
        graph_name,
        graph_version,
        vars,
        input,
    }
}

/// Converts a count to the database's integer type, saturating.
pub(crate) fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Milliseconds of a duration for the database, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A service over a fresh test database, for the tests of use cases that need the
    //! batch machinery's insides.

    use std::sync::Arc;
    use std::time::Duration;

    use rondo_engine::GraphDef;

    use super::{Dispatcher, Limits, Service};
    use crate::metrics::Metrics;
    use crate::testing::TestDb;

    /// A service over `db` with the default limits and `yaml`'s graph put.
    pub async fn service_with_graph(db: &TestDb, yaml: &str) -> Service {
        let pool = crate::store::pool(&db.url, 4).expect("pool");
        let limits = Limits {
            default_lease: Duration::from_secs(300),
            max_payload_bytes: 1 << 20,
            max_poll_wait: Duration::from_secs(30),
        };
        let (notifier, _) = tokio::sync::mpsc::unbounded_channel();
        let service = Service::new(
            pool,
            limits,
            Arc::new(Dispatcher::default()),
            Arc::new(Metrics::default()),
            notifier,
        );
        let def: GraphDef = rondo_engine::parse_yaml(yaml).expect("graph yaml");
        service.put_graph(def).await.expect("graph put");
        service
    }
}
