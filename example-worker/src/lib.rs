//! Handlers for every operation of the example graphs in `graphs/`, used by `make run`, the
//! README and the end-to-end tests (which register them in-process against a real server).
//!
//! The handlers stand in for real services: they log, sleep a little, and answer with the
//! happy label. With a fault rate they fail on purpose so retries, escalation and incidents
//! show up: most operations return an error (the reserved `error` label), and
//! `payments.charge`, whose graph has no `error` edge, declines instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rondo_worker::{HandlerError, Job, Outcome, WorkerBuilder};
use serde_json::json;

/// Every operation the example graphs use.
pub const OPERATIONS: [&str; 6] = [
    "inventory.reserve",
    "inventory.release",
    "payments.charge",
    "email.send",
    "pager.page",
    "accounts.provision",
];

/// Failure injection: off by default, so every workflow completes.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Probability in `[0, 1]` that a handler fails on purpose.
    pub rate: f64,
    /// Shared, seeded random source, so a demo run can be repeated.
    rng: Arc<Mutex<StdRng>>,
}

impl Faults {
    /// No failures.
    pub fn none() -> Self {
        Faults::new(0.0, 0)
    }

    /// Fails with probability `rate`, drawing from a generator seeded with `seed`.
    pub fn new(rate: f64, seed: u64) -> Self {
        Faults {
            rate: rate.clamp(0.0, 1.0),
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }

    fn strike(&self) -> bool {
        self.rate > 0.0
            && self
                .rng
                .lock()
                .expect("fault rng lock")
                .random_bool(self.rate)
    }
}

/// Registers a handler for every operation in [`OPERATIONS`] on a worker builder.
pub fn register(builder: WorkerBuilder, faults: &Faults, work: Duration) -> WorkerBuilder {
    let mut builder = builder;
    for operation in OPERATIONS {
        let faults = faults.clone();
        builder = builder.handler(operation, move |job: Job| {
            let faults = faults.clone();
            async move { handle(job, &faults, work).await }
        });
    }
    builder
}

async fn handle(job: Job, faults: &Faults, work: Duration) -> Result<Outcome, HandlerError> {
    tracing::info!(
        workflow_id = %job.workflow_id(),
        node = %job.node(),
        attempt = job.attempt(),
        idempotency_key = %job.idempotency_key(),
        "handling {}",
        job.operation()
    );
    if !work.is_zero() {
        let cancelled = job.cancelled();
        tokio::select! {
            () = tokio::time::sleep(work) => {}
            () = cancelled.cancelled() => return Err(HandlerError::new("cancelled")),
        }
    }
    let failing = faults.strike();
    match job.operation() {
        "inventory.reserve" if failing => Err(HandlerError::new("inventory service unavailable")),
        "inventory.reserve" => Ok(Outcome::new("reserved").with_output(json!({
            "reservation_id": format!("res-{}", job.idempotency_key()),
        }))),
        "payments.charge" if failing => {
            Ok(Outcome::new("declined").with_output(json!({ "decline_reason": "card declined" })))
        }
        "payments.charge" => Ok(Outcome::new("charged").with_output(json!({
            // The idempotency key is what a real payment provider would deduplicate on.
            "charge_id": format!("ch-{}", job.idempotency_key()),
        }))),
        "inventory.release" => Ok(Outcome::new("released")),
        "email.send" if failing => Err(HandlerError::new("mail relay refused the message")),
        "email.send" => {
            let template = job.params()["template"]
                .as_str()
                .unwrap_or("generic")
                .to_owned();
            Ok(Outcome::new("sent").with_output(json!({ "last_email": template })))
        }
        "pager.page" => Ok(Outcome::new("paged")),
        "accounts.provision" if failing => Err(HandlerError::new("provisioning API returned 503")),
        "accounts.provision" => Ok(Outcome::new("provisioned").with_output(json!({
            "account_id": format!("acct-{}", job.idempotency_key()),
        }))),
        other => Err(HandlerError::new(format!(
            "the example worker has no handler for `{other}`"
        ))),
    }
}
