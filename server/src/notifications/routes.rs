//! `/v1/me/notifications`.

use crate::{
    auth::AuthUser,
    error::{AppError, Json, Query},
    pagination::PageQuery,
    state::AppState,
};
use app::model::{Id, Notification, Page, UnreadCount};
use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, post},
    Router,
};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/notifications", get(list))
        .route("/v1/me/notifications/read", post(mark_read))
        .route("/v1/me/notifications/unread", get(unread))
}

/// GET /v1/me/notifications — newest first.
#[utoipa::path(get, path = "/v1/me/notifications", tag = "notifications", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Notification>), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Notification>>, AppError> {
    Ok(Json(
        super::list(&state, auth.user.id.0, page.id_cursor()?, page.limit()?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// Every notification with this id or an older one is marked read.
    pub up_to: Id,
}

/// POST /v1/me/notifications/read
#[utoipa::path(post, path = "/v1/me/notifications/read", tag = "notifications", security(("bearer" = [])),
    request_body = MarkRead,
    responses((status = 204), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody)))]
pub async fn mark_read(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<MarkRead>,
) -> Result<StatusCode, AppError> {
    super::mark_read(&state, auth.user.id.0, body.up_to.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v1/me/notifications/unread — how many are unread (the badge).
#[utoipa::path(get, path = "/v1/me/notifications/unread", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = UnreadCount), (status = 401, body = app::model::ErrorBody)))]
pub async fn unread(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<UnreadCount>, AppError> {
    Ok(Json(UnreadCount {
        count: super::unread(&state, auth.user.id.0).await?,
    }))
}
