//! A small typed client for what applications and tests do next to their workers: put a
//! graph, start a workflow, and watch it finish.

use std::time::{Duration, SystemTime};

use rondo_engine::{GraphDef, Incident, Problem};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::{Progress, json_kind};
use crate::transport::{self, ClientTransport};

/// A connection to a Rondo server for graphs and workflows.
///
/// Cloning is cheap: clones share one connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// The gRPC stubs, behind the transport module so no generated type leaks out.
    transport: ClientTransport,
}

/// What the server did with a graph definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutGraphInfo {
    /// Graph name.
    pub name: String,
    /// The version stored under the name (new, or the existing one with the same hash).
    pub version: u32,
    /// Canonical hash of the definition.
    pub hash: String,
    /// True when this call created a new version.
    pub created: bool,
    /// Non-fatal findings, such as an operation node without a `timeout` edge.
    pub warnings: Vec<Problem>,
}

/// How to start a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct StartOptions {
    /// Graph name.
    pub graph: String,
    /// Graph version; `None` for the latest.
    pub version: Option<u32>,
    /// Input (a JSON object); becomes the workflow's initial vars.
    pub input: Value,
    /// At most one workflow exists per key: repeating the same start returns it.
    pub idempotency_key: Option<String>,
    /// A later start; the workflow stays PENDING until then.
    pub start_at: Option<SystemTime>,
    /// Answer only once the workflow is done or this wait runs out (the server caps it at
    /// about 30 s): one call instead of [`Client::start_workflow`] then
    /// [`Client::await_workflow`].
    pub wait: Option<Duration>,
}

impl StartOptions {
    /// Starts the latest version of `graph` now with `input`, without an idempotency key.
    pub fn new(graph: impl Into<String>, input: Value) -> Self {
        Self {
            graph: graph.into(),
            version: None,
            input,
            idempotency_key: None,
            start_at: None,
            wait: None,
        }
    }

    /// Uses this idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Pins the graph version.
    #[must_use]
    pub fn version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }

    /// Starts at `at` instead of now.
    #[must_use]
    pub fn start_at(mut self, at: SystemTime) -> Self {
        self.start_at = Some(at);
        self
    }

    /// Waits up to `wait` for the workflow to be done before answering; [`Started::done`]
    /// says whether it was. The workflow is started either way.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }
}

/// The answer to a start.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// The workflow, new or existing.
    pub workflow: Workflow,
    /// True when the idempotency key matched an existing workflow and nothing was started.
    pub existing: bool,
    /// True when the workflow is done (see [`WorkflowStatus::is_done`]); with
    /// [`StartOptions::wait`], it is then as it ended.
    pub done: bool,
}

/// Lifecycle state of a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowStatus {
    /// Waiting for its start time.
    Pending,
    /// Walking its graph.
    Running,
    /// Took a terminal label; the outcome holds it.
    Completed,
    /// Cancelled by an operator or client.
    Cancelled,
    /// Cannot move on without an operator; the incident says why.
    Stuck,
}

impl WorkflowStatus {
    /// True unless PENDING or RUNNING: the workflow will not move without an operator.
    /// STUCK counts as done for this purpose, as it does for `AwaitWorkflow`.
    pub fn is_done(self) -> bool {
        !matches!(self, WorkflowStatus::Pending | WorkflowStatus::Running)
    }
}

/// One workflow as the server sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// Workflow id.
    pub id: String,
    /// Graph name.
    pub graph: String,
    /// Graph version the workflow runs.
    pub graph_version: u32,
    /// Status.
    pub status: WorkflowStatus,
    /// Node the workflow is at; `None` once completed through a terminal label.
    pub current_node: Option<String>,
    /// Input given at start (a JSON object).
    pub input: Value,
    /// The workflow's memory (a JSON object): the input with every job output merged in.
    pub vars: Value,
    /// Steps taken so far.
    pub step_count: u32,
    /// Terminal label taken, once COMPLETED.
    pub outcome: Option<String>,
    /// Idempotency key given at start, if any.
    pub idempotency_key: Option<String>,
    /// Why the workflow is STUCK, while it is.
    pub incident: Option<Incident>,
    /// The job in hand, if any (only from [`Client::get_workflow`],
    /// [`Client::await_workflow`] and a start with [`StartOptions::wait`]).
    pub current_job: Option<JobSummary>,
}

/// A workflow's job in hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Job id.
    pub id: i64,
    /// Node of the job.
    pub node: String,
    /// Operation; `None` for a human node.
    pub operation: Option<String>,
    /// Attempt number within the retry streak, from 1.
    pub attempt: u32,
    /// Idempotency key handed to workers.
    pub idempotency_key: String,
    /// Identity of the worker holding the lease, if leased.
    pub worker: Option<String>,
    /// Last progress reported by heartbeat.
    pub progress: Option<Progress>,
}

impl Client {
    /// Prepares a connection to the server at `url` (such as `http://127.0.0.1:7233`). Nothing
    /// is sent until the first call, so this succeeds while the server is still starting.
    ///
    /// Call it inside a Tokio runtime: the connection's background task is spawned on it.
    pub fn connect(url: &str) -> Result<Self> {
        let channel = transport::endpoint(url)?.connect_lazy();
        Ok(Self {
            transport: ClientTransport::new(channel),
        })
    }

    /// Stores a graph definition, or finds the identical version already stored.
    /// An invalid graph is an [`Error::Rpc`] with `InvalidArgument` listing every problem.
    pub async fn put_graph(&self, graph: &GraphDef) -> Result<PutGraphInfo> {
        self.transport.put_graph(graph).await
    }

    /// Starts a workflow.
    pub async fn start_workflow(&self, options: StartOptions) -> Result<Started> {
        if !options.input.is_object() {
            return Err(Error::Payload(format!(
                "workflow input must be a JSON object, not {}",
                json_kind(&options.input)
            )));
        }
        self.transport.start_workflow(&options).await
    }

    /// Returns one workflow; `NotFound` when there is none with this id.
    pub async fn get_workflow(&self, id: &str) -> Result<Workflow> {
        self.transport.get_workflow(id).await
    }

    /// Waits up to `wait` (the server caps it at about 30 s) until the workflow is done (see
    /// [`WorkflowStatus::is_done`]) and returns it as it is then, done or not.
    pub async fn await_workflow(&self, id: &str, wait: Duration) -> Result<Workflow> {
        self.transport.await_workflow(id, wait).await
    }

    /// Cancels a PENDING, RUNNING or STUCK workflow and its job in hand; the worker holding
    /// that job sees [`crate::Job::cancelled`] fire.
    pub async fn cancel_workflow(&self, id: &str, reason: &str) -> Result<Workflow> {
        self.transport.cancel_workflow(id, reason).await
    }
}
