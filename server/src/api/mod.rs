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
        .add_service(WorkflowServiceServer::new(workflow::WorkflowApi(
            service.clone(),
        )))
        .add_service(WorkerServiceServer::new(worker::WorkerApi(service.clone())))
        .add_service(InboxServiceServer::new(inbox::InboxApi(service.clone())))
        .add_service(ScheduleServiceServer::new(schedule::ScheduleApi(
            service.clone(),
        )))
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

/// The wait a long poll may use: what the client asked for, shortened so the answer arrives
/// before the client's own deadline (the `grpc-timeout` header) with a margin for the trip.
pub(crate) fn bounded_wait<T>(
    req: &tonic::Request<T>,
    requested: Option<&prost_types::Duration>,
) -> std::time::Duration {
    const DEFAULT: std::time::Duration = std::time::Duration::from_secs(30);
    const MARGIN: std::time::Duration = std::time::Duration::from_millis(500);
    let wait = requested.map_or(DEFAULT, convert::from_duration);
    let client = req
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    match client {
        Some(deadline) => wait.min(deadline.saturating_sub(MARGIN)),
        None => wait,
    }
}

/// Parses a `grpc-timeout` header value: digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<std::time::Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    })
}

/// Parses a workflow id field.
pub(crate) fn parse_uuid(field: &str, s: &str) -> Result<uuid::Uuid, Status> {
    s.parse().map_err(|_| {
        Status::invalid_argument(format!("`{field}` `{s}` is not a workflow id; ids are UUIDs as printed by `rondo workflow list`"))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_long_poll_answers_before_the_clients_deadline() {
        let mut req = tonic::Request::new(());
        req.metadata_mut()
            .insert("grpc-timeout", "2S".parse().unwrap());
        let asked = prost_types::Duration {
            seconds: 30,
            nanos: 0,
        };
        assert_eq!(
            bounded_wait(&req, Some(&asked)),
            Duration::from_millis(1500)
        );
        let plain = tonic::Request::new(());
        assert_eq!(bounded_wait(&plain, Some(&asked)), Duration::from_secs(30));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("x"), None);
    }
}
