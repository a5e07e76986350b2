//! The error type of the UI's server functions: the API's `{code, message}` pair, so the
//! UI can show the same messages the JSON API gives and match on codes.

use crate::model::ErrorCode;
use serde::{Deserialize, Serialize};
use server_fn::{codec::JsonEncoding, error::FromServerFnError, ServerFnError};

/// An error a server function reports to the UI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The field a `validation_failed` message names (`"username: ..."`), if any.
    pub fn field(&self) -> Option<&str> {
        (self.code == ErrorCode::ValidationFailed || self.code == ErrorCode::UsernameTaken)
            .then(|| self.message.split_once(':').map(|(f, _)| f))
            .flatten()
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: server_fn::error::ServerFnErrorErr) -> Self {
        use server_fn::error::ServerFnErrorErr as E;
        match value {
            E::Args(m) | E::Deserialization(m) => Self::new(ErrorCode::InvalidRequest, m),
            E::Request(_) | E::Response(_) => Self::new(
                ErrorCode::Internal,
                "could not reach the server; check your connection and try again",
            ),
            _ => Self::new(
                ErrorCode::Internal,
                "something went wrong; please try again",
            ),
        }
    }
}

impl From<ServerFnError> for ApiError {
    fn from(_: ServerFnError) -> Self {
        Self::new(
            ErrorCode::Internal,
            "something went wrong; please try again",
        )
    }
}
