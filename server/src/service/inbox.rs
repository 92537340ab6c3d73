//! The operator inbox: open jobs of human nodes, and their completion by a person.

use rondo_engine::template::render_prompt;
use serde_json::Value;

use super::Service;
use super::error::ServiceError;
use super::plan::{self, EndJob};
use super::step::Outbox;
use super::types::WorkflowView;
use super::workflows::{actor_of, page_size};
use crate::store::jobs::{self, InboxFilter, JobState, JobWithWorkflow};

/// An open human task, ready to show.
#[derive(Debug, Clone)]
pub struct Task {
    /// The row with its workflow's data.
    pub record: JobWithWorkflow,
    /// The prompt with placeholders filled in.
    pub prompt: String,
    /// Labels the operator may choose.
    pub labels: Vec<String>,
}

/// Filters of the inbox.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this graph.
    pub graph: Option<String>,
    /// Only this node.
    pub node: Option<String>,
    /// Page size.
    pub page_size: u32,
    /// Continue after this job id.
    pub after_id: i64,
}

/// An operator's answer to a task.
#[derive(Debug, Clone)]
pub struct TaskAnswer {
    /// The task's job id.
    pub job_id: i64,
    /// Chosen label.
    pub label: String,
    /// Why.
    pub comment: String,
    /// Output JSON text.
    pub output: String,
    /// Who.
    pub operator: String,
}

impl Service {
    /// Lists open human tasks, oldest first; returns the next page's `after_id`.
    pub async fn list_tasks(
        &self,
        f: TaskFilter,
    ) -> Result<(Vec<Task>, Option<i64>), ServiceError> {
        let limit = page_size(f.page_size);
        let client = self.pool().get().await?;
        let filter = InboxFilter {
            graph: f.graph.as_deref(),
            node: f.node.as_deref(),
            job_id: None,
            after_id: f.after_id,
            limit: limit + 1,
        };
        let mut rows = jobs::inbox(&client, &filter).await?;
        let next = if rows.len() as i64 > limit {
            rows.pop();
            rows.last().map(|r| r.job.id)
        } else {
            None
        };
        let mut tasks = Vec::with_capacity(rows.len());
        for record in rows {
            tasks.push(self.task(&client, record).await?);
        }
        Ok((tasks, next))
    }

    /// Reads one open task.
    pub async fn get_task(&self, job_id: i64) -> Result<Task, ServiceError> {
        let client = self.pool().get().await?;
        let filter = InboxFilter {
            job_id: Some(job_id),
            limit: 1,
            ..InboxFilter::default()
        };
        let record = jobs::inbox(&client, &filter).await?.pop().ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no open task with job id {job_id}; `rondo inbox list` shows the open tasks"
            ))
        })?;
        self.task(&client, record).await
    }

    async fn task(
        &self,
        client: &impl crate::store::GenericClient,
        record: JobWithWorkflow,
    ) -> Result<Task, ServiceError> {
        let (graph, _) = self
            .graph(client, &record.graph_name, record.graph_version)
            .await?;
        let node = graph.node(&record.job.node);
        let prompt = node.and_then(|n| n.prompt.as_deref()).unwrap_or_default();
        let from = record.job.from_node.clone().unwrap_or_default();
        let prompt = render_prompt(prompt, &record.vars, &record.input, &from, &record.job.node);
        let labels = node.map(|n| n.offered_labels()).unwrap_or_default();
        Ok(Task {
            record,
            prompt,
            labels,
        })
    }

    /// An operator completes a task. Of two operators racing, exactly one wins.
    pub async fn complete_task(&self, answer: TaskAnswer) -> Result<WorkflowView, ServiceError> {
        if answer.operator.trim().is_empty() {
            return Err(ServiceError::InvalidArgument(
                "`operator` is required to complete a task: pass --operator or set RONDO_OPERATOR"
                    .into(),
            ));
        }
        let output = Value::Object(self.parse_object("output", &answer.output)?);
        let actor = actor_of(&answer.operator, "operator");
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let locked = jobs::lock_with_workflow(&tx, answer.job_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("job {} not found", answer.job_id)))?;
        if locked.job.operation.is_some() {
            return Err(ServiceError::FailedPrecondition(format!(
                "job {} belongs to operation `{}`, not a human node; workers complete it",
                answer.job_id,
                locked.job.operation.clone().unwrap_or_default()
            )));
        }
        if locked.job.state != JobState::Active {
            return Err(ServiceError::FailedPrecondition(format!(
                "task {} is no longer open (it was {} by {}); refresh the inbox",
                answer.job_id,
                locked.job.state.as_str(),
                locked
                    .job
                    .ended_by
                    .clone()
                    .unwrap_or_else(|| "someone else".into())
            )));
        }
        let graph = self.graph_of(&tx, &locked.workflow).await?;
        let end = EndJob {
            label: &answer.label,
            output: &output,
            actor: &actor,
            message: (!answer.comment.is_empty()).then(|| answer.comment.clone()),
            must_be_offered: true,
            eager: None,
        };
        let mut outbox = Outbox::new();
        let plan = plan::plan_end(&locked, &graph, end, self.limits(), rand::random())?;
        self.stage(&tx, plan, &mut outbox).await?;
        self.commit(tx, outbox).await?;
        drop(client);
        self.get_workflow(locked.workflow.id).await
    }
}
