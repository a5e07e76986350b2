//! Discovery over HTTP.

use crate::{
    auth::AuthUser,
    error::{AppError, Json},
    state::AppState,
};
use app::model::ChatServers;
use axum::{extract::State, routing::get, Router};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/chat/servers", get(servers))
}

/// GET /v1/chat/servers — the live chat servers, fewest open connections first. A browser
/// connects its WebSocket to the first and moves down the list when that fails.
#[utoipa::path(get, path = "/v1/chat/servers", tag = "chat", security(("bearer" = [])),
    responses((status = 200, body = ChatServers), (status = 401, body = app::model::ErrorBody)))]
pub async fn servers(
    State(state): State<AppState>,
    _user: AuthUser,
) -> Result<Json<ChatServers>, AppError> {
    Ok(Json(ChatServers {
        items: super::servers(&state).await?,
    }))
}
