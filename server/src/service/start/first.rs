//! A new workflow's row and its first step: the row as inserted, the hash that tells a
//! repeated request from a different one under the same idempotency key, and the entry into
//! the first node.

use std::sync::Arc;

use rondo_engine::{Graph, advance};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::super::error::ServiceError;
use super::super::plan::{Apply, Target};
use super::super::step::Outbox;
use super::super::types::NewStart;
use super::super::{Service, millis, to_i32};
use crate::store::GenericClient;
use crate::store::events::{EventKind, NewEvent};
use crate::store::workflows::{self, NewWorkflow, WorkflowStatus};

impl Service {
    /// Creates a workflow inside the caller's transaction: the row, its `workflow_started`
    /// event, and its first job unless it is PENDING. Returns its id, or `None` when the
    /// idempotency key already names a workflow (nothing is written then).
    pub(crate) async fn insert_workflow(
        &self,
        tx: &impl GenericClient,
        new: &NewStart<'_>,
        outbox: &mut Outbox,
    ) -> Result<Option<Uuid>, ServiceError> {
        let (graph, version) = self.graph(tx, new.graph, to_i32(new.version)).await?;
        let hash = request_hash(new);
        let row = new_row(new, Uuid::now_v7(), &graph, version, &hash);
        let Some(inserted) = workflows::insert_many(tx, &[row]).await?.pop() else {
            return Ok(None);
        };
        self.enter_first(
            tx,
            new,
            (inserted.id, inserted.status),
            &graph,
            version,
            outbox,
        )
        .await?;
        Ok(Some(inserted.id))
    }

    /// Records a new workflow's start and, unless it is PENDING, enters its first node.
    pub(crate) async fn enter_first(
        &self,
        tx: &impl GenericClient,
        new: &NewStart<'_>,
        (id, status): (Uuid, WorkflowStatus),
        graph: &Arc<Graph>,
        version: i32,
        outbox: &mut Outbox,
    ) -> Result<(), ServiceError> {
        let started = NewEvent {
            data: Some(json!({ "graph": new.graph, "version": version, "start_at": new.start_at })),
            ..NewEvent::new(EventKind::WorkflowStarted, new.actor)
        };
        if status != WorkflowStatus::Running {
            outbox.writes.append(id, [started]);
            return Ok(());
        }
        let apply = Apply {
            workflow: Target {
                id,
                graph_name: new.graph,
                graph_version: version,
                input: new.input,
            },
            graph,
            step: advance::start(graph),
            vars: new.input.clone(),
            from: None,
            previous_key: None,
            events: vec![started],
            actor: "engine",
            clear_deadline: false,
            eager: None,
        };
        self.apply(tx, apply, outbox).await?;
        Ok(())
    }
}

/// The row of a new workflow.
pub(crate) fn new_row<'a>(
    new: &NewStart<'a>,
    id: Uuid,
    graph: &Graph,
    version: i32,
    request_hash: &'a str,
) -> NewWorkflow<'a> {
    NewWorkflow {
        id,
        graph_name: new.graph,
        graph_version: version,
        input: new.input,
        idempotency_key: new.idempotency_key,
        request_hash: Some(request_hash),
        schedule_id: new.schedule_id,
        start_at: new.start_at,
        deadline_ms: graph.deadline().map(millis),
    }
}

pub(crate) fn request_hash(new: &NewStart<'_>) -> String {
    let canonical = json!({
        "graph": new.graph,
        "version": new.version,
        "input": new.input,
        "start_at": new.start_at.map(|t| t.timestamp_micros()),
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
