//! The clock-driven rules: expired leases become `timeout`, passed deadlines move workflows to
//! `on_deadline`, delayed starts begin, and due schedules fire. Every server runs this loop; each
//! item is decided under its workflow's (or schedule's) row lock with the database clock, so
//! servers never double-fire.

use std::time::Duration;

use rondo_engine::advance;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::step::{Apply, Target};
use super::workflows::{not_found, position_of};
use super::{Outbox, Service, ServiceError};
use crate::store::events::{EventKind, NewEvent};
use crate::store::jobs;
use crate::store::workflows::{self, WorkflowStatus};

/// Most items of each kind handled per sweep.
const BATCH: i64 = 100;

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
    /// Returns how many items it changed.
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        let (expired, deadlines, pending) = {
            let client = self.pool().get().await?;
            (
                jobs::expired(&client, BATCH).await?,
                workflows::due_deadlines(&client, BATCH).await?,
                workflows::due_pending(&client, BATCH).await?,
            )
        };
        let mut changed = 0;
        for job_id in expired {
            changed += usize::from(self.time_out(job_id).await?);
        }
        for id in deadlines {
            changed += usize::from(self.fire_deadline(id).await?);
        }
        for id in pending {
            changed += usize::from(self.start_pending(id).await?);
        }
        changed += self.fire_due_schedules(BATCH).await?;
        Ok(changed)
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
            vars: &wf.vars,
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
            vars: &wf.vars,
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
