//! The post service: publishing (validated, rate-limited, idempotent, stored together with
//! its fanout job), reading one post or an author's posts, deleting, liking.

use super::{
    caches, fanout,
    json::{PageJson, PostJson},
    timeline,
};
use crate::storage::{
    feed::{PostInsert, PostRow},
    media::{media_json, parse_media},
};
use crate::{
    backend::Quota, error::AppError, graph::service::keep_apart, outbox::Outbox, state::AppState,
};
use app::model::{rules, ErrorCode, Id, Post, User};

/// Publishes a post for `author`, with the images `media` (their uploads, unused so far).
/// A retry with the same `idempotency_key` returns the first post and creates nothing.
pub async fn publish(
    state: &AppState,
    author: &User,
    content: &str,
    media: &[Id],
    idempotency_key: Option<&str>,
) -> Result<Post, AppError> {
    if let Some(key) = idempotency_key {
        if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AppError::invalid_request(
                "Idempotency-Key must be 1 to 128 visible ASCII characters",
            ));
        }
        if let Some(existing) = state
            .store
            .feed
            .post_by_idempotency_key(author.id.0, key)
            .await?
        {
            return one(state, Some(author.id.0), existing.id).await?.to_post();
        }
    }
    rules::check_post(content, media.len()).map_err(|p| AppError::validation("content", p))?;
    let images = crate::media::service::attachable(state, author.id.0, media, None).await?;

    let now = state.clock.now_ms();
    let quota = Quota::per_minute(state.config.post_rate_per_min);
    state
        .take_quota(&format!("post:{}", author.id.0), quota)
        .await?;

    let post = PostRow {
        id: state.ids.next_id()?,
        author_id: author.id.0,
        content: content.trim().to_string(),
        created_at: now,
        media: media_json(&images),
    };
    let image_ids: Vec<i64> = images.iter().map(|m| m.id).collect();
    let job = match state
        .store
        .feed
        .insert_post(&post, &image_ids, idempotency_key, now)
        .await?
    {
        PostInsert::Stored { job } => job,
        PostInsert::MediaTaken => return Err(crate::media::service::taken()),
        PostInsert::KeyUsed => {
            // A concurrent retry with the same key won the race: answer with its post.
            let key = idempotency_key.unwrap_or_default();
            let existing = state
                .store
                .feed
                .post_by_idempotency_key(author.id.0, key)
                .await?
                .ok_or_else(|| AppError::internal("idempotent post vanished"))?;
            return one(state, Some(author.id.0), existing.id).await?.to_post();
        }
    };

    // From here on the post is acknowledged; cache and queue failures only delay fanout
    // (the outbox sweep retries), they must not turn the answer into an error.
    if let Err(e) = caches::put_post(state, &post).await {
        tracing::warn!(error = %e, "post cache write failed");
    }
    // The author sees their own post at once; followers get it from the workers.
    let own = [
        (fanout::feed_key(author.id.0), post.id),
        (fanout::author_key(author.id.0), post.id),
    ];
    if let Err(e) = state.backends.cache.ids_add(&own, fanout::FEED_CAP).await {
        tracing::warn!(error = %e, "own feed write failed");
    }
    if let Err(e) = Outbox::Fanout.enqueue(state, job).await {
        tracing::warn!(error = %e, "fanout enqueue failed; the outbox sweep will retry");
    }
    Ok(Post {
        id: app::model::Id(post.id),
        author: author.clone(),
        content: post.content,
        created_at: crate::storage::to_datetime(post.created_at),
        like_count: 0,
        liked_by_me: false,
        media: parse_media(post.media.as_deref()),
    })
}

/// The refusal when a viewer and an author are apart by a block.
const BLOCKED: &str = "you cannot see this person's posts: one of you blocked the other";

/// 403 when `viewer` and the author of post `id` are apart by a block (404 for no post).
/// The author comes from the post cache, which the read that follows uses anyway.
async fn check_author_visible(state: &AppState, viewer: i64, id: i64) -> Result<(), AppError> {
    let author = caches::posts(state, &[id])
        .await?
        .get(&id)
        .map(|post| post.author_id)
        .ok_or_else(|| AppError::not_found("post"))?;
    if author != viewer {
        keep_apart(state, viewer, author, BLOCKED).await?;
    }
    Ok(())
}

/// One post as `viewer` sees it.
pub async fn one(state: &AppState, viewer: Option<i64>, id: i64) -> Result<PostJson, AppError> {
    if let Some(viewer) = viewer {
        check_author_visible(state, viewer, id).await?;
    }
    timeline::hydrate(state, viewer, &[id])
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("post"))
}

/// An author's posts, newest first.
pub async fn by_author(
    state: &AppState,
    viewer: Option<i64>,
    author_id: i64,
    cursor: Option<i64>,
    limit: usize,
) -> Result<PageJson, AppError> {
    if let Some(viewer) = viewer.filter(|v| *v != author_id) {
        keep_apart(state, viewer, author_id, BLOCKED).await?;
    }
    let ids = state
        .store
        .feed
        .author_post_ids(author_id, cursor.unwrap_or(i64::MAX), limit as i64 + 1)
        .await?;
    timeline::page_of(state, viewer, ids, limit).await
}

/// Deletes a post of `viewer`'s; it leaves every feed (right away for reads, which skip
/// missing posts, and from the feed caches through a fanout job).
pub async fn delete(state: &AppState, viewer: i64, id: i64) -> Result<(), AppError> {
    let post = state
        .store
        .feed
        .post_by_id(id)
        .await?
        .ok_or_else(|| AppError::not_found("post"))?;
    if post.author_id != viewer {
        return Err(AppError::new(
            ErrorCode::Forbidden,
            "only the author can delete a post",
        ));
    }
    let now = state.clock.now_ms();
    let Some(job) = state.store.feed.delete_post(&post, now).await? else {
        return Err(AppError::not_found("post"));
    };
    state.backends.cache.delete(&caches::post_key(id)).await?;
    if let Err(e) = Outbox::Fanout.enqueue(state, job).await {
        tracing::warn!(error = %e, "fanout enqueue failed; the outbox sweep will retry");
    }
    // The post's images go with it.
    if post.media.is_some() {
        let released = state.store.media.release_post(id).await;
        crate::media::service::release(state, released).await;
    }
    Ok(())
}

/// Likes (`true`) or unlikes a post; idempotent.
pub async fn set_like(state: &AppState, viewer: i64, id: i64, like: bool) -> Result<(), AppError> {
    if like {
        check_author_visible(state, viewer, id).await?;
    } else if state.store.feed.post_by_id(id).await?.is_none() {
        return Err(AppError::not_found("post"));
    }
    let changed = if like {
        state
            .store
            .feed
            .insert_like(id, viewer, state.clock.now_ms())
            .await?
    } else {
        state.store.feed.delete_like(id, viewer).await?
    };
    if changed {
        caches::note_like_count_changed(state, id).await?;
        caches::note_like(state, viewer, id, like).await?;
    }
    Ok(())
}
