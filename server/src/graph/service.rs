//! Follow and unfollow, block and unblock.
//!
//! Either drops the follower's feed cache; the next read rebuilds it from SQLite, which
//! brings the new followee's recent posts in (backfill) or leaves the old one's out.
//! Rebuilding is one indexed query, and it keeps the cache a clean prefix of the feed (see
//! `feed::timeline`), which patching ids in and out could not guarantee.

use crate::{
    error::AppError,
    feed::{
        fanout::feed_key,
        timeline::{celebrities_key, note_follower_count},
    },
    state::AppState,
};

async fn followee(state: &AppState, username: &str) -> Result<i64, AppError> {
    Ok(state
        .store
        .accounts
        .user_by_username(username)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?
        .id)
}

/// `follower` follows `username`; idempotent.
pub async fn follow(state: &AppState, follower: i64, username: &str) -> Result<(), AppError> {
    let target = followee(state, username).await?;
    if target == follower {
        return Err(AppError::validation(
            "username",
            "you cannot follow yourself",
        ));
    }
    keep_apart(state, follower, target, "you cannot follow this person").await?;
    if state
        .store
        .graph
        .follow(follower, target, state.clock.now_ms())
        .await?
    {
        forget_feed(state, follower).await?;
        let followers = state.store.graph.follower_count(target).await?;
        note_follower_count(state, followers, true).await?;
    }
    Ok(())
}

/// `follower` stops following `username`; idempotent.
pub async fn unfollow(state: &AppState, follower: i64, username: &str) -> Result<(), AppError> {
    let target = followee(state, username).await?;
    if state.store.graph.unfollow(follower, target).await? {
        forget_feed(state, follower).await?;
        let followers = state.store.graph.follower_count(target).await?;
        note_follower_count(state, followers, false).await?;
    }
    Ok(())
}

/// Drops the cached feed and followed-celebrity list of `user`.
async fn forget_feed(state: &AppState, user: i64) -> Result<(), AppError> {
    state.backends.cache.delete(&feed_key(user)).await?;
    state.backends.cache.delete(&celebrities_key(user)).await?;
    Ok(())
}

/// 403 with `refusal` when either of `a` and `b` blocked the other.
pub async fn keep_apart(state: &AppState, a: i64, b: i64, refusal: &str) -> Result<(), AppError> {
    if state.store.graph.apart(a, b).await? {
        return Err(AppError::forbidden(refusal));
    }
    Ok(())
}

/// `blocker` blocks `username`; idempotent. The follows between them end both ways (their
/// feeds are rebuilt without each other's posts), and so do the notifications either had
/// of the other. From the next commit on, their 1:1 refuses sends both ways and group
/// messages of the blocked person reach the blocker hidden, on every node.
pub async fn block(state: &AppState, blocker: i64, username: &str) -> Result<(), AppError> {
    let target = followee(state, username).await?;
    if target == blocker {
        return Err(AppError::validation(
            "username",
            "you cannot block yourself",
        ));
    }
    let blocked = state
        .store
        .graph
        .block(blocker, target, state.clock.now_ms())
        .await?;
    for (ended, follower, followee) in [
        (blocked.was_following, blocker, target),
        (blocked.was_followed, target, blocker),
    ] {
        if ended {
            forget_feed(state, follower).await?;
            let followers = state.store.graph.follower_count(followee).await?;
            note_follower_count(state, followers, false).await?;
        }
    }
    Ok(())
}

/// `blocker` lifts their block of `username`; idempotent. Follows do not come back.
pub async fn unblock(state: &AppState, blocker: i64, username: &str) -> Result<(), AppError> {
    let target = followee(state, username).await?;
    state.store.graph.unblock(blocker, target).await?;
    Ok(())
}
