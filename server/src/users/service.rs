//! Profile edits and account deletion.

use crate::{auth, error::AppError, feed::caches, state::AppState};
use app::model::{rules, User};

/// How long a deleted account's username stays out of reach of new accounts.
pub const USERNAME_HOLD_MS: i64 = 30 * 24 * 3600 * 1000;

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

/// Deletes `user`'s account, once `password` is confirmed (401 otherwise): the store
/// removes what was theirs in one transaction (see `AccountStore::delete_account`); then
/// every session ends on every node (sockets close with 4001), the caches forget their
/// posts, likes and profile, and the accounts they followed have their follower counts
/// looked at again (a celebrity may have dropped below the threshold). The images of
/// their posts and their unused uploads go too (those in chat messages stay, with the
/// messages).
pub async fn delete_account(
    state: &AppState,
    user: &User,
    password: String,
) -> Result<(), AppError> {
    auth::service::confirm_password(state, user, password, "the password is wrong").await?;
    let now = state.clock.now_ms();
    let Some(gone) = state
        .store
        .accounts
        .delete_account(user.id.0, now, now + USERNAME_HOLD_MS)
        .await?
    else {
        // Deleted by another request meanwhile.
        return Err(AppError::unauthorized());
    };
    for hash in &gone.sessions {
        if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
            auth::service::forget(state, user.id.0, &hash).await?;
        }
    }
    caches::forget_account(state, user.id.0, &gone.posts, &gone.liked).await?;
    let released = state.store.media.release_owner(user.id.0).await;
    crate::media::service::release(state, released).await;
    for followee in gone.followees {
        let followers = state.store.graph.follower_count(followee).await?;
        crate::feed::timeline::note_follower_count(state, followers, false).await?;
    }
    Ok(())
}
