//! The clock-driven rules: expired leases become `timeout`, passed deadlines move workflows to
//! `on_deadline`, delayed starts begin, and due schedules fire. Every server runs this loop; each
//! item is decided under its workflow's (or schedule's) row lock with the database clock, so
//! servers never double-fire. An item that fails for any reason but a database fault (a stored
//! graph that no longer loads, say) is isolated: logged, counted, and its workflow made STUCK
//! with the reason `engine_error`, so the sweep goes on and operators see it.

use std::time::Duration;

use rondo_engine::advance;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Service;
use super::error::ServiceError;
use super::plan::{Apply, Target, position_of};
use super::step::Outbox;
use super::workflows::not_found;
use crate::store::batch::WorkflowUpdate;
use crate::store::events::{EventKind, NewEvent};
use crate::store::jobs;
use crate::store::listen::Notice;
use crate::store::workflows::{self, WorkflowStatus};

/// Longest part of an error kept in an incident's message.
const MAX_ERROR_CHARS: usize = 300;

/// What one sweep item is.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// An expired lease, by job id.
    Timeout(i64),
    /// A passed deadline.
    Deadline(Uuid),
    /// A delayed start that is due.
    Start(Uuid),
}

impl Item {
    /// The metric label and log name of the item's kind.
    fn kind(self) -> &'static str {
        match self {
            Item::Timeout(_) => "timeout",
            Item::Deadline(_) => "deadline",
            Item::Start(_) => "start",
        }
    }
}

/// Most items of each kind handled per sweep.
const BATCH: i64 = 100;

/// The incident reason of a workflow whose step the engine could not apply.
const ENGINE_ERROR: &str = rondo_engine::IncidentReason::EngineError.as_str();

impl Service {
    /// Sweeps until shutdown.
    pub async fn run_sweeper(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(error) = self.sweep().await {
                        tracing::warn!(%error, "sweep failed");
                    }
                }
            }
        }
    }

    /// One pass over expired leases, passed deadlines, due starts and due schedule ticks.
    /// Returns how many items it changed. A database fault ends the pass (the next one
    /// retries); any other failure isolates its item and the pass goes on.
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        let (expired, deadlines, pending) = {
            let client = self.pool().get().await?;
            (
                jobs::expired(&client, BATCH).await?,
                workflows::due_deadlines(&client, BATCH).await?,
                workflows::due_pending(&client, BATCH).await?,
            )
        };
        let items = (expired.into_iter().map(Item::Timeout))
            .chain(deadlines.into_iter().map(Item::Deadline))
            .chain(pending.into_iter().map(Item::Start));
        let mut changed = 0;
        for item in items {
            let result = match item {
                Item::Timeout(job_id) => self.time_out(job_id).await,
                Item::Deadline(id) => self.fire_deadline(id).await,
                Item::Start(id) => self.start_pending(id).await,
            };
            match result {
                Ok(done) => changed += usize::from(done),
                Err(error @ ServiceError::Unavailable(_)) => return Err(error),
                Err(error) => {
                    self.isolate(item, &error).await?;
                    changed += 1;
                }
            }
        }
        changed += self.fire_due_schedules(BATCH).await?;
        Ok(changed)
    }

    /// Takes an item that cannot be swept out of the sweep: logs and counts it, and makes its
    /// workflow STUCK with the reason `engine_error`, its job cancelled and its deadline
    /// cleared, so no later sweep picks it again.
    async fn isolate(&self, item: Item, error: &ServiceError) -> Result<(), ServiceError> {
        tracing::error!(kind = item.kind(), ?item, %error, "sweep item failed; its workflow is marked stuck");
        self.metrics().sweep_failed(item.kind());
        let id = match item {
            Item::Timeout(job_id) => {
                let client = self.pool().get().await?;
                match jobs::get(&client, job_id).await? {
                    Some(job) => job.workflow_id,
                    None => return Ok(()),
                }
            }
            Item::Deadline(id) | Item::Start(id) => id,
        };
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let Some((wf, _)) = workflows::lock(&tx, id).await? else {
            return Ok(());
        };
        if wf.status.is_final() {
            return Ok(());
        }
        let node = wf.current_node.clone().unwrap_or_default();
        let mut text = error.to_string();
        if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
            text.truncate(cut);
            text.push('…');
        }
        let message = format!(
            "the engine could not apply the {} of node `{node}`: {text}; fix the cause, then \
             retry, move or cancel the workflow",
            item.kind()
        );
        let mut outbox = Outbox::new();
        let mut log = self
            .cancel_open_job(
                &tx,
                &wf,
                "engine",
                "the engine could not apply the next step",
                &mut outbox,
            )
            .await?;
        log.push(NewEvent {
            node: Some(node.clone()),
            message: Some(message.clone()),
            data: Some(json!({ "reason": ENGINE_ERROR })),
            ..NewEvent::new(EventKind::WorkflowStuck, "engine")
        });
        let streaks = serde_json::to_value(&wf.streaks)
            .map_err(|e| ServiceError::Internal(format!("encoding streaks: {e}")))?;
        outbox.writes.update_workflow(WorkflowUpdate {
            id,
            status: WorkflowStatus::Stuck,
            current_node: wf.current_node.clone(),
            vars: wf.vars.clone(),
            step_count: wf.step_count,
            streaks,
            outcome: None,
            incident: Some((ENGINE_ERROR.into(), message, node, None)),
            current_job_id: None,
            clear_deadline: true,
        });
        outbox.writes.append(id, log);
        outbox.push(Notice::WorkflowChanged(id));
        self.commit(tx, outbox).await?;
        Ok(())
    }

    /// Fires a passed deadline: cancels the job in hand and enters `on_deadline` (or marks the
    /// workflow STUCK). False when it no longer applies.
    pub async fn fire_deadline(&self, id: Uuid) -> Result<bool, ServiceError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (wf, now) = workflows::lock(&tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let due = matches!(wf.status, WorkflowStatus::Running | WorkflowStatus::Stuck)
            && wf.deadline_at.is_some_and(|at| at <= now);
        if !due {
            return Ok(false);
        }
        let graph = self.graph_of(&tx, &wf).await?;
        let mut outbox = Outbox::new();
        let mut log = self
            .cancel_open_job(
                &tx,
                &wf,
                "engine",
                "the workflow's deadline passed",
                &mut outbox,
            )
            .await?;
        log.push(NewEvent {
            node: wf.current_node.clone(),
            message: Some("the workflow's deadline passed".into()),
            data: Some(json!({ "deadline_at": wf.deadline_at })),
            ..NewEvent::new(EventKind::DeadlinePassed, "engine")
        });
        let step = advance::deadline_passed(&graph, &position_of(&wf));
        let apply = Apply {
            workflow: Target::of(&wf),
            graph: &graph,
            step,
            vars: wf.vars.clone(),
            from: wf.current_node.as_deref(),
            previous_key: None,
            events: log,
            actor: "engine",
            clear_deadline: true,
            eager: None,
        };
        self.apply(&tx, apply, &mut outbox).await?;
        self.commit(tx, outbox).await?;
        Ok(true)
    }

    /// Starts a PENDING workflow whose time has come. False when it no longer applies.
    pub async fn start_pending(&self, id: Uuid) -> Result<bool, ServiceError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let (wf, now) = workflows::lock(&tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if wf.status != WorkflowStatus::Pending || wf.start_at.is_some_and(|at| at > now) {
            return Ok(false);
        }
        let graph = self.graph_of(&tx, &wf).await?;
        let apply = Apply {
            workflow: Target::of(&wf),
            graph: &graph,
            step: advance::start(&graph),
            vars: wf.vars.clone(),
            from: None,
            previous_key: None,
            events: Vec::new(),
            actor: "engine",
            clear_deadline: false,
            eager: None,
        };
        let mut outbox = Outbox::new();
        self.apply(&tx, apply, &mut outbox).await?;
        self.commit(tx, outbox).await?;
        Ok(true)
    }
}
