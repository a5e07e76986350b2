//! HTTP handlers of chat, including the long-poll fallback.

use super::service;
use crate::{
    auth::AuthUser,
    error::{AppError, Json, Query},
    pagination::PageQuery,
    state::AppState,
};
use app::model::{Channel, ChannelSummary, Message, Page, SyncResponse};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get, patch, post},
    Router,
};
use serde::Deserialize;

/// Longest a long-poll waits.
pub const MAX_WAIT_SECS: u64 = 30;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/dm/{username}", post(open_dm))
        .route("/v1/chat/groups", post(create_group))
        .route("/v1/chat/channels", get(list_channels))
        .route("/v1/chat/channels/{id}", patch(rename_group))
        .route("/v1/chat/channels/{id}/members", post(add_member))
        .route(
            "/v1/chat/channels/{id}/members/{username}",
            delete(remove_member),
        )
        .route("/v1/chat/channels/{id}/messages", get(history).post(send))
        .route(
            "/v1/chat/channels/{id}/messages/{message_id}",
            patch(edit_message).delete(delete_message),
        )
        .route("/v1/chat/channels/{id}/typing", post(typing))
        .route("/v1/chat/channels/{id}/read", post(read))
        .route("/v1/chat/sync", get(sync))
        .route("/v1/chat/ws", get(super::ws::upgrade))
}

fn channel_id(text: &str) -> Result<i64, AppError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AppError::not_found("channel"))
}

fn query_id(name: &str, value: Option<&str>) -> Result<Option<i64>, AppError> {
    value
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| AppError::invalid_request(format!("{name} must be a message id")))
        })
        .transpose()
}

/// POST /v1/chat/dm/{username}
#[utoipa::path(post, path = "/v1/chat/dm/{username}", tag = "chat", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = Channel), (status = 404, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn open_dm(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(username): Path<String>,
) -> Result<Json<Channel>, AppError> {
    Ok(Json(service::open_dm(&state, &auth.user, &username).await?))
}

/// Body of `PATCH /v1/chat/channels/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// 1 to 100 characters after trimming.
    pub name: String,
}

/// PATCH /v1/chat/channels/{id} — renames a group; any member may.
#[utoipa::path(patch, path = "/v1/chat/channels/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = GroupUpdate,
    responses((status = 200, body = Channel), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody), (status = 403, body = app::model::ErrorBody), (status = 404, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn rename_group(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<GroupUpdate>,
) -> Result<Json<Channel>, AppError> {
    let channel = service::rename_group(&state, &auth.user, channel_id(&id)?, &body.name).await?;
    Ok(Json(channel))
}

/// Body of `POST /v1/chat/groups`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub name: String,
    /// Usernames; the creator is added automatically.
    pub members: Vec<String>,
}

/// POST /v1/chat/groups
#[utoipa::path(post, path = "/v1/chat/groups", tag = "chat", security(("bearer" = [])), request_body = NewGroup,
    responses((status = 201, body = Channel), (status = 404, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn create_group(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<NewGroup>,
) -> Result<(StatusCode, Json<Channel>), AppError> {
    let channel = service::create_group(&state, &auth.user, &body.name, &body.members).await?;
    Ok((StatusCode::CREATED, Json(channel)))
}

/// The conversation list.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelSummary>,
}

/// GET /v1/chat/channels
#[utoipa::path(get, path = "/v1/chat/channels", tag = "chat", security(("bearer" = [])),
    responses((status = 200, body = ChannelList)))]
pub async fn list_channels(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<ChannelList>, AppError> {
    Ok(Json(ChannelList {
        items: service::list(&state, &auth.user).await?,
    }))
}

/// Body of `POST /v1/chat/channels/{id}/members`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub username: String,
}

/// POST /v1/chat/channels/{id}/members
#[utoipa::path(post, path = "/v1/chat/channels/{id}/members", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewMember,
    responses((status = 204), (status = 403, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<NewMember>,
) -> Result<StatusCode, AppError> {
    service::add_member(&state, &auth.user, channel_id(&id)?, &body.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /v1/chat/channels/{id}/members/{username}
#[utoipa::path(delete, path = "/v1/chat/channels/{id}/members/{username}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path), ("username" = String, Path)),
    responses((status = 204), (status = 403, body = app::model::ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, username)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    service::remove_member(&state, &auth.user, channel_id(&id)?, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?limit&before&after&cursor` of history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub limit: Option<String>,
    /// Messages older than this id (default: the newest).
    pub before: Option<String>,
    /// Messages newer than this id, oldest first.
    pub after: Option<String>,
    /// The previous page's `next_cursor`, for clients that page every list the same way:
    /// the same as `before` (paging back from the newest). Paging forward, pass
    /// `next_cursor` as `after`.
    pub cursor: Option<String>,
}

/// GET /v1/chat/channels/{id}/messages — a page in id order; `next_cursor` continues in
/// the same direction (pass it as `before`, or as `after` when paging forward).
#[utoipa::path(get, path = "/v1/chat/channels/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = Page<Message>), (status = 403, body = app::model::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Page<Message>>, AppError> {
    let limit = PageQuery {
        limit: q.limit.clone(),
        cursor: None,
    }
    .limit()?;
    let before = query_id("before", q.before.as_deref())?;
    let cursor = query_id("cursor", q.cursor.as_deref())?;
    let after = query_id("after", q.after.as_deref())?;
    if [before, cursor, after].iter().flatten().count() > 1 {
        return Err(AppError::invalid_request(
            "give one of before, after and cursor",
        ));
    }
    let before = before.or(cursor);
    Ok(Json(
        service::history(&state, &auth.user, channel_id(&id)?, before, after, limit).await?,
    ))
}

/// Body of `POST /v1/chat/channels/{id}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// 1..=4000 characters, not only whitespace (may be empty when `media` is given).
    #[serde(default)]
    pub content: String,
    pub client_msg_id: String,
    /// Ids of the sender's own unused uploads (`POST /v1/media`), at most 4.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub media: Vec<app::model::Id>,
}

/// POST /v1/chat/channels/{id}/messages — 201 once the message is durably stored.
#[utoipa::path(post, path = "/v1/chat/channels/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewMessage,
    responses((status = 201, body = Message), (status = 403, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<NewMessage>,
) -> Result<(StatusCode, Json<Message>), AppError> {
    let message = service::send_over_http(
        &state,
        &auth.user,
        channel_id(&id)?,
        &body.content,
        &body.media,
        &body.client_msg_id,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(message)))
}

fn message_id(text: &str) -> Result<i64, AppError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AppError::not_found("message"))
}

/// Body of `PATCH /v1/chat/channels/{id}/messages/{message_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageEdit {
    /// The new content: 1..=4000 characters, not only whitespace.
    pub content: String,
}

/// PATCH /v1/chat/channels/{id}/messages/{message_id} — the sender edits their message
/// within 24 hours of sending it; the members get `message_updated`.
#[utoipa::path(patch, path = "/v1/chat/channels/{id}/messages/{message_id}", tag = "chat",
    security(("bearer" = [])),
    params(("id" = String, Path), ("message_id" = String, Path)), request_body = MessageEdit,
    responses((status = 200, body = Message), (status = 400, body = app::model::ErrorBody), (status = 401, body = app::model::ErrorBody), (status = 403, body = app::model::ErrorBody), (status = 404, body = app::model::ErrorBody), (status = 422, body = app::model::ErrorBody)))]
pub async fn edit_message(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, message)): Path<(String, String)>,
    Json(body): Json<MessageEdit>,
) -> Result<Json<Message>, AppError> {
    let message = service::edit_message(
        &state,
        &auth.user,
        channel_id(&id)?,
        message_id(&message)?,
        &body.content,
    )
    .await?;
    Ok(Json(message))
}

/// DELETE /v1/chat/channels/{id}/messages/{message_id} — the sender deletes their
/// message: its content leaves history, the members get `message_deleted`. Idempotent.
#[utoipa::path(delete, path = "/v1/chat/channels/{id}/messages/{message_id}", tag = "chat",
    security(("bearer" = [])),
    params(("id" = String, Path), ("message_id" = String, Path)),
    responses((status = 204), (status = 401, body = app::model::ErrorBody), (status = 403, body = app::model::ErrorBody), (status = 404, body = app::model::ErrorBody)))]
pub async fn delete_message(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((id, message)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    service::delete_message(&state, &auth.user, channel_id(&id)?, message_id(&message)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /v1/chat/channels/{id}/typing — tells the other members (for clients without a
/// socket; the `typing` frame does the same). Never stored.
#[utoipa::path(post, path = "/v1/chat/channels/{id}/typing", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = app::model::ErrorBody), (status = 404, body = app::model::ErrorBody)))]
pub async fn typing(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    service::typing(&state, &auth.user, channel_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/chat/channels/{id}/read`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadReceipt {
    /// The newest message the user has read in the channel.
    pub message_id: app::model::Id,
}

/// POST /v1/chat/channels/{id}/read — stores a read receipt (it never moves back) and
/// tells the members and the reader's other devices (the `read` frame does the same).
#[utoipa::path(post, path = "/v1/chat/channels/{id}/read", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ReadReceipt,
    responses((status = 204), (status = 403, body = app::model::ErrorBody), (status = 404, body = app::model::ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<ReadReceipt>,
) -> Result<StatusCode, AppError> {
    service::read(&state, &auth.user, channel_id(&id)?, body.message_id.0, 0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?since&timeout` of sync.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// The largest message id the client holds (0 for everything).
    pub since: Option<String>,
    /// Seconds to wait when nothing is new (0..=30, default 25; larger values are capped).
    pub timeout: Option<String>,
}

/// GET /v1/chat/sync — long poll. The wake-up subscription is registered before the
/// database is read, so a message committed in between still wakes this request.
#[utoipa::path(get, path = "/v1/chat/sync", tag = "chat", security(("bearer" = [])), params(SyncQuery),
    responses((status = 200, body = SyncResponse), (status = 400, body = app::model::ErrorBody), (status = 429, body = app::model::ErrorBody)))]
pub async fn sync(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<SyncQuery>,
) -> Result<Json<service::Synced>, AppError> {
    let since = query_id("since", q.since.as_deref())?.unwrap_or(0);
    let wait = match q.timeout.as_deref() {
        None => 25,
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| AppError::invalid_request("timeout must be a number of seconds"))?
            .min(MAX_WAIT_SECS),
    };
    // A poll that may wait holds one of the user's slots until it answers
    // (`KITH_LONGPOLLS_PER_USER`); one that returns at once needs none.
    let _slot = if wait > 0 {
        Some(state.slots.longpolls_per_user.take(auth.user.id.0)?)
    } else {
        None
    };
    Ok(Json(
        service::wait_for_messages(&state, auth.user.id.0, since, wait).await?,
    ))
}
