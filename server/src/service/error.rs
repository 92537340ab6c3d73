//! The service layer's errors: each maps to exactly one gRPC status code in `api/`.

use rondo_engine::Problem;

use crate::store::StoreError;

/// Errors of the service layer; each maps to exactly one gRPC status code in `api/`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; the message says which field and how to fix it.
    #[error("{0}")]
    InvalidArgument(String),
    /// A graph definition failed validation.
    #[error("graph is invalid: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidGraph {
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing exists already in a different form.
    #[error("{0}")]
    AlreadyExists(String),
    /// The system is not in the state the request needs.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request lost a race (a lease, or an operator's expected state).
    #[error("{0}")]
    Aborted(String),
    /// The database is unreachable; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data; logged once, shown to clients as "internal error".
    #[error("internal: {0}")]
    Internal(String),
}

impl From<deadpool_postgres::PoolError> for ServiceError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<tokio_postgres::Error> for ServiceError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Pool(_) => ServiceError::Unavailable(e.to_string()),
            StoreError::Db(db) if db.is_closed() || db.as_db_error().is_none() => {
                ServiceError::Unavailable(e.to_string())
            }
            _ => ServiceError::Internal(e.to_string()),
        }
    }
}
