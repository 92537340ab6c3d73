//! Why a completion, heartbeat or release is refused: the lease token is malformed, the job
//! does not exist, its lease was lost, or it was cancelled. The messages say what the worker
//! should do.

use uuid::Uuid;

use super::super::Service;
use super::super::error::ServiceError;
use crate::store::GenericClient;
use crate::store::jobs::{self, JobState};

impl Service {
    /// Explains why a lease is not live: unknown job, cancelled, or lease lost.
    pub(crate) async fn why_not_live(
        &self,
        client: &impl GenericClient,
        job_id: i64,
        token: Uuid,
    ) -> Result<ServiceError, ServiceError> {
        let job = jobs::get(client, job_id)
            .await?
            .ok_or_else(|| job_not_found(job_id))?;
        Ok(match job.state {
            JobState::Cancelled => cancelled(job_id),
            _ if job.lease_token != Some(token) => {
                lease_lost(job_id, "the lease token does not match")
            }
            _ => lease_lost(job_id, "the lease ran out or the job was given back"),
        })
    }
}

/// A lease token as the database stores it.
pub(crate) fn parse_token(token: &str) -> Result<Uuid, ServiceError> {
    token.parse().map_err(|_| {
        ServiceError::Aborted(format!(
            "lease lost: `{token}` is not a lease token; use the job's `lease_token`"
        ))
    })
}

/// A job id no row has.
pub(crate) fn job_not_found(job_id: i64) -> ServiceError {
    ServiceError::NotFound(format!("job {job_id} not found"))
}

/// A lease that is no longer the caller's.
pub(crate) fn lease_lost(job_id: i64, why: &str) -> ServiceError {
    ServiceError::Aborted(format!(
        "lease lost: job {job_id}: {why}; drop the result, the engine has moved on"
    ))
}

/// A job whose workflow was cancelled or moved on.
pub(crate) fn cancelled(job_id: i64) -> ServiceError {
    ServiceError::FailedPrecondition(format!(
        "cancelled: job {job_id} was cancelled (its workflow was cancelled or moved on); stop working on it"
    ))
}
