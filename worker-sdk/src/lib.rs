//! Build Rondo workers: long-poll the server for jobs, run a handler per operation, and answer
//! each job with a label that picks the next edge of the workflow's graph.
//!
//! A handler is a plain async function from [`Job`] to `Result<Outcome, HandlerError>`. The
//! [`Worker`] does the rest: bounded concurrency, automatic heartbeats, cancellation,
//! reconnecting with backoff while the server is away, and graceful shutdown. [`Client`]
//! puts graphs and starts workflows; [`GraphBuilder`] writes graphs in Rust, validated exactly
//! like YAML.
//!
//! # A worker
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rondo_worker::{CancellationToken, HandlerError, Job, Outcome, Worker};
//! use serde_json::json;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let worker = Worker::builder("http://127.0.0.1:7233")
//!         .identity("billing-1")
//!         .concurrency(16)
//!         .shutdown_grace(Duration::from_secs(30))
//!         .handler("payments.charge", charge)
//!         .build()?;
//!
//!     // Ctrl-C stops polling; jobs in hand get the shutdown grace to finish.
//!     let shutdown = CancellationToken::new();
//!     let on_signal = shutdown.clone();
//!     tokio::spawn(async move {
//!         if tokio::signal::ctrl_c().await.is_ok() {
//!             on_signal.cancel();
//!         }
//!     });
//!     worker.run(shutdown).await?;
//!     Ok(())
//! }
//!
//! /// Charges `vars.amount` and answers `charged` or `declined`.
//! async fn charge(job: Job) -> Result<Outcome, HandlerError> {
//!     let Some(amount) = job.vars()["amount"].as_i64() else {
//!         // An error fails the job: the engine routes it by the reserved label `error`.
//!         return Err(HandlerError::new("vars.amount is missing or not an integer"));
//!     };
//!     if job.attempt() > 1 {
//!         // An earlier attempt failed, timed out, or succeeded without its answer arriving:
//!         // the idempotency key below makes the provider return that earlier charge.
//!         tracing::info!(attempt = job.attempt(), "charging again");
//!     }
//!     job.progress(10, "calling the provider");
//!
//!     // Stop early when the workflow is cancelled (or the lease is lost): whatever the
//!     // handler returns after that is dropped anyway.
//!     let cancelled = job.cancelled();
//!     let charge = tokio::select! {
//!         () = cancelled.cancelled() => return Err(HandlerError::new("cancelled")),
//!         // `?` turns any `std::error::Error` into a `HandlerError`.
//!         charge = provider_charge(job.idempotency_key(), amount) => charge?,
//!     };
//!     Ok(match charge {
//!         Some(id) => Outcome::new("charged").with_output(json!({ "charge_id": id })),
//!         None => Outcome::new("declined"),
//!     })
//! }
//!
//! /// A payment provider's API: the same key always means the same single charge.
//! async fn provider_charge(key: &str, amount: i64) -> std::io::Result<Option<String>> {
//!     tokio::time::sleep(Duration::from_millis(100)).await;
//!     Ok((amount < 10_000).then(|| format!("charge-{key}")))
//! }
//! ```
//!
//! # Putting a graph and starting a workflow
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rondo_worker::{Client, GraphBuilder, Node, Retry, StartOptions, WorkflowStatus};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let secs = Duration::from_secs;
//! let graph = GraphBuilder::new("charge")
//!     .start("charge")
//!     .node(
//!         Node::operation("charge", "payments.charge")
//!             .timeout(secs(60))
//!             .terminal("charged")
//!             .terminal("declined")
//!             .retry("error", "charge", Retry::new(3).delay(secs(1)).backoff(2.0))
//!             .retry("timeout", "charge", Retry::new(3)),
//!     )
//!     .build()
//!     .map_err(|problems| format!("invalid graph: {problems:?}"))?;
//!
//! let client = Client::connect("http://127.0.0.1:7233")?;
//! client.put_graph(graph.graph.def()).await?;
//! // Starting twice with the same key starts one workflow. With a wait, the answer comes when
//! // the workflow has ended (or the wait ran out; `client.await_workflow` waits longer).
//! let options = StartOptions::new("charge", json!({ "amount": 42 }))
//!     .idempotency_key("order-17")
//!     .wait(secs(30));
//! let workflow = client.start_workflow(options).await?.workflow;
//! if workflow.status == WorkflowStatus::Completed {
//!     println!("outcome {:?}, vars {}", workflow.outcome, workflow.vars);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What a handler can rely on
//!
//! - **Idempotency keys.** [`Job::idempotency_key`] is the same for every attempt of a retry
//!   streak on one node (a payment retried after a timeout keeps its key) and new each time
//!   the node is entered from elsewhere. Every job is delivered at least once; hand the key to
//!   every external system with side effects and each effect happens exactly once.
//! - **Attempts.** [`Job::attempt`] counts from 1 within a retry streak. Retries, their delays
//!   and what happens when they run out are edges of the graph, not code in the handler.
//! - **Labels.** Answer with one of [`Job::labels`]; any other label fails the job. The
//!   output must be a JSON object; it is merged into the workflow's vars.
//! - **Errors and panics.** An `Err` or a panic becomes `FailJob` with its message; the
//!   worker lives on, and the engine routes the job by `error`.
//! - **Heartbeats.** While a handler runs, the worker extends its lease every
//!   `min(heartbeat interval / 2, lease left / 3)` and carries the latest
//!   [`Job::progress`].
//! - **Cancellation.** [`Job::cancelled`] fires when the server says the workflow was
//!   cancelled or moved on, when the lease was lost (the engine already chose `timeout`), and
//!   when the shutdown grace runs out (the job is then released to another worker). The
//!   handler's result is dropped in all three cases.

pub mod client;
pub mod error;
pub mod graph;
pub mod job;
mod timing;
mod transport;
pub mod worker;

pub use client::{
    Client, JobSummary, PutGraphInfo, StartOptions, Started, Workflow, WorkflowStatus,
};
pub use error::{Error, Result};
pub use graph::{GraphBuilder, Node, Retry};
pub use job::{HandlerError, Job, JobData, Outcome, Progress};
pub use tokio_util::sync::CancellationToken;
pub use worker::{Worker, WorkerBuilder};
