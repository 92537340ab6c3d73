//! Applies decided steps ([`StepPlan`]s) inside the caller's transaction: gives each new job
//! its id, leases it to the worker that asked for it or to a poller waiting here, and stages
//! the writes, history, notices and counts in the transaction's [`Outbox`]. Nothing here
//! decides anything, and nothing leaves the process before the commit: the outbox is carried
//! out by [`Service::commit`] once it has committed, and only for what was written. Every
//! path that moves a workflow (completion, failure, timeout, operator action, deadline,
//! start) ends here.

use std::sync::Arc;

use chrono::Utc;
use rondo_engine::Graph;
use serde_json::{Value, json};
use uuid::Uuid;

use super::dispatch::Reservation;
use super::error::ServiceError;
use super::plan::{self, Apply, Count, StepPlan};
use super::types::{Applied, LeasedJob, WorkflowView};
use super::{Service, millis};
use crate::store::batch::{self, NewJob, Writes};
use crate::store::events::{EventKind, NewEvent};
use crate::store::jobs::{JobRecord, JobWithWorkflow};
use crate::store::listen::Notice;
use crate::store::workflows::WorkflowStatus;
use crate::store::{self, GenericClient};

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
    Poller(Reservation),
}

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
            let leased = match LeasedJob::new(
                &lease.graph,
                with_context(job.clone(), lease.context),
            ) {
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
}

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
