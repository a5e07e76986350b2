//! The news feed service: `GET /v1/me/feed`, and turning post ids into `Post`s.
//!
//! A page is assembled from three sources, newest first, deduplicated:
//! 1. the viewer's feed cache (ids pushed by fanout, newest ~800), rebuilt from SQLite when
//!    it is missing (new node, evicted, long-inactive user);
//! 2. past the cache's end, SQLite (so the feed has no hard end);
//! 3. the recent posts of followed celebrities, whose posts are never pushed (pull model).
//!
//! Keyset cursor: the id of the last post of the page; the next page holds only smaller
//! ids. New posts have larger ids, so concurrent inserts cause neither duplicates nor gaps.
//!
//! Why the cache can be trusted as a prefix: every fanout after a feed key was created adds
//! to it, so its ids form the newest contiguous run of pushed posts; everything older is
//! read from SQLite. Follow and unfollow drop the key, and the next read rebuilds it.

use super::{caches, fanout::feed_key, fanout::FEED_CAP, store};
use crate::{error::AppError, state::AppState};
use app::model::{Id, Page, Post};

/// Marks a rebuilt feed that holds no posts, so an empty feed is not rebuilt on every read.
const EMPTY_MARKER: i64 = 0;

/// One page of `viewer`'s feed below `cursor`.
pub async fn read(
    state: &AppState,
    viewer: i64,
    cursor: Option<i64>,
    limit: usize,
) -> Result<Page<Post>, AppError> {
    let cache = &state.backends.cache;
    let key = feed_key(viewer);
    let upper = cursor.unwrap_or(i64::MAX);
    let want = limit + 1;

    if !cache.exists(&key).await? {
        rebuild(state, viewer).await?;
    }
    let mut ids: Vec<i64> = cache
        .ids_range(&key, Some(upper), want)
        .await?
        .into_iter()
        .filter(|id| *id != EMPTY_MARKER)
        .collect();
    if ids.len() < want {
        let below = ids.last().copied().unwrap_or(upper);
        let older =
            store::feed_post_ids(&state.db, viewer, below, (want - ids.len()) as i64).await?;
        ids.extend(older);
    }
    let threshold = i64::try_from(state.config.celebrity_threshold).unwrap_or(i64::MAX);
    for celebrity in store::celebrity_followees(&state.db, viewer, threshold).await? {
        ids.extend(store::author_post_ids(&state.db, celebrity, upper, want as i64).await?);
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    page_of(state, Some(viewer), ids, limit).await
}

/// Turns newest-first candidate ids (at most `limit + 1` are looked at) into a page.
pub async fn page_of(
    state: &AppState,
    viewer: Option<i64>,
    mut ids: Vec<i64>,
    limit: usize,
) -> Result<Page<Post>, AppError> {
    let more = ids.len() > limit;
    ids.truncate(limit);
    let next_cursor = more.then(|| ids.last().map(i64::to_string)).flatten();
    Ok(Page {
        items: hydrate(state, viewer, &ids).await?,
        next_cursor,
    })
}

/// Rebuilds a feed cache from SQLite: the newest `FEED_CAP` ids of the user and everyone
/// they follow.
async fn rebuild(state: &AppState, viewer: i64) -> Result<(), AppError> {
    let ids = store::feed_post_ids(&state.db, viewer, i64::MAX, FEED_CAP as i64).await?;
    let key = feed_key(viewer);
    let mut entries: Vec<(String, i64)> = ids.into_iter().map(|id| (key.clone(), id)).collect();
    entries.push((key, EMPTY_MARKER));
    state.backends.cache.ids_add(&entries, FEED_CAP + 1).await?;
    Ok(())
}

/// Full `Post`s for `ids`, in the same order; ids of deleted posts are skipped.
pub async fn hydrate(
    state: &AppState,
    viewer: Option<i64>,
    ids: &[i64],
) -> Result<Vec<Post>, AppError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let posts = caches::posts(state, ids).await?;
    let author_ids: Vec<i64> = posts.values().map(|p| p.author_id).collect();
    let authors = caches::users(state, &author_ids).await?;
    let present: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| posts.contains_key(id))
        .collect();
    let likes = caches::like_counts(state, &present).await?;
    let liked = match viewer {
        Some(v) => store::liked_by(&state.db, v, &present).await?,
        None => Vec::new(),
    };
    Ok(present
        .iter()
        .filter_map(|id| {
            let post = posts.get(id)?;
            let author = authors.get(&post.author_id)?.clone();
            Some(Post {
                id: Id(post.id),
                author,
                content: post.content.clone(),
                created_at: crate::db::to_datetime(post.created_at),
                like_count: likes.get(id).copied().unwrap_or(0),
                liked_by_me: liked.contains(id),
            })
        })
        .collect())
}
