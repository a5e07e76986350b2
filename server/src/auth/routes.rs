//! `/v1/auth/*`, and the signed-in user's password and sessions (`/v1/me/password`,
//! `/v1/me/sessions`).

use super::{service, AuthUser};
use crate::{
    error::{AppError, Json},
    http::client::ClientInfo,
    state::AppState,
};
use app::model::{AuthResponse, Sessions};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{delete, get, post},
    Router,
};
use serde::Deserialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/me/password", post(change_password))
        .route("/v1/me/sessions", get(list_sessions))
        .route("/v1/me/sessions/{id}", delete(end_session))
}

/// Body of `POST /v1/auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
}

/// Body of `POST /v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// Body of `POST /v1/me/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// POST /v1/auth/register
#[utoipa::path(post, path = "/v1/auth/register", tag = "accounts", request_body = RegisterRequest,
    responses((status = 201, body = app::model::AuthResponse), (status = 409, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthResponse>), AppError> {
    let answer = service::register(
        &state,
        &body.username,
        body.password,
        body.display_name,
        &client,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// POST /v1/auth/login
#[utoipa::path(post, path = "/v1/auth/login", tag = "accounts", request_body = LoginRequest,
    responses((status = 200, body = app::model::AuthResponse), (status = 401, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(body): Json<LoginRequest>,
) -> Result<Json<AuthResponse>, AppError> {
    let answer = service::login(&state, &body.username, body.password, &client).await?;
    Ok(Json(answer))
}

/// POST /v1/auth/logout
#[utoipa::path(post, path = "/v1/auth/logout", tag = "accounts", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = app::model::ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<impl IntoResponse, AppError> {
    service::logout(&state, auth.user.id.0, &auth.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /v1/me/password: every other session of the user ends.
#[utoipa::path(post, path = "/v1/me/password", tag = "accounts", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204), (status = 401, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<PasswordChange>,
) -> Result<impl IntoResponse, AppError> {
    service::change_password(
        &state,
        &auth.user,
        &auth.token,
        body.current_password,
        body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v1/me/sessions
#[utoipa::path(get, path = "/v1/me/sessions", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Sessions), (status = 401, body = app::model::ErrorBody)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<Sessions>, AppError> {
    let items = service::sessions(&state, &auth.user, &auth.token).await?;
    Ok(Json(Sessions { items }))
}

/// DELETE /v1/me/sessions/{id}: the session ends as if it had logged out.
#[utoipa::path(delete, path = "/v1/me/sessions/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "a session id from GET /v1/me/sessions")),
    responses((status = 204), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody), (status = 404, body = app::model::ErrorBody)))]
pub async fn end_session(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| AppError::invalid_request("id: not a session id"))?;
    service::end_session(&state, &auth.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
