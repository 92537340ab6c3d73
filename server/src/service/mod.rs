//! Use cases. Each state change is ONE transaction: lock the workflow row, ask the pure engine
//! what happens, and apply its answer through the store. Rule: no SQL here and no transport
//! types; errors are [`ServiceError`], turned into gRPC statuses once, in `api/`.
//!
//! How a step flows: a use case (an entry in `complete/`, `start/`, `jobs`, `workflows`,
//! `inbox`, `sweeper`, `schedules`) reads or locks its rows, `plan` decides the step without
//! any IO, and `step` stages it in the transaction's outbox and carries out what it
//! announces once it has committed. This module holds what they all share: the [`Service`]
//! itself, its limits and the graph cache.

pub mod complete;
pub mod dispatch;
pub mod error;
pub mod graphs;
mod group;
pub mod inbox;
pub mod jobs;
mod plan;
pub mod schedules;
pub mod start;
mod step;
pub mod sweeper;
pub mod types;
mod warm_jobs;
pub mod workflows;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rondo_engine::{Graph, GraphDef};
use serde_json::{Map, Value};

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::store::batch;
use crate::store::listen::Notice;
use crate::store::{self, Pool};
use group::Group;
use types::{Completed, Pending, PendingStart, Read, Started, WorkflowView};

pub use dispatch::Dispatcher;
pub use error::ServiceError;

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
    /// Completions waiting to be applied together (see `complete`).
    completions: Arc<Group<Pending, Completed>>,
    /// Starts waiting to be applied together (see `start`).
    starts: Arc<Group<PendingStart, Started>>,
    /// Workflow reads waiting for their batch.
    reads: Arc<Group<Read, WorkflowView>>,
    /// Jobs leased as this server wrote them, for completions decided from memory.
    warm: Arc<warm_jobs::WarmJobs>,
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
