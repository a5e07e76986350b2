//! `GET /v1/presence`.

use crate::{auth::AuthUser, error::AppError, error::Json, state::AppState};
use app::model::UserPresence;
use axum::{
    extract::{RawQuery, State},
    routing::get,
    Router,
};
use serde::Serialize;

/// Most users one lookup may name.
const MAX_USERS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/presence", get(presence))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PresenceList {
    pub items: Vec<UserPresence>,
}

/// The usernames of `user=a&user=b…`, in order, without repeats.
fn usernames(query: Option<&str>) -> Result<Vec<String>, AppError> {
    let mut names: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != "user" {
            return Err(AppError::invalid_request(format!(
                "unknown query parameter {key:?}; use user=<username>, repeated"
            )));
        }
        let name = value.trim().trim_start_matches('@').to_string();
        if name.is_empty() {
            return Err(AppError::invalid_request("user must not be empty"));
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(AppError::invalid_request(
            "name at least one user: /v1/presence?user=<username>",
        ));
    }
    if names.len() > MAX_USERS {
        return Err(AppError::invalid_request(format!(
            "at most {MAX_USERS} users per lookup"
        )));
    }
    Ok(names)
}

/// GET /v1/presence?user={username}&user=…
#[utoipa::path(get, path = "/v1/presence", tag = "presence", security(("bearer" = [])),
    params(("user" = Vec<String>, Query, description = "a username; repeat for several (at most 100)")),
    responses((status = 200, body = PresenceList), (status = 400, body = app::model::ErrorBody),
        (status = 401, body = app::model::ErrorBody), (status = 403, body = app::model::ErrorBody),
        (status = 404, body = app::model::ErrorBody)))]
pub async fn presence(
    State(state): State<AppState>,
    auth: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Json<PresenceList>, AppError> {
    let names = usernames(query.as_deref())?;
    Ok(Json(PresenceList {
        items: by_usernames(&state, auth.user.id.0, &names).await?,
    }))
}

/// The presence of each named user, in order, as `viewer` may see it: 404 for an unknown
/// name, 403 for someone who is neither `viewer`, nor a friend (mutual follow), nor in a
/// channel with them (API.md: friends see each other's presence).
pub async fn by_usernames(
    state: &AppState,
    viewer: i64,
    names: &[String],
) -> Result<Vec<UserPresence>, AppError> {
    if names.len() > MAX_USERS {
        return Err(AppError::invalid_request(format!(
            "at most {MAX_USERS} users per lookup"
        )));
    }
    let mut users = Vec::with_capacity(names.len());
    for (name, found) in names
        .iter()
        .zip(state.store.presence.by_usernames(names).await?)
    {
        users.push(found.ok_or_else(|| AppError::not_found(&format!("user {name:?}")))?);
    }
    let ids: Vec<i64> = users.iter().map(|(id, _)| *id).collect();
    let visible = state.store.presence.visible_to(viewer, &ids).await?;
    let hidden: Vec<&str> = users
        .iter()
        .filter(|(id, _)| !visible.contains(id))
        .map(|(_, name)| name.as_str())
        .collect();
    if !hidden.is_empty() {
        return Err(AppError::forbidden(format!(
            "presence is shown to friends (mutual follows) and people in a conversation together; not to you for: {}",
            hidden.join(", ")
        )));
    }
    super::lookup(state, &users).await
}

#[cfg(test)]
mod tests {
    use super::usernames;

    #[test]
    fn lookups_name_users_by_repeated_parameters() {
        assert_eq!(
            usernames(Some("user=ann&user=%40bob&user=ann")).unwrap(),
            vec!["ann", "bob"]
        );
        assert!(usernames(None).is_err());
        assert!(usernames(Some("user=")).is_err());
        assert!(usernames(Some("who=ann")).is_err());
        let many: Vec<String> = (0..101).map(|i| format!("user=u{i}")).collect();
        assert!(usernames(Some(&many.join("&"))).is_err());
    }
}
