//! Profile edits.

use crate::{auth, error::AppError, feed::caches, state::AppState};
use app::model::{rules, User};

/// Sets `user`'s display name and bio, each only when given. Both are trimmed; an empty
/// display name falls back to the username, as at registration, and an empty bio clears
/// it. Caches holding the user (the user cache, their cached sessions) are dropped once
/// the row is stored, so every node serves the new profile from the next read on.
pub async fn update_profile(
    state: &AppState,
    user: &User,
    display_name: Option<String>,
    bio: Option<String>,
) -> Result<User, AppError> {
    let display_name = match display_name.map(|d| d.trim().to_string()) {
        Some(d) if d.is_empty() => Some(user.username.clone()),
        Some(d) => {
            rules::check_display_name(&d).map_err(|p| AppError::validation("display_name", p))?;
            Some(d)
        }
        None => None,
    };
    let bio = match bio.map(|b| b.trim().to_string()) {
        Some(b) => {
            rules::check_bio(&b).map_err(|p| AppError::validation("bio", p))?;
            Some(b)
        }
        None => None,
    };
    if display_name.is_none() && bio.is_none() {
        return Ok(user.clone());
    }
    let row = state
        .store
        .accounts
        .update_profile(user.id.0, display_name.as_deref(), bio.as_deref())
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    caches::forget_user(state, user.id.0).await?;
    auth::service::refresh_sessions(state, user.id.0).await?;
    Ok(row.into())
}
