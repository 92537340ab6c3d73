//! InboxService.

use rondo_gen::v1::{self, inbox_service_server::InboxService};
use tonic::{Request, Response, Status};

use super::ApiResult;
use super::convert::{event, timestamp, view};
use crate::service::Service;
use crate::service::inbox::{Task, TaskAnswer, TaskFilter};

/// InboxService over the use cases.
#[derive(Clone)]
pub struct InboxApi(pub Service);

fn task(t: &Task) -> v1::Task {
    let j = &t.record.job;
    v1::Task {
        job_id: j.id,
        workflow_id: j.workflow_id.to_string(),
        graph: t.record.graph_name.clone(),
        graph_version: u32::try_from(t.record.graph_version).unwrap_or(0),
        node: j.node.clone(),
        prompt: t.prompt.clone(),
        labels: t.labels.clone(),
        vars: t.record.vars.to_string(),
        attempt: u32::try_from(j.attempt).unwrap_or(0),
        from_node: j.from_node.clone().unwrap_or_default(),
        waiting_since: Some(timestamp(j.created_at)),
        due_at: j.lease_expires_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl InboxService for InboxApi {
    async fn list_tasks(
        &self,
        req: Request<v1::ListTasksRequest>,
    ) -> ApiResult<v1::ListTasksResponse> {
        let req = req.into_inner();
        let after_id = if req.page_token.is_empty() {
            0
        } else {
            req.page_token.parse().map_err(|_| {
                Status::invalid_argument(
                    "`page_token` is not valid; pass the previous page's token as is",
                )
            })?
        };
        let (tasks, next) = self
            .0
            .list_tasks(TaskFilter {
                graph: (!req.graph.is_empty()).then_some(req.graph),
                node: (!req.node.is_empty()).then_some(req.node),
                page_size: req.page_size,
                after_id,
            })
            .await?;
        Ok(Response::new(v1::ListTasksResponse {
            tasks: tasks.iter().map(task).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_task(&self, req: Request<v1::GetTaskRequest>) -> ApiResult<v1::GetTaskResponse> {
        let t = self.0.get_task(req.into_inner().job_id).await?;
        let history = self.0.history(t.record.job.workflow_id, 0, 0).await?;
        Ok(Response::new(v1::GetTaskResponse {
            task: Some(task(&t)),
            history: history.iter().map(event).collect(),
        }))
    }

    async fn complete_task(
        &self,
        req: Request<v1::CompleteTaskRequest>,
    ) -> ApiResult<v1::CompleteTaskResponse> {
        let req = req.into_inner();
        tracing::info!(job_id = req.job_id, operator = %req.operator, label = %req.label, "task completed by operator");
        let v = self
            .0
            .complete_task(TaskAnswer {
                job_id: req.job_id,
                label: req.label,
                comment: req.comment,
                output: req.output,
                operator: req.operator,
            })
            .await?;
        Ok(Response::new(v1::CompleteTaskResponse {
            workflow: Some(view(&v)),
        }))
    }
}
