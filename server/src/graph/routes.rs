//! HTTP handlers of the social graph and user search.

use super::service;
use crate::storage::graph::List;
use crate::{
    auth::{extract::MaybeUser, AuthUser},
    error::{AppError, Json, Query},
    pagination::{time_id_cursor, PageQuery},
    state::AppState,
};
use app::model::{rules, Page, User};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, put},
    Router,
};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/following/{username}", put(follow).delete(unfollow))
        .route("/v1/me/following", get(following))
        .route("/v1/me/followers", get(followers))
        .route("/v1/me/friends", get(friends))
        .route("/v1/me/blocks/{username}", put(block).delete(unblock))
        .route("/v1/me/blocks", get(blocks))
        .route("/v1/users", get(search))
}

/// PUT /v1/me/following/{username}
#[utoipa::path(put, path = "/v1/me/following/{username}", tag = "graph", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204), (status = 404, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn follow(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(username): Path<String>,
) -> Result<StatusCode, AppError> {
    service::follow(&state, auth.user.id.0, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /v1/me/following/{username}
#[utoipa::path(delete, path = "/v1/me/following/{username}", tag = "graph", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204), (status = 404, body = app::model::ErrorBody)))]
pub async fn unfollow(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(username): Path<String>,
) -> Result<StatusCode, AppError> {
    service::unfollow(&state, auth.user.id.0, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// PUT /v1/me/blocks/{username}
#[utoipa::path(put, path = "/v1/me/blocks/{username}", tag = "graph", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "blocked (also when already blocked); the follows between you end both ways"),
        (status = 404, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn block(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(username): Path<String>,
) -> Result<StatusCode, AppError> {
    service::block(&state, auth.user.id.0, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /v1/me/blocks/{username}
#[utoipa::path(delete, path = "/v1/me/blocks/{username}", tag = "graph", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "not blocked (also when it was not)"), (status = 404, body = app::model::ErrorBody)))]
pub async fn unblock(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(username): Path<String>,
) -> Result<StatusCode, AppError> {
    service::unblock(&state, auth.user.id.0, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /v1/me/blocks
#[utoipa::path(get, path = "/v1/me/blocks", tag = "graph", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<User>, description = "whom you blocked, most recent first"),
        (status = 400, body = app::model::ErrorBody)))]
pub async fn blocks(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<User>>, AppError> {
    Ok(Json(
        list(&state, auth.user.id.0, List::Blocks, &page).await?,
    ))
}

/// One page of a follow or block list of `user`.
pub(crate) async fn list(
    state: &AppState,
    user: i64,
    which: List,
    page: &PageQuery,
) -> Result<Page<User>, AppError> {
    let limit = page.limit()?;
    let mut rows = state
        .store
        .graph
        .list(user, which, page.time_id_cursor()?, limit as i64 + 1)
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|r| time_id_cursor(r.listed_at, r.user.id))
    } else {
        None
    };
    Ok(Page {
        items: rows.into_iter().map(|r| User::from(r.user)).collect(),
        next_cursor,
    })
}

/// GET /v1/me/following
#[utoipa::path(get, path = "/v1/me/following", tag = "graph", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<User>)))]
pub async fn following(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<User>>, AppError> {
    Ok(Json(
        list(&state, auth.user.id.0, List::Following, &page).await?,
    ))
}

/// GET /v1/me/followers
#[utoipa::path(get, path = "/v1/me/followers", tag = "graph", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<User>)))]
pub async fn followers(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<User>>, AppError> {
    Ok(Json(
        list(&state, auth.user.id.0, List::Followers, &page).await?,
    ))
}

/// GET /v1/me/friends
#[utoipa::path(get, path = "/v1/me/friends", tag = "graph", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<User>)))]
pub async fn friends(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<User>>, AppError> {
    Ok(Json(
        list(&state, auth.user.id.0, List::Friends, &page).await?,
    ))
}

/// `?prefix&limit&cursor` of user search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Start of the username (may be empty: everyone, alphabetically).
    #[serde(default)]
    pub prefix: String,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// GET /v1/users?prefix= — find people by username prefix (an extension of API.md).
#[utoipa::path(get, path = "/v1/users", tag = "graph", params(SearchQuery),
    responses((status = 200, body = Page<User>), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    // Open to everyone, like profiles; a token that is presented must be valid.
    _viewer: MaybeUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Page<User>>, AppError> {
    Ok(Json(
        search_users(
            &state,
            &q.prefix,
            q.cursor.as_deref(),
            &PageQuery {
                limit: q.limit,
                cursor: None,
            },
        )
        .await?,
    ))
}

/// User search, shared with the UI.
pub async fn search_users(
    state: &AppState,
    prefix: &str,
    cursor: Option<&str>,
    page: &PageQuery,
) -> Result<Page<User>, AppError> {
    let prefix = prefix.trim().to_lowercase();
    if prefix.len() > 32
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(AppError::invalid_request(
            "prefix may contain only a-z, 0-9 and _ (at most 32)",
        ));
    }
    if let Some(c) = cursor {
        rules::check_username(c)
            .map_err(|_| AppError::invalid_request("cursor is not one this server issued"))?;
    }
    let limit = page.limit()?;
    let mut rows = state
        .store
        .graph
        .search(&prefix, cursor, limit as i64 + 1)
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|r| r.username.clone())
    } else {
        None
    };
    Ok(Page {
        items: rows.into_iter().map(User::from).collect(),
        next_cursor,
    })
}
