//! `/v1/me` and `/v1/users/{username}`.

use crate::{
    auth::{extract::MaybeUser, AuthUser},
    error::{AppError, Json},
    state::AppState,
};
use app::model::{Profile, User};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::get,
    Router,
};
use serde::Deserialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me).patch(update_me).delete(delete_me))
        .route("/v1/users/{username}", get(profile))
}

/// Body of `PATCH /v1/me`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// At most 64 characters after trimming; empty resets it to the username.
    pub display_name: Option<String>,
    /// At most 300 characters after trimming; empty clears it.
    pub bio: Option<String>,
}

/// GET /v1/me
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = app::model::User), (status = 401, body = app::model::ErrorBody)))]
pub async fn me(auth: AuthUser) -> Json<User> {
    Json(auth.user)
}

/// PATCH /v1/me
#[utoipa::path(patch, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    request_body = ProfileUpdate,
    responses((status = 200, body = app::model::User), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn update_me(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<ProfileUpdate>,
) -> Result<Json<User>, AppError> {
    super::service::update_profile(&state, &auth.user, body.display_name, body.bio)
        .await
        .map(Json)
}

/// Body of `DELETE /v1/me`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDeletion {
    /// The account's password, asked again.
    pub password: String,
}

/// DELETE /v1/me — deletes the account: its sessions, follows, posts and likes go; its chat
/// messages stay, from "Deleted user"; its username is free again after 30 days.
#[utoipa::path(delete, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    request_body = AccountDeletion,
    responses((status = 204), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn delete_me(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<AccountDeletion>,
) -> Result<StatusCode, AppError> {
    super::service::delete_account(&state, &auth.user, body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v1/users/{username}
#[utoipa::path(get, path = "/v1/users/{username}", tag = "accounts", security((), ("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = app::model::Profile), (status = 404, body = app::model::ErrorBody)))]
pub async fn profile(
    State(state): State<AppState>,
    MaybeUser(viewer): MaybeUser,
    Path(username): Path<String>,
) -> Result<Json<Profile>, AppError> {
    load_profile(&state, viewer.as_ref(), &username)
        .await
        .map(Json)
}

/// A profile as `viewer` sees it (shared with the UI).
pub async fn load_profile(
    state: &AppState,
    viewer: Option<&User>,
    username: &str,
) -> Result<Profile, AppError> {
    let user: User = state
        .store
        .accounts
        .user_by_username(username)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?
        .into();
    let counts = state
        .store
        .graph
        .counts(user.id.0, viewer.map(|v| v.id.0))
        .await?;
    Ok(Profile {
        user,
        followers: counts.followers,
        following: counts.following,
        posts: counts.posts,
        followed_by_me: counts.followed_by_viewer,
        blocked_by_me: counts.blocked_by_viewer,
    })
}
