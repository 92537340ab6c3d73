//! The SDK's one error type, for building workers and for client calls.

/// What went wrong building a worker or talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server address is not a valid URL.
    #[error("invalid server url `{url}`: {reason}")]
    InvalidUrl {
        /// The address as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The worker's configuration cannot work (no handler, zero concurrency, ...).
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// The server answered a call with an error status.
    #[error("{method} failed ({code:?}): {message}")]
    Rpc {
        /// The RPC that failed, such as `StartWorkflow`.
        method: &'static str,
        /// The gRPC status code; `NotFound`, `AlreadyExists`, `InvalidArgument` and so on.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// A JSON payload is not a JSON object, or the server sent something this SDK cannot read.
    #[error("invalid payload: {0}")]
    Payload(String),
}

impl Error {
    /// The gRPC status code when the server rejected a call, for matching on
    /// `NotFound`, `AlreadyExists` and the like.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            Error::InvalidUrl { .. } | Error::Config(_) | Error::Payload(_) => None,
        }
    }

    pub(crate) fn rpc(method: &'static str, status: &tonic::Status) -> Self {
        Error::Rpc {
            method,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
