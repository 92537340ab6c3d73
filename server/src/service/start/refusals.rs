//! Why a start is answered from an existing workflow, or refused: its idempotency key
//! already started one, with the same request or a different one.

use super::super::Service;
use super::super::error::ServiceError;
use super::super::types::{NewStart, Started};
use super::first::request_hash;
use crate::store::GenericClient;
use crate::store::workflows;

impl Service {
    /// The workflow an idempotency key already started, when `new` repeats its request;
    /// ALREADY_EXISTS when the request differs.
    pub(crate) async fn existing_start(
        &self,
        client: &impl GenericClient,
        new: &NewStart<'_>,
    ) -> Result<Started, ServiceError> {
        let key = new.idempotency_key.unwrap_or_default();
        let existing = workflows::get_by_key(client, key)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("idempotency key `{key}` vanished")))?;
        if existing.request_hash.as_deref() != Some(request_hash(new).as_str()) {
            return Err(ServiceError::AlreadyExists(format!(
                "idempotency key `{key}` already started workflow {} with a different request \
                 (graph, version, input or start time); repeat the original request or use a new key",
                existing.id
            )));
        }
        let view = self.view_with(client, existing).await?;
        Ok(Started {
            view,
            existing: true,
        })
    }
}
