//! The one error type of the HTTP layer and its JSON shape.
//!
//! Handlers return `Result<_, AppError>`; the error becomes
//! `{"error": {"code", "message"}}` with the status API.md assigns to the code.
//! Internal errors keep their cause for the log (written once, by the telemetry
//! middleware, inside the request span) and send the client nothing but `internal`.

use app::model::ErrorCode;
use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

/// An error that ends a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    #[error("rate limited for {retry_after_secs}s")]
    RateLimited {
        retry_after_secs: u64,
        /// What is exhausted, when more than a rate ("too many open WebSockets …").
        reason: Option<Box<str>>,
    },
    #[error(transparent)]
    Internal(#[from] InternalError),
    /// The database cannot be reached (down, restarting, pool exhausted): 503
    /// `unavailable` with `Retry-After`; the cause is logged like an internal error's.
    #[error("unavailable: {0}")]
    Unavailable(InternalError),
}

/// The cause of a 500, kept for the log only.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("{0}")]
    Other(String),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if crate::storage::is_unavailable(&e) {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<crate::id::Fenced> for AppError {
    fn from(e: crate::id::Fenced) -> Self {
        Self::Unavailable(InternalError::Other(e.to_string()))
    }
}

impl From<crate::backend::BackendError> for AppError {
    fn from(e: crate::backend::BackendError) -> Self {
        // Redis out of reach is a 503 like the database's: retrying shortly may succeed.
        let unreachable = matches!(&e, crate::backend::BackendError::Redis(r)
            if r.is_io_error() || r.is_connection_refusal() || r.is_connection_dropped() || r.is_timeout());
        if unreachable {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Client {
            code,
            message: message.into(),
        }
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    /// A 422 naming the offending field first, as API.md asks.
    pub fn validation(field: &str, problem: &str) -> Self {
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {problem}"))
    }
    /// A 429 telling the client to retry after `retry_after` (whole seconds, rounded up).
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        Self::RateLimited {
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            reason: None,
        }
    }
    /// A 429 for a cap on what is held at once: at most `max` of `what`.
    pub fn too_many(what: &str, max: usize, retry_after: std::time::Duration) -> Self {
        Self::RateLimited {
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            reason: Some(format!("too many {what}: at most {max} at once").into()),
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "authentication required")
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn internal(cause: impl Into<String>) -> Self {
        Self::Internal(InternalError::Other(cause.into()))
    }

    /// The public error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Client { code, .. } => *code,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Internal(_) => ErrorCode::Internal,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// Marks a response as carrying an internal error so the telemetry layer logs its cause.
#[derive(Clone, Debug)]
pub struct LoggedCause(pub std::sync::Arc<str>);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &self {
            Self::Client { message, .. } => message.clone(),
            Self::RateLimited {
                retry_after_secs,
                reason,
            } => match reason {
                Some(reason) => format!("{reason}; retry in {retry_after_secs}s"),
                None => format!("too many requests, retry in {retry_after_secs}s"),
            },
            Self::Internal(_) => "internal error".to_string(),
            Self::Unavailable(_) => {
                "the service is briefly unavailable, retry in a moment".to_string()
            }
        };
        let body = serde_json::json!({"error": {"code": code.as_str(), "message": message}});
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            Self::Internal(cause) => {
                response
                    .extensions_mut()
                    .insert(LoggedCause(cause.to_string().into()));
            }
            Self::Unavailable(cause) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
                response
                    .extensions_mut()
                    .insert(LoggedCause(cause.to_string().into()));
            }
            Self::Client { .. } => {}
        }
        response
    }
}

/// `axum::Json`, but every rejection (bad syntax, wrong types, missing content type,
/// oversized body) becomes an [`AppError`] in the API's error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::new(
            ErrorCode::PayloadTooLarge,
            "request body exceeds the 64 KiB limit",
        );
    }
    match rejection {
        JsonRejection::JsonDataError(e) => AppError::invalid_request(e.body_text()),
        JsonRejection::JsonSyntaxError(_) => AppError::invalid_request("malformed JSON body"),
        JsonRejection::MissingJsonContentType(_) => {
            AppError::invalid_request("expected Content-Type: application/json")
        }
        other => AppError::invalid_request(other.body_text()),
    }
}

/// `axum::extract::Query` whose rejection is an `invalid_request` in the API's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| AppError::invalid_request(e.body_text()))
    }
}
