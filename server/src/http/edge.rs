//! The HTTP edge: what every request passes through around its handler, as one middleware.
//!
//! Around the handler, outermost first:
//! 1. metrics: every request counted and timed by method and route template, the cause of
//!    a 500 logged ([`RequestTimer`]);
//! 2. security headers on every response, and the CSP nonce for the page renderer
//!    ([`SecurityHeaders`]);
//! 3. CSRF: ambient cross-origin or tokenless state changes refused, a browser's CSRF
//!    cookie set ([`csrf::check`]);
//! 4. a body declared larger than its route takes refused before any of it is read (413);
//! 5. the API's errors (`/v1/…`) in its JSON shape, including those no handler of ours
//!    wrote.
//!
//! One middleware rather than one per concern because the router wraps each route in each
//! layer: every layer costs every request a clone of what it wraps and a boxed future, and
//! five of them were a quarter of the CPU a long-poll exchange took (docs/benchmarks.md).

use super::{csrf, security::SecurityHeaders};
use crate::{
    error::AppError, media, startup::MAX_BODY_BYTES, state::AppState, telemetry::RequestTimer,
};
use app::model::ErrorCode;
use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The middleware; see the module's documentation.
pub async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let timer = RequestTimer::start(&req);
    let security = SecurityHeaders::prepare(&state, &mut req);
    let mut response = match csrf::check(&state, &mut req) {
        Err(refused) => refused.into_response(),
        Ok(csrf_cookie) => {
            let mut response = match oversized(&req) {
                Some(refused) => refused,
                None if req.uri().path().starts_with("/v1/") => {
                    api_errors_in_json(next.run(req).await).await
                }
                None => next.run(req).await,
            };
            if let Some(cookie) = csrf_cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
    };
    security.apply(&state, &mut response);
    timer.finish(&state, &response);
    response
}

/// A 413 (in the API's shape) for a body declared larger than its route takes; bodies
/// without a length are cut off at the same size by `DefaultBodyLimit`.
fn oversized(req: &Request) -> Option<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())?;
    // Image uploads have their own limit (the route's `DefaultBodyLimit`).
    if req.uri().path() == "/v1/media" {
        (declared > media::routes::MAX_UPLOAD_REQUEST_BYTES)
            .then(|| media::service::too_large().into_response())
    } else {
        (declared > MAX_BODY_BYTES).then(|| {
            AppError::new(
                ErrorCode::PayloadTooLarge,
                "request body exceeds the 64 KiB limit",
            )
            .into_response()
        })
    }
}

/// Gives an error of the API (`/v1/…`) the API's JSON shape, including those that no
/// handler of ours wrote: a known path with the wrong method, a path or query an
/// extractor could not read. The status, headers (`Allow`, `Set-Cookie` …) and extensions
/// stay; only the body is replaced.
async fn api_errors_in_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let code = match status.as_u16() {
        400 | 411 | 415 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::ValidationFailed,
        429 => ErrorCode::RateLimited,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    // An extractor's rejection says what was wrong in a line of text; anything longer,
    // and any server error's text, is not passed on.
    let text = if code == ErrorCode::Internal {
        String::new()
    } else {
        axum::body::to_bytes(body, 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default()
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let json = serde_json::json!({"error": {"code": code.as_str(), "message": message}});
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(json.to_string()))
}
