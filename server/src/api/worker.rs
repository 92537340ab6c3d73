//! WorkerService.

use rondo_gen::v1::{self, worker_service_server::WorkerService};
use tonic::{Request, Response};

use super::convert::{leased_job, status, timestamp};
use super::{ApiResult, bounded_wait};
use crate::service::Service;
use crate::service::jobs::PollRequest;
use crate::service::types::{Completed, Completion};

/// WorkerService over the use cases.
#[derive(Clone)]
pub struct WorkerApi(pub Service);

fn outcome(c: &Completed) -> (bool, i32, String) {
    (
        c.duplicate,
        status(c.status).into(),
        c.node.clone().unwrap_or_default(),
    )
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn poll_jobs(
        &self,
        req: Request<v1::PollJobsRequest>,
    ) -> ApiResult<v1::PollJobsResponse> {
        let wait = bounded_wait(&req, req.get_ref().wait.as_ref());
        let req = req.into_inner();
        let jobs = self
            .0
            .poll_jobs(PollRequest {
                worker: req.worker,
                operations: req.operations,
                max_jobs: req.max_jobs,
                wait,
            })
            .await?;
        Ok(Response::new(v1::PollJobsResponse {
            jobs: jobs.iter().map(leased_job).collect(),
        }))
    }

    async fn heartbeat_job(
        &self,
        req: Request<v1::HeartbeatJobRequest>,
    ) -> ApiResult<v1::HeartbeatJobResponse> {
        let req = req.into_inner();
        let progress = req.progress.map(|p| (p.percent, p.message));
        let expires = self
            .0
            .heartbeat(req.job_id, &req.lease_token, progress)
            .await?;
        Ok(Response::new(v1::HeartbeatJobResponse {
            lease_expires_at: Some(timestamp(expires)),
        }))
    }

    async fn complete_job(
        &self,
        req: Request<v1::CompleteJobRequest>,
    ) -> ApiResult<v1::CompleteJobResponse> {
        let req = req.into_inner();
        let done = self
            .0
            .complete_job(
                req.job_id,
                &req.lease_token,
                Completion::Label {
                    label: req.label,
                    output: req.output,
                },
                &req.next_operations,
            )
            .await?;
        let (duplicate, workflow_status, next_node) = outcome(&done);
        Ok(Response::new(v1::CompleteJobResponse {
            duplicate,
            workflow_status,
            next_node,
            next_job: done.next_job.as_ref().map(leased_job),
        }))
    }

    async fn fail_job(&self, req: Request<v1::FailJobRequest>) -> ApiResult<v1::FailJobResponse> {
        let req = req.into_inner();
        let done = self
            .0
            .complete_job(
                req.job_id,
                &req.lease_token,
                Completion::Failure {
                    message: req.message,
                },
                &[],
            )
            .await?;
        let (duplicate, workflow_status, next_node) = outcome(&done);
        Ok(Response::new(v1::FailJobResponse {
            duplicate,
            workflow_status,
            next_node,
        }))
    }

    async fn release_job(
        &self,
        req: Request<v1::ReleaseJobRequest>,
    ) -> ApiResult<v1::ReleaseJobResponse> {
        let req = req.into_inner();
        self.0
            .release_job(req.job_id, &req.lease_token, &req.reason)
            .await?;
        Ok(Response::new(v1::ReleaseJobResponse {}))
    }
}
