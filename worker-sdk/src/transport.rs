//! The wire: the only module that sees generated protobuf types. It turns the SDK's own types
//! into requests and responses into the SDK's own types, and nothing else: retry policy and
//! the meaning of status codes live with the callers.

use std::time::{Duration, SystemTime};

use rondo_engine::{GraphDef, Incident, IncidentReason, Problem};
use rondo_gen::v1;
use rondo_gen::v1::graph_service_client::GraphServiceClient;
use rondo_gen::v1::worker_service_client::WorkerServiceClient;
use rondo_gen::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::client::{JobSummary, PutGraphInfo, StartOptions, Started, Workflow, WorkflowStatus};
use crate::error::{Error, Result};
use crate::job::{JobData, Progress, parse_object};

/// How long to wait for a TCP connection before calling the server unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of the short calls (heartbeat, complete, start, get, ...): a hung server must not
/// hold a job or a caller forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to a long poll's wait for the client-side deadline: the server answers at the end of
/// the wait, and the margin covers its work and the network.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(5);

/// Parses and configures the server address.
pub(crate) fn endpoint(url: &str) -> Result<Endpoint> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| invalid(e.to_string()))?;
    if endpoint.uri().scheme().is_none() || endpoint.uri().host().is_none() {
        return Err(invalid(
            "expected scheme and host, like `http://127.0.0.1:7233`".to_owned(),
        ));
    }
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

/// A request with a client-side deadline (also sent to the server as `grpc-timeout`).
fn request<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

fn to_system_time(timestamp: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    timestamp.and_then(|t| SystemTime::try_from(t).ok())
}

fn to_duration(duration: Option<prost_types::Duration>) -> Option<Duration> {
    duration
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A job as leased from the server, its payloads already parsed.
#[derive(Debug)]
pub(crate) struct LeasedJob {
    /// The job's facts; a payload that could not be parsed is left as `{}`.
    pub(crate) data: JobData,
    /// Proof of the lease, needed by every later call about the job.
    pub(crate) lease_token: String,
    /// Why a payload could not be parsed; the worker fails such a job at once.
    pub(crate) payload_error: Option<String>,
}

impl LeasedJob {
    fn from_wire(job: v1::Job) -> Self {
        let mut errors = Vec::new();
        let mut parse = |field: &str, text: &str| {
            parse_object(field, text).unwrap_or_else(|error| {
                errors.push(error);
                crate::job::empty_object()
            })
        };
        let params = parse("params", &job.params);
        let vars = parse("vars", &job.vars);
        let input = parse("input", &job.input);
        let data = JobData {
            id: job.id,
            workflow_id: job.workflow_id,
            graph: job.graph,
            graph_version: job.graph_version,
            node: job.node,
            operation: job.operation,
            params,
            vars,
            input,
            labels: job.labels,
            attempt: job.attempt,
            idempotency_key: job.idempotency_key,
            lease_expires_at: to_system_time(job.lease_expires_at),
            heartbeat_interval: to_duration(job.heartbeat_interval),
        };
        Self {
            data,
            lease_token: job.lease_token,
            payload_error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }
}

/// The server's acknowledgement of a completion or failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    /// The call repeated an earlier identical one and changed nothing.
    pub(crate) duplicate: bool,
    /// Node the workflow went to; empty when it completed.
    pub(crate) next_node: String,
}

/// The worker's calls.
#[derive(Debug, Clone)]
pub(crate) struct WorkerTransport {
    /// Generated stub over a shared, lazily connected channel.
    client: WorkerServiceClient<Channel>,
}

impl WorkerTransport {
    pub(crate) fn new(channel: Channel) -> Self {
        Self {
            client: WorkerServiceClient::new(channel),
        }
    }

    /// Long-polls for up to `max_jobs` jobs of `operations`, waiting up to `wait`.
    pub(crate) async fn poll(
        &self,
        worker: &str,
        operations: &[String],
        max_jobs: u32,
        wait: Duration,
    ) -> Result<Vec<LeasedJob>, Status> {
        let message = v1::PollJobsRequest {
            worker: worker.to_owned(),
            operations: operations.to_vec(),
            max_jobs,
            wait: prost_types::Duration::try_from(wait).ok(),
        };
        let response = self
            .client
            .clone()
            .poll_jobs(request(message, wait + LONG_POLL_MARGIN))
            .await?;
        Ok(response
            .into_inner()
            .jobs
            .into_iter()
            .map(LeasedJob::from_wire)
            .collect())
    }

    /// Extends the lease, carrying progress if any; returns the new end of the lease.
    pub(crate) async fn heartbeat(
        &self,
        job_id: i64,
        lease_token: &str,
        progress: Option<&Progress>,
    ) -> Result<Option<SystemTime>, Status> {
        let message = v1::HeartbeatJobRequest {
            job_id,
            lease_token: lease_token.to_owned(),
            progress: progress.map(|p| v1::Progress {
                percent: p.percent,
                message: p.message.clone(),
            }),
        };
        let response = self
            .client
            .clone()
            .heartbeat_job(request(message, CALL_TIMEOUT))
            .await?;
        Ok(to_system_time(response.into_inner().lease_expires_at))
    }

    /// Completes the job with `label` and `output` (JSON object text).
    pub(crate) async fn complete(
        &self,
        job_id: i64,
        lease_token: &str,
        label: &str,
        output: &str,
        next_operations: &[String],
    ) -> Result<(Ack, Option<LeasedJob>), Status> {
        let message = v1::CompleteJobRequest {
            job_id,
            lease_token: lease_token.to_owned(),
            label: label.to_owned(),
            output: output.to_owned(),
            next_operations: next_operations.to_vec(),
        };
        let response = self
            .client
            .clone()
            .complete_job(request(message, CALL_TIMEOUT))
            .await?
            .into_inner();
        let ack = Ack {
            duplicate: response.duplicate,
            next_node: response.next_node,
        };
        Ok((ack, response.next_job.map(LeasedJob::from_wire)))
    }

    /// Fails the job with `message`; the engine routes it by the label `error`.
    pub(crate) async fn fail(
        &self,
        job_id: i64,
        lease_token: &str,
        message: &str,
    ) -> Result<Ack, Status> {
        let message = v1::FailJobRequest {
            job_id,
            lease_token: lease_token.to_owned(),
            message: message.to_owned(),
        };
        let response = self
            .client
            .clone()
            .fail_job(request(message, CALL_TIMEOUT))
            .await?
            .into_inner();
        Ok(Ack {
            duplicate: response.duplicate,
            next_node: response.next_node,
        })
    }

    /// Gives the job back unfinished, so another worker takes it.
    pub(crate) async fn release(
        &self,
        job_id: i64,
        lease_token: &str,
        reason: &str,
    ) -> Result<Ack, Status> {
        let message = v1::ReleaseJobRequest {
            job_id,
            lease_token: lease_token.to_owned(),
            reason: reason.to_owned(),
        };
        self.client
            .clone()
            .release_job(request(message, CALL_TIMEOUT))
            .await?;
        Ok(Ack {
            duplicate: false,
            next_node: String::new(),
        })
    }
}

/// The client's calls, for [`crate::Client`].
#[derive(Debug, Clone)]
pub(crate) struct ClientTransport {
    /// Stub of the graph service.
    graphs: GraphServiceClient<Channel>,
    /// Stub of the workflow service, on the same channel.
    workflows: WorkflowServiceClient<Channel>,
}

impl ClientTransport {
    pub(crate) fn new(channel: Channel) -> Self {
        Self {
            graphs: GraphServiceClient::new(channel.clone()),
            workflows: WorkflowServiceClient::new(channel),
        }
    }

    pub(crate) async fn put_graph(&self, graph: &GraphDef) -> Result<PutGraphInfo> {
        let message = v1::PutGraphRequest {
            graph: Some(rondo_gen::convert::graph_to_proto(graph)),
        };
        let response = self
            .graphs
            .clone()
            .put_graph(request(message, CALL_TIMEOUT))
            .await
            .map_err(|status| Error::rpc("PutGraph", &status))?
            .into_inner();
        let stored = response.graph.ok_or_else(|| missing("PutGraph", "graph"))?;
        Ok(PutGraphInfo {
            name: stored
                .graph
                .map(|g| g.name)
                .unwrap_or_else(|| graph.name.clone()),
            version: stored.version,
            hash: stored.hash,
            created: response.created,
            warnings: response
                .warnings
                .into_iter()
                .map(problem_from_wire)
                .collect(),
        })
    }

    pub(crate) async fn start_workflow(&self, options: &StartOptions) -> Result<Started> {
        let message = v1::StartWorkflowRequest {
            graph: options.graph.clone(),
            version: options.version.unwrap_or(0),
            input: options.input.to_string(),
            idempotency_key: options.idempotency_key.clone().unwrap_or_default(),
            start_at: options.start_at.map(prost_types::Timestamp::from),
            wait: options
                .wait
                .and_then(|w| prost_types::Duration::try_from(w).ok()),
        };
        let deadline = CALL_TIMEOUT + options.wait.unwrap_or_default();
        let response = self
            .workflows
            .clone()
            .start_workflow(request(message, deadline))
            .await
            .map_err(|status| Error::rpc("StartWorkflow", &status))?
            .into_inner();
        Ok(Started {
            workflow: workflow("StartWorkflow", response.workflow)?,
            existing: response.existing,
            done: response.done,
        })
    }

    pub(crate) async fn get_workflow(&self, id: &str) -> Result<Workflow> {
        let message = v1::GetWorkflowRequest { id: id.to_owned() };
        let response = self
            .workflows
            .clone()
            .get_workflow(request(message, CALL_TIMEOUT))
            .await
            .map_err(|status| Error::rpc("GetWorkflow", &status))?;
        workflow("GetWorkflow", response.into_inner().workflow)
    }

    pub(crate) async fn await_workflow(&self, id: &str, wait: Duration) -> Result<Workflow> {
        let message = v1::AwaitWorkflowRequest {
            id: id.to_owned(),
            wait: prost_types::Duration::try_from(wait).ok(),
        };
        let response = self
            .workflows
            .clone()
            .await_workflow(request(message, wait + LONG_POLL_MARGIN))
            .await
            .map_err(|status| Error::rpc("AwaitWorkflow", &status))?;
        workflow("AwaitWorkflow", response.into_inner().workflow)
    }

    pub(crate) async fn cancel_workflow(&self, id: &str, reason: &str) -> Result<Workflow> {
        let message = v1::CancelWorkflowRequest {
            id: id.to_owned(),
            reason: reason.to_owned(),
            operator: String::new(),
        };
        let response = self
            .workflows
            .clone()
            .cancel_workflow(request(message, CALL_TIMEOUT))
            .await
            .map_err(|status| Error::rpc("CancelWorkflow", &status))?;
        workflow("CancelWorkflow", response.into_inner().workflow)
    }
}

fn missing(method: &str, field: &str) -> Error {
    Error::Payload(format!("{method} response has no `{field}`"))
}

fn problem_from_wire(problem: v1::GraphProblem) -> Problem {
    Problem {
        node: non_empty(problem.node),
        label: non_empty(problem.label),
        field: non_empty(problem.field),
        message: problem.message,
    }
}

fn workflow(method: &str, workflow: Option<v1::Workflow>) -> Result<Workflow> {
    let w = workflow.ok_or_else(|| missing(method, "workflow"))?;
    let status = match v1::WorkflowStatus::try_from(w.status) {
        Ok(v1::WorkflowStatus::Pending) => WorkflowStatus::Pending,
        Ok(v1::WorkflowStatus::Running) => WorkflowStatus::Running,
        Ok(v1::WorkflowStatus::Completed) => WorkflowStatus::Completed,
        Ok(v1::WorkflowStatus::Cancelled) => WorkflowStatus::Cancelled,
        Ok(v1::WorkflowStatus::Stuck) => WorkflowStatus::Stuck,
        Ok(v1::WorkflowStatus::Unspecified) | Err(_) => {
            return Err(Error::Payload(format!(
                "{method}: workflow `{}` has unknown status {}",
                w.id, w.status
            )));
        }
    };
    let payload = |field: &str, text: &str| {
        parse_object(field, text)
            .map_err(|error| Error::Payload(format!("{method}: workflow `{}`: {error}", w.id)))
    };
    let input = payload("input", &w.input)?;
    let vars = payload("vars", &w.vars)?;
    let incident = match w.incident {
        Some(incident) => Some(incident_from_wire(method, incident)?),
        None => None,
    };
    Ok(Workflow {
        input,
        vars,
        id: w.id,
        graph: w.graph,
        graph_version: w.graph_version,
        status,
        current_node: non_empty(w.current_node),
        step_count: w.step_count,
        outcome: non_empty(w.outcome),
        idempotency_key: non_empty(w.idempotency_key),
        incident,
        current_job: w.current_job.map(|job| JobSummary {
            id: job.id,
            node: job.node,
            operation: non_empty(job.operation),
            attempt: job.attempt,
            idempotency_key: job.idempotency_key,
            worker: non_empty(job.worker),
            progress: job.progress.map(|p| Progress {
                percent: p.percent,
                message: p.message,
            }),
        }),
    })
}

fn incident_from_wire(method: &str, incident: v1::Incident) -> Result<Incident> {
    let reason = match v1::IncidentReason::try_from(incident.reason) {
        Ok(v1::IncidentReason::NoRoute) => IncidentReason::NoRoute,
        Ok(v1::IncidentReason::RetriesExhausted) => IncidentReason::RetriesExhausted,
        Ok(v1::IncidentReason::StepLimit) => IncidentReason::StepLimit,
        Ok(v1::IncidentReason::Deadline) => IncidentReason::Deadline,
        Ok(v1::IncidentReason::EngineError) => IncidentReason::EngineError,
        Ok(v1::IncidentReason::Unspecified) | Err(_) => {
            return Err(Error::Payload(format!(
                "{method}: incident at node `{}` has unknown reason {}",
                incident.node, incident.reason
            )));
        }
    };
    Ok(Incident {
        reason,
        node: incident.node,
        label: non_empty(incident.label),
        message: incident.message,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wire_job() -> v1::Job {
        v1::Job {
            id: 7,
            workflow_id: "wf-1".into(),
            graph: "order".into(),
            graph_version: 2,
            node: "charge".into(),
            operation: "payments.charge".into(),
            params: String::new(),
            vars: r#"{"amount": 42}"#.into(),
            input: r#"{"order_id": "o-1"}"#.into(),
            labels: vec!["charged".into(), "declined".into()],
            attempt: 2,
            idempotency_key: "key-1".into(),
            lease_token: "lease-1".into(),
            lease_expires_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
            created_at: None,
        }
    }

    #[test]
    fn wire_job_becomes_job_data_with_parsed_payloads() {
        let leased = LeasedJob::from_wire(wire_job());
        assert_eq!(leased.payload_error, None);
        assert_eq!(leased.lease_token, "lease-1");
        let data = leased.data;
        assert_eq!(data.params, json!({}));
        assert_eq!(data.vars, json!({"amount": 42}));
        assert_eq!(data.input, json!({"order_id": "o-1"}));
        assert_eq!(data.attempt, 2);
        assert_eq!(data.labels, ["charged", "declined"]);
        assert_eq!(data.heartbeat_interval, Some(Duration::from_secs(10)));
        assert_eq!(
            data.lease_expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn unreadable_payloads_are_reported_together() {
        let mut job = wire_job();
        job.vars = "[]".into();
        job.input = "{".into();
        let leased = LeasedJob::from_wire(job);
        let error = leased.payload_error.expect("payload error");
        assert!(
            error.starts_with("vars must be a JSON object, not an array; input is not valid JSON"),
            "{error}"
        );
        assert_eq!(leased.data.vars, json!({}));
    }

    #[test]
    fn zero_heartbeat_interval_means_none() {
        let mut job = wire_job();
        job.heartbeat_interval = Some(prost_types::Duration::default());
        assert_eq!(LeasedJob::from_wire(job).data.heartbeat_interval, None);
    }

    #[test]
    fn endpoint_needs_scheme_and_host() {
        assert!(endpoint("http://127.0.0.1:7233").is_ok());
        for bad in ["127.0.0.1:7233", "not a url", ""] {
            assert!(
                matches!(endpoint(bad), Err(Error::InvalidUrl { .. })),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn workflow_from_wire_reads_status_payloads_and_incident() {
        let wire = v1::Workflow {
            id: "wf-1".into(),
            graph: "order".into(),
            graph_version: 1,
            status: v1::WorkflowStatus::Stuck as i32,
            current_node: "charge".into(),
            input: r#"{"a": 1}"#.into(),
            vars: String::new(),
            incident: Some(v1::Incident {
                reason: v1::IncidentReason::NoRoute as i32,
                message: "no edge for `timeout`".into(),
                node: "charge".into(),
                label: "timeout".into(),
                at: None,
            }),
            ..Default::default()
        };
        let w = workflow("GetWorkflow", Some(wire)).expect("readable workflow");
        assert_eq!(w.status, WorkflowStatus::Stuck);
        assert!(w.status.is_done());
        assert_eq!(w.current_node.as_deref(), Some("charge"));
        assert_eq!(w.vars, json!({}));
        assert_eq!(w.outcome, None);
        let incident = w.incident.expect("incident");
        assert_eq!(incident.reason, IncidentReason::NoRoute);
        assert_eq!(incident.label.as_deref(), Some("timeout"));
    }

    #[test]
    fn workflow_with_unknown_status_is_a_payload_error() {
        let wire = v1::Workflow {
            id: "wf-1".into(),
            status: 99,
            ..Default::default()
        };
        assert!(matches!(
            workflow("GetWorkflow", Some(wire)),
            Err(Error::Payload(_))
        ));
    }
}
