//! WorkflowService.

use rondo_gen::v1::{self, workflow_service_server::WorkflowService};
use tonic::{Request, Response, Status};

use super::convert::{event, from_timestamp, status_filter, view, workflow};
use super::{ApiResult, bounded_wait, parse_uuid};
use crate::service::Service;
use crate::service::start::StartRequest;
use crate::service::workflows::{ListRequest, OperatorAction};

/// WorkflowService over the use cases.
#[derive(Clone)]
pub struct WorkflowApi(pub Service);

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn action(operator: String, reason: String, expected: Option<v1::ExpectedState>) -> OperatorAction {
    OperatorAction {
        operator,
        reason,
        expected: expected.map(|e| (e.node, e.step_count)),
    }
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn start_workflow(
        &self,
        req: Request<v1::StartWorkflowRequest>,
    ) -> ApiResult<v1::StartWorkflowResponse> {
        let wait = req
            .get_ref()
            .wait
            .as_ref()
            .map(|w| bounded_wait(&req, Some(w)))
            .filter(|w| !w.is_zero());
        let req = req.into_inner();
        let start_at = match &req.start_at {
            Some(t) => Some(
                from_timestamp(t)
                    .ok_or_else(|| Status::invalid_argument("`start_at` is out of range"))?,
            ),
            None => None,
        };
        let started = self
            .0
            .start_workflow(StartRequest {
                graph: req.graph,
                version: req.version,
                input: req.input,
                idempotency_key: non_empty(req.idempotency_key),
                start_at,
                schedule_id: None,
            })
            .await?;
        let id = started.view.workflow.id;
        tracing::info!(workflow_id = %id, existing = started.existing, "workflow started");
        let waited = match wait {
            None => None,
            // The workflow is started and durable: a failed wait answers with it as started
            // rather than with an error that would invite a second start.
            Some(wait) => match self.0.await_workflow(id, wait).await {
                Ok((v, _)) => Some(v),
                Err(error) => {
                    tracing::warn!(workflow_id = %id, %error, "waiting for a started workflow failed; answering with it as started");
                    None
                }
            },
        };
        let v = waited.as_ref().unwrap_or(&started.view);
        Ok(Response::new(v1::StartWorkflowResponse {
            workflow: Some(view(v)),
            existing: started.existing,
            done: v.workflow.status.is_done(),
        }))
    }

    async fn get_workflow(
        &self,
        req: Request<v1::GetWorkflowRequest>,
    ) -> ApiResult<v1::GetWorkflowResponse> {
        let id = parse_uuid("id", &req.into_inner().id)?;
        let v = self.0.get_workflow(id).await?;
        Ok(Response::new(v1::GetWorkflowResponse {
            workflow: Some(view(&v)),
        }))
    }

    async fn list_workflows(
        &self,
        req: Request<v1::ListWorkflowsRequest>,
    ) -> ApiResult<v1::ListWorkflowsResponse> {
        let req = req.into_inner();
        let status = v1::WorkflowStatus::try_from(req.status).map_err(|_| {
            Status::invalid_argument(format!("`status` {} is not a workflow status", req.status))
        })?;
        let page = self
            .0
            .list_workflows(ListRequest {
                graph: non_empty(req.graph),
                status: status_filter(status),
                node: non_empty(req.current_node),
                page_size: req.page_size,
                page_token: non_empty(req.page_token),
            })
            .await?;
        Ok(Response::new(v1::ListWorkflowsResponse {
            workflows: page.workflows.iter().map(|w| workflow(w, None)).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_history(
        &self,
        req: Request<v1::GetHistoryRequest>,
    ) -> ApiResult<v1::GetHistoryResponse> {
        let req = req.into_inner();
        let id = parse_uuid("id", &req.id)?;
        let events = self.0.history(id, req.after_seq, req.limit).await?;
        Ok(Response::new(v1::GetHistoryResponse {
            events: events.iter().map(event).collect(),
        }))
    }

    async fn await_workflow(
        &self,
        req: Request<v1::AwaitWorkflowRequest>,
    ) -> ApiResult<v1::AwaitWorkflowResponse> {
        let wait = bounded_wait(&req, req.get_ref().wait.as_ref());
        let req = req.into_inner();
        let id = parse_uuid("id", &req.id)?;
        let (v, done) = self.0.await_workflow(id, wait).await?;
        Ok(Response::new(v1::AwaitWorkflowResponse {
            workflow: Some(view(&v)),
            done,
        }))
    }

    async fn cancel_workflow(
        &self,
        req: Request<v1::CancelWorkflowRequest>,
    ) -> ApiResult<v1::CancelWorkflowResponse> {
        let req = req.into_inner();
        let id = parse_uuid("id", &req.id)?;
        let v = self
            .0
            .cancel_workflow(id, &req.reason, &req.operator)
            .await?;
        tracing::info!(workflow_id = %id, "workflow cancelled");
        Ok(Response::new(v1::CancelWorkflowResponse {
            workflow: Some(view(&v)),
        }))
    }

    async fn move_workflow(
        &self,
        req: Request<v1::MoveWorkflowRequest>,
    ) -> ApiResult<v1::MoveWorkflowResponse> {
        let req = req.into_inner();
        let id = parse_uuid("id", &req.id)?;
        if req.to.is_empty() {
            return Err(Status::invalid_argument(
                "`to` is required: name the node to move the workflow to",
            ));
        }
        let v = self
            .0
            .move_workflow(id, &req.to, action(req.operator, req.reason, req.expected))
            .await?;
        tracing::info!(workflow_id = %id, node = %req.to, "workflow moved by operator");
        Ok(Response::new(v1::MoveWorkflowResponse {
            workflow: Some(view(&v)),
        }))
    }

    async fn retry_workflow(
        &self,
        req: Request<v1::RetryWorkflowRequest>,
    ) -> ApiResult<v1::RetryWorkflowResponse> {
        let req = req.into_inner();
        let id = parse_uuid("id", &req.id)?;
        let v = self
            .0
            .retry_workflow(id, action(req.operator, req.reason, req.expected))
            .await?;
        tracing::info!(workflow_id = %id, "workflow retried by operator");
        Ok(Response::new(v1::RetryWorkflowResponse {
            workflow: Some(view(&v)),
        }))
    }
}
