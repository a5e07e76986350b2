//! `/v1/auth/*`.

use super::{service, AuthUser};
use crate::{
    error::{AppError, Json},
    http::client::ClientIp,
    state::AppState,
};
use app::model::AuthResponse;
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Router};
use serde::Deserialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/logout", post(logout))
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

/// POST /v1/auth/register
#[utoipa::path(post, path = "/v1/auth/register", tag = "accounts", request_body = RegisterRequest,
    responses((status = 201, body = app::model::AuthResponse), (status = 409, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthResponse>), AppError> {
    let answer =
        service::register(&state, &body.username, body.password, body.display_name, ip).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// POST /v1/auth/login
#[utoipa::path(post, path = "/v1/auth/login", tag = "accounts", request_body = LoginRequest,
    responses((status = 200, body = app::model::AuthResponse), (status = 401, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginRequest>,
) -> Result<Json<AuthResponse>, AppError> {
    let answer = service::login(&state, &body.username, body.password, ip).await?;
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
