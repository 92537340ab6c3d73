//! Applies decided steps ([`StepPlan`]s) inside the caller's transaction: gives each new job
//! its id, leases it to the worker that asked for it or to a poller waiting here, and stages
//! the writes, history, notices and counts in the transaction's [`Outbox`]. Nothing here
//! decides anything, and nothing leaves the process before the commit: the outbox is carried
//! out by `Service::commit` and friends once it has committed. Every path that moves a
//! workflow (completion, failure, timeout, operator action, deadline, start) ends here.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::plan::{self, Apply, Count, StepPlan};
use super::types::Applied;
use super::{Lease, Outbox, Recipient, Service, ServiceError, millis};
use crate::store::GenericClient;
use crate::store::batch::NewJob;
use crate::store::events::{EventKind, NewEvent};
use crate::store::listen::Notice;

impl Service {
    /// Decides and stages a step in one go, for the paths that decide one step per
    /// transaction.
    pub(crate) async fn apply(
        &self,
        tx: &impl GenericClient,
        a: Apply<'_>,
        outbox: &mut Outbox,
    ) -> Result<Applied, ServiceError> {
        let plan = plan::plan(a, self.limits.default_lease)?;
        self.stage(tx, plan, outbox).await
    }

    /// Stages a decided step; the caller holds the workflow's row lock (or writes it with a
    /// version check), and commits afterwards. A job due at once goes to the worker that
    /// asked for it, else to a poller waiting here, else to the queue with a notification.
    pub(crate) async fn stage(
        &self,
        tx: &impl GenericClient,
        plan: StepPlan<'_>,
        outbox: &mut Outbox,
    ) -> Result<Applied, ServiceError> {
        let started = std::time::Instant::now();
        let StepPlan {
            workflow,
            graph,
            ended,
            entry,
            mut update,
            mut events,
            notices,
            counts,
            applied,
        } = plan;
        if let Some(entry) = entry {
            let job_id = self.next_job_id(tx).await?;
            let due_now = entry.delay.is_zero();
            let lease_to = match (&entry.eager, &entry.operation) {
                (Some(worker), _) => Some((worker.clone(), Recipient::Caller)),
                (None, Some(op)) if due_now => self
                    .dispatch()
                    .reserve(op)
                    .map(|r| (r.worker().to_owned(), Recipient::Poller(r))),
                (None, _) => None,
            };
            if let Some(operation) = &entry.operation
                && lease_to.is_none()
            {
                outbox.push(Notice::JobReady {
                    operation: operation.clone(),
                    available_at: Utc::now() + entry.delay,
                    count: 1,
                });
            }
            events.push(NewEvent {
                node: Some(entry.node.clone()),
                job_id: Some(job_id),
                attempt: Some(entry.attempt),
                data: Some(json!({
                    "from": entry.from_node,
                    "delay_ms": millis(entry.delay),
                    "idempotency_key": entry.idempotency_key,
                })),
                ..NewEvent::new(EventKind::NodeEntered, entry.actor.as_str())
            });
            if let Some((worker, to)) = &lease_to {
                let how = match to {
                    Recipient::Caller => "leased with the previous step's completion",
                    Recipient::Poller(_) => "handed to a waiting poller",
                };
                events.push(NewEvent {
                    node: Some(entry.node.clone()),
                    job_id: Some(job_id),
                    attempt: Some(entry.attempt),
                    message: Some(how.into()),
                    ..NewEvent::new(EventKind::JobLeased, worker.as_str())
                });
            }
            let lease = lease_to.map(|(worker, to)| {
                outbox.leases.push(Lease {
                    job_id,
                    graph: Arc::clone(graph),
                    context: (
                        workflow.graph_name.to_owned(),
                        workflow.graph_version,
                        update.vars.clone(),
                        workflow.input.clone(),
                    ),
                    to,
                });
                (worker, Uuid::new_v4())
            });
            outbox.writes.insert_job(NewJob {
                id: job_id,
                workflow_id: workflow.id,
                node: entry.node,
                operation: entry.operation,
                attempt: entry.attempt,
                idempotency_key: entry.idempotency_key,
                from_node: entry.from_node,
                delay_ms: millis(entry.delay),
                timeout_ms: entry.timeout_ms,
                heartbeat_ms: entry.heartbeat_ms,
                lease,
            });
            update.current_job_id = Some(job_id);
        }
        if let Some(end) = ended {
            outbox.writes.end_job(end);
        }
        outbox.writes.update_workflow(update);
        outbox.writes.append(workflow.id, events);
        outbox.notices.extend(notices);
        outbox
            .counts
            .extend(counts.into_iter().map(|c| (workflow.id, c)));
        outbox
            .counts
            .push((workflow.id, Count::Transition(started.elapsed())));
        Ok(applied)
    }
}
