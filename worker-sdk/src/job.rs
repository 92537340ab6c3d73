//! What a handler receives ([`Job`]) and what it answers ([`Outcome`] or [`HandlerError`]).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// The facts of one job: one attempt at one node of one workflow.
///
/// The worker fills it from the server; tests of a handler can fill it by hand and wrap it with
/// [`Job::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobData {
    /// Job id, unique on the server.
    pub id: i64,
    /// Id of the workflow the job belongs to.
    pub workflow_id: String,
    /// Name of the workflow's graph.
    pub graph: String,
    /// Version of the workflow's graph.
    pub graph_version: u32,
    /// Node of the graph this job performs.
    pub node: String,
    /// Operation the worker performs, such as `payments.charge`.
    pub operation: String,
    /// Static parameters of the node (a JSON object).
    pub params: Value,
    /// The workflow's vars when the job was created (a JSON object).
    pub vars: Value,
    /// The workflow's input (a JSON object).
    pub input: Value,
    /// Labels the handler may answer with.
    pub labels: Vec<String>,
    /// Attempt number within the current retry streak, from 1.
    pub attempt: u32,
    /// Key for the worker's own side effects: the same for every attempt of a retry streak on
    /// this node, new each time the node is entered from elsewhere.
    pub idempotency_key: String,
    /// When the lease runs out unless a heartbeat extends it, as last heard from the server.
    pub lease_expires_at: Option<SystemTime>,
    /// How often the graph wants a heartbeat; `None` when only the lease matters.
    pub heartbeat_interval: Option<Duration>,
}

impl Default for JobData {
    /// An empty job on attempt 1 whose payloads are empty JSON objects.
    fn default() -> Self {
        Self {
            id: 0,
            workflow_id: String::new(),
            graph: String::new(),
            graph_version: 0,
            node: String::new(),
            operation: String::new(),
            params: empty_object(),
            vars: empty_object(),
            input: empty_object(),
            labels: Vec::new(),
            attempt: 1,
            idempotency_key: String::new(),
            lease_expires_at: None,
            heartbeat_interval: None,
        }
    }
}

/// Progress a handler reports; it travels with the next heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Percent done, 0 to 100.
    pub percent: u32,
    /// Free text for operators.
    pub message: String,
}

/// One job handed to a handler: its data, a cancellation signal and a progress reporter.
///
/// Cloning is cheap and every clone refers to the same job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Immutable facts of the job, shared by every clone.
    data: Arc<JobData>,
    /// Fired by the worker when the server says the workflow was cancelled, the lease was lost,
    /// or the shutdown grace ran out.
    cancel: CancellationToken,
    /// Latest progress not yet sent; the heartbeat loop takes it.
    progress: Arc<Mutex<Option<Progress>>>,
}

impl Job {
    /// Wraps job data with the token that cancels it. The worker does this for every leased
    /// job; a test of a handler can do the same and cancel the token to simulate a cancelled
    /// workflow.
    pub fn new(data: JobData, cancel: CancellationToken) -> Self {
        Self {
            data: Arc::new(data),
            cancel,
            progress: Arc::new(Mutex::new(None)),
        }
    }

    /// All facts of the job at once.
    pub fn data(&self) -> &JobData {
        &self.data
    }

    /// Job id.
    pub fn id(&self) -> i64 {
        self.data.id
    }

    /// Id of the workflow the job belongs to.
    pub fn workflow_id(&self) -> &str {
        &self.data.workflow_id
    }

    /// Name of the workflow's graph.
    pub fn graph(&self) -> &str {
        &self.data.graph
    }

    /// Version of the workflow's graph.
    pub fn graph_version(&self) -> u32 {
        self.data.graph_version
    }

    /// Node this job performs.
    pub fn node(&self) -> &str {
        &self.data.node
    }

    /// Operation to perform.
    pub fn operation(&self) -> &str {
        &self.data.operation
    }

    /// Static parameters of the node (a JSON object; index it with `job.params()["key"]`).
    pub fn params(&self) -> &Value {
        &self.data.params
    }

    /// The workflow's vars when the job was created (a JSON object).
    pub fn vars(&self) -> &Value {
        &self.data.vars
    }

    /// The workflow's input (a JSON object).
    pub fn input(&self) -> &Value {
        &self.data.input
    }

    /// Labels the handler may answer with.
    pub fn labels(&self) -> &[String] {
        &self.data.labels
    }

    /// Attempt number within the current retry streak, from 1. Above 1, an earlier attempt of
    /// this streak failed, timed out or may even have succeeded without its answer arriving.
    pub fn attempt(&self) -> u32 {
        self.data.attempt
    }

    /// Key to hand to external systems (a payment provider, say) so that repeating an attempt
    /// repeats no effect: the same for every attempt of a retry streak on this node.
    pub fn idempotency_key(&self) -> &str {
        &self.data.idempotency_key
    }

    /// When the lease ran out as of the job's delivery; heartbeats extend it.
    pub fn lease_expires_at(&self) -> Option<SystemTime> {
        self.data.lease_expires_at
    }

    /// A token that fires when the job should stop: its workflow was cancelled or moved on,
    /// the lease was lost, or the worker's shutdown grace ran out. Whatever the handler
    /// returns after that is dropped, so it should stop as soon as it safely can.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// True once the job should stop; see [`Job::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Reports progress (percent is capped at 100); the next heartbeat carries the latest
    /// report to the server, where operators see it.
    pub fn progress(&self, percent: u32, message: impl Into<String>) {
        let progress = Progress {
            percent: percent.min(100),
            message: message.into(),
        };
        *self.lock_progress() = Some(progress);
    }

    /// The latest progress not yet sent with a heartbeat.
    pub fn pending_progress(&self) -> Option<Progress> {
        self.lock_progress().clone()
    }

    /// Takes the latest progress for a heartbeat.
    pub(crate) fn take_progress(&self) -> Option<Progress> {
        self.lock_progress().take()
    }

    /// Puts back progress whose heartbeat failed, unless a newer report replaced it.
    pub(crate) fn restore_progress(&self, progress: Progress) {
        self.lock_progress().get_or_insert(progress);
    }

    fn lock_progress(&self) -> std::sync::MutexGuard<'_, Option<Progress>> {
        // The guarded value is a plain option that no panic can leave half-written.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A handler's answer: a label offered by the job's node, and an output merged into the
/// workflow's vars (top-level keys replace).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// One of the job's offered labels.
    label: String,
    /// A JSON object; anything else makes the job fail with `error`.
    output: Value,
}

impl Outcome {
    /// Answers with `label` and an empty output.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            output: empty_object(),
        }
    }

    /// Sets the output. It must be a JSON object (or `null`, meaning `{}`): any other value
    /// makes the worker fail the job instead, since vars are an object.
    #[must_use]
    pub fn with_output(mut self, output: Value) -> Self {
        self.output = output;
        self
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The output.
    pub fn output(&self) -> &Value {
        &self.output
    }

    /// The output as JSON text for the wire, or why it cannot be sent.
    pub(crate) fn output_json(&self) -> Result<String, String> {
        match &self.output {
            Value::Null => Ok("{}".to_owned()),
            Value::Object(map) => Ok(Value::Object(map.clone()).to_string()),
            other => Err(format!(
                "output of label `{}` must be a JSON object, not {}",
                self.label,
                json_kind(other)
            )),
        }
    }
}

/// A failure the handler could not classify with a label. The worker reports it with
/// `FailJob`, and the engine routes the job by the reserved label `error`.
///
/// Any `std::error::Error` converts into it, so `?` works inside handlers; the message keeps
/// the error's whole chain of sources.
pub struct HandlerError {
    /// Recorded in the workflow's history and in its vars as `last_error`.
    message: String,
}

impl HandlerError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The message sent to the server.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self { message }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandlerError").field(&self.message).finish()
    }
}

/// Parses a JSON payload from the wire: the empty string means `{}`, anything else must be a
/// JSON object.
pub(crate) fn parse_object(field: &str, text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(empty_object());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(other) => Err(format!(
            "{field} must be a JSON object, not {}",
            json_kind(&other)
        )),
        Err(error) => Err(format!("{field} is not valid JSON: {error}")),
    }
}

/// `{}`.
pub(crate) fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// The kind of a JSON value, for messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_payload_means_an_empty_object() {
        assert_eq!(parse_object("vars", ""), Ok(json!({})));
        assert_eq!(parse_object("vars", "  "), Ok(json!({})));
    }

    #[test]
    fn object_payload_is_parsed() {
        assert_eq!(
            parse_object("vars", r#"{"amount": 42, "nested": {"a": [1, 2]}}"#),
            Ok(json!({"amount": 42, "nested": {"a": [1, 2]}}))
        );
    }

    #[test]
    fn payload_that_is_not_an_object_is_rejected_with_its_kind() {
        assert_eq!(
            parse_object("params", "[1, 2]"),
            Err("params must be a JSON object, not an array".to_owned())
        );
        assert_eq!(
            parse_object("input", "null"),
            Err("input must be a JSON object, not null".to_owned())
        );
    }

    #[test]
    fn malformed_payload_is_rejected_naming_the_field() {
        let error = parse_object("vars", "{\"amount\": ").unwrap_err();
        assert!(error.starts_with("vars is not valid JSON: "), "{error}");
    }

    #[test]
    fn outcome_output_must_be_an_object() {
        let charged = Outcome::new("charged").with_output(json!({"charge_id": "c1"}));
        assert_eq!(
            charged.output_json(),
            Ok(r#"{"charge_id":"c1"}"#.to_owned())
        );
        assert_eq!(Outcome::new("done").output_json(), Ok("{}".to_owned()));
        assert_eq!(
            Outcome::new("done").with_output(Value::Null).output_json(),
            Ok("{}".to_owned())
        );
        assert_eq!(
            Outcome::new("done").with_output(json!(3)).output_json(),
            Err("output of label `done` must be a JSON object, not a number".to_owned())
        );
    }

    #[test]
    fn handler_error_keeps_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("charge failed")]
        struct Outer(#[source] std::io::Error);

        let error = HandlerError::from(Outer(std::io::Error::other("connection reset")));
        assert_eq!(error.message(), "charge failed: connection reset");
    }

    #[test]
    fn progress_is_capped_taken_once_and_restored_unless_replaced() {
        let job = Job::new(JobData::default(), CancellationToken::new());
        job.progress(250, "almost");
        let sent = job.take_progress().expect("progress reported");
        assert_eq!(sent.percent, 100);
        assert_eq!(job.take_progress(), None);

        job.restore_progress(sent.clone());
        assert_eq!(job.pending_progress(), Some(sent));
        job.progress(10, "newer");
        job.restore_progress(Progress {
            percent: 5,
            message: "older".to_owned(),
        });
        assert_eq!(job.take_progress().map(|p| p.message), Some("newer".into()));
    }

    #[test]
    fn cancelling_the_job_token_fires_every_handed_out_child() {
        let token = CancellationToken::new();
        let job = Job::new(JobData::default(), token.clone());
        let child = job.cancelled();
        assert!(!job.is_cancelled());
        token.cancel();
        assert!(child.is_cancelled());
        assert!(job.is_cancelled());
    }
}
