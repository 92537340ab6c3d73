//! The gRPC edge: one file per proto service, wire <-> domain conversion, and the one mapping
//! of [`ServiceError`] to `tonic::Status`. Rule: generated types stop here.

pub mod convert;
pub mod graph;
pub mod inbox;
pub mod schedule;
pub mod worker;
pub mod workflow;

use rondo_gen::v1::graph_service_server::GraphServiceServer;
use rondo_gen::v1::inbox_service_server::InboxServiceServer;
use rondo_gen::v1::schedule_service_server::ScheduleServiceServer;
use rondo_gen::v1::worker_service_server::WorkerServiceServer;
use rondo_gen::v1::workflow_service_server::WorkflowServiceServer;
use tonic::Status;
use tonic::service::Routes;

use crate::service::{Service, ServiceError};

/// Every Rondo gRPC service over one [`Service`].
pub fn routes(service: &Service) -> Routes {
    Routes::new(GraphServiceServer::new(graph::GraphApi(service.clone())))
        .add_service(WorkflowServiceServer::new(workflow::WorkflowApi(service.clone())))
        .add_service(WorkerServiceServer::new(worker::WorkerApi(service.clone())))
        .add_service(InboxServiceServer::new(inbox::InboxApi(service.clone())))
        .add_service(ScheduleServiceServer::new(schedule::ScheduleApi(service.clone())))
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::InvalidGraph { .. } => Status::invalid_argument(e.to_string()),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists(m) => Status::already_exists(m),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServiceError::Aborted(m) => Status::aborted(m),
            ServiceError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Status::unavailable("database unavailable; retry shortly")
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// Result type of the API handlers.
pub type ApiResult<T> = Result<tonic::Response<T>, Status>;

/// Parses a workflow id field.
pub(crate) fn parse_uuid(field: &str, s: &str) -> Result<uuid::Uuid, Status> {
    s.parse().map_err(|_| {
        Status::invalid_argument(format!("`{field}` `{s}` is not a workflow id; ids are UUIDs as printed by `rondo workflow list`"))
    })
}
