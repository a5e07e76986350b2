//! HTTP handlers of the news feed.

use super::{
    json::{PageJson, PostJson},
    posts, timeline,
};
use crate::{
    auth::{extract::MaybeUser, AuthUser},
    error::{AppError, Json, Query},
    pagination::PageQuery,
    state::AppState,
};
use app::model::{Page, Post};
use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{get, put},
    Router,
};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/feed", get(read_feed).post(publish))
        .route("/v1/posts/{id}", get(get_post).delete(delete_post))
        .route("/v1/posts/{id}/like", put(like).delete(unlike))
        .route("/v1/users/{username}/posts", get(user_posts))
}

/// Body of `POST /v1/me/feed`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPost {
    /// 1..=5000 characters after trimming (may be empty when `media` is given).
    #[serde(default)]
    pub content: String,
    /// Ids of the author's own unused uploads (`POST /v1/media`), at most 4, shown in
    /// this order.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub media: Vec<app::model::Id>,
}

/// A post id from the path; anything that is not one names no post.
fn post_id(text: &str) -> Result<i64, AppError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::not_found("post"))
}

/// POST /v1/me/feed
#[utoipa::path(post, path = "/v1/me/feed", tag = "feed", security(("bearer" = [])), request_body = NewPost,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first post")),
    responses((status = 201, body = Post), (status = 422, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    Json(body): Json<NewPost>,
) -> Result<(StatusCode, Json<Post>), AppError> {
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| AppError::invalid_request("Idempotency-Key must be visible ASCII"))?,
        ),
        None => None,
    };
    let post = posts::publish(&state, &auth.user, &body.content, &body.media, key).await?;
    Ok((StatusCode::CREATED, Json(post)))
}

/// GET /v1/me/feed
#[utoipa::path(get, path = "/v1/me/feed", tag = "feed", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Post>), (status = 401, body = app::model::ErrorBody)))]
pub async fn read_feed(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<PageJson, AppError> {
    let (limit, cursor) = (page.limit()?, page.id_cursor()?);
    timeline::read(&state, auth.user.id.0, cursor, limit).await
}

/// GET /v1/posts/{id}
#[utoipa::path(get, path = "/v1/posts/{id}", tag = "feed", security((), ("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Post), (status = 404, body = app::model::ErrorBody)))]
pub async fn get_post(
    State(state): State<AppState>,
    MaybeUser(viewer): MaybeUser,
    Path(id): Path<String>,
) -> Result<PostJson, AppError> {
    let viewer = viewer.map(|v| v.id.0);
    posts::one(&state, viewer, post_id(&id)?).await
}

/// DELETE /v1/posts/{id}
#[utoipa::path(delete, path = "/v1/posts/{id}", tag = "feed", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = app::model::ErrorBody), (status = 404, body = app::model::ErrorBody)))]
pub async fn delete_post(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    posts::delete(&state, auth.user.id.0, post_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// PUT /v1/posts/{id}/like
#[utoipa::path(put, path = "/v1/posts/{id}/like", tag = "feed", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = app::model::ErrorBody)))]
pub async fn like(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    posts::set_like(&state, auth.user.id.0, post_id(&id)?, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /v1/posts/{id}/like
#[utoipa::path(delete, path = "/v1/posts/{id}/like", tag = "feed", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = app::model::ErrorBody)))]
pub async fn unlike(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    posts::set_like(&state, auth.user.id.0, post_id(&id)?, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v1/users/{username}/posts
#[utoipa::path(get, path = "/v1/users/{username}/posts", tag = "feed", security((), ("bearer" = [])), params(("username" = String, Path), PageQuery),
    responses((status = 200, body = Page<Post>), (status = 404, body = app::model::ErrorBody)))]
pub async fn user_posts(
    State(state): State<AppState>,
    MaybeUser(viewer): MaybeUser,
    Path(username): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<PageJson, AppError> {
    let (limit, cursor) = (page.limit()?, page.id_cursor()?);
    let author = state
        .store
        .accounts
        .user_by_username(&username)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    let viewer = viewer.map(|v| v.id.0);
    posts::by_author(&state, viewer, author.id, cursor, limit).await
}
