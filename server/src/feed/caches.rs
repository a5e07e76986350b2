//! The content and counter caches of the feed (the book's "post", "user" and "counters"
//! caches): cache-aside over SQLite, read in one round trip per page.
//!
//! Entries expire so a missed invalidation heals by itself; every write path that changes
//! what an entry says invalidates it right after its transaction commits. Posts never
//! change (a deleted post's entry is dropped); a profile edit drops its user's entry. What does change is written so that a
//! fill which read SQLite before a change cannot land after it: like counts are filled
//! only where the key is empty and a change parks a marker there (see [`LIKES_TTL`]);
//! liked sets are built behind [`BUILDING`] and dropped on unlike (see [`note_like`]).

use crate::storage::feed::PostRow;
use crate::{error::AppError, state::AppState, storage::UserRow};
use app::model::User;
use bytes::Bytes;
use std::{collections::HashMap, time::Duration};

const POST_TTL: Duration = Duration::from_secs(24 * 3600);
const USER_TTL: Duration = Duration::from_secs(3600);
/// Like counts are filled only where the key holds nothing, and a like change replaces
/// the count with [`LIKES_CHANGED`] for [`LIKES_SETTLE`]: a read that fetched the count
/// before the change cannot cache it after the change (its fill finds the key taken). The
/// TTL bounds the damage of a fill slower than the settling time.
const LIKES_TTL: Duration = Duration::from_secs(60);
/// See [`LIKES_TTL`]: marks a count that just changed; reads go to SQLite meanwhile.
const LIKES_CHANGED: &[u8] = b"changed";
const LIKES_SETTLE: Duration = Duration::from_secs(2);

pub fn post_key(id: i64) -> String {
    crate::backend::id_key("post:", id)
}
fn user_key(id: i64) -> String {
    crate::backend::id_key("user:", id)
}
pub fn likes_key(post_id: i64) -> String {
    crate::backend::id_key("likes:", post_id)
}
/// The sorted set of the post ids a user liked: the newest [`LIKED_CAP`], plus
/// [`ALL_LIKES`] while that is all of them.
pub fn liked_key(user_id: i64) -> String {
    crate::backend::id_key("liked:", user_id)
}
/// Marks a cached id set being built from SQLite: added before the read, taken out by the
/// fill (`Cache::ids_fill`), which happens only if it is still there. Ids are positive,
/// and it sorts below every marker of a finished set.
pub const BUILDING: i64 = -1;
/// Likes of a user kept in their cached set.
const LIKED_CAP: usize = 1000;
/// Marks a liked set that holds every like of its user (0 is never a post id). It is the
/// smallest member, so it is the first trimmed once the set outgrows the cap.
const ALL_LIKES: i64 = 0;

/// A post as cached: its author, and its `content` and `created_at` members rendered as
/// JSON (see `json`). Stored as `{author_id}|{members}`.
pub struct CachedPost {
    pub author_id: i64,
    pub members: Bytes,
}

/// `"content":"…","created_at":"…","media":[…]`: a post's own members of its API JSON
/// (`media` is the stored JSON array, `None` for none).
pub fn render_members(content: &str, created_at_ms: i64, media: Option<&str>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Members<'a> {
        content: &'a str,
        created_at: chrono::DateTime<chrono::Utc>,
    }
    let object = serde_json::to_vec(&Members {
        content,
        created_at: crate::storage::to_datetime(created_at_ms),
    })
    .unwrap_or_else(|_| b"{}".to_vec());
    // Without the braces: the members go inside the post's object. The media array is
    // the stored column, written by this server from `Media` values.
    let mut members = object[1..object.len() - 1].to_vec();
    members.extend_from_slice(b",\"media\":");
    members.extend_from_slice(media.unwrap_or("[]").as_bytes());
    members
}

fn encode_post(post: &PostRow) -> Bytes {
    let mut value = format!("{}|", post.author_id).into_bytes();
    value.extend_from_slice(&render_members(
        &post.content,
        post.created_at,
        post.media.as_deref(),
    ));
    Bytes::from(value)
}

/// `None` for anything not written by [`encode_post`] (then the post is read again).
fn decode_post(value: Bytes) -> Option<CachedPost> {
    let bar = value.iter().position(|b| *b == b'|')?;
    let author_id = std::str::from_utf8(&value[..bar]).ok()?.parse().ok()?;
    let members = value.slice(bar + 1..);
    // Entries cached before posts carried images end without the `media` array: read
    // again.
    (members.starts_with(b"\"content\":") && members.ends_with(b"]"))
        .then_some(CachedPost { author_id, members })
}

/// Stores a freshly written post.
pub async fn put_post(state: &AppState, post: &PostRow) -> Result<(), AppError> {
    state
        .backends
        .cache
        .set(&post_key(post.id), encode_post(post), Some(POST_TTL))
        .await?;
    Ok(())
}

/// Posts by id (deleted ones are simply absent).
pub async fn posts(state: &AppState, ids: &[i64]) -> Result<HashMap<i64, CachedPost>, AppError> {
    let cache = &state.backends.cache;
    let keys: Vec<String> = ids.iter().map(|id| post_key(*id)).collect();
    let cached = cache.get_many(&keys).await?;
    let mut found = HashMap::with_capacity(ids.len());
    let mut missing = Vec::new();
    for (id, value) in ids.iter().zip(cached) {
        match value.and_then(decode_post) {
            Some(post) => {
                found.insert(*id, post);
            }
            None => missing.push(*id),
        }
    }
    if !missing.is_empty() {
        let rows = state.store.feed.posts_by_ids(&missing).await?;
        let mut fill = Vec::with_capacity(rows.len());
        for row in rows {
            let value = encode_post(&row);
            if let Some(post) = decode_post(value.clone()) {
                found.insert(row.id, post);
            }
            fill.push((post_key(row.id), value));
        }
        cache.set_many(&fill, Some(POST_TTL)).await?;
    }
    Ok(found)
}

/// Users by id, rendered as `User` JSON (as the user cache holds them).
pub async fn users_json(state: &AppState, ids: &[i64]) -> Result<HashMap<i64, Bytes>, AppError> {
    let cache = &state.backends.cache;
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let keys: Vec<String> = unique.iter().map(|id| user_key(*id)).collect();
    let cached = cache.get_many(&keys).await?;
    let mut found = HashMap::with_capacity(unique.len());
    let mut missing = Vec::new();
    for (id, value) in unique.iter().zip(cached) {
        match value {
            // Written by `serde_json::to_vec(&User)` below: an object.
            Some(json) if json.first() == Some(&b'{') => {
                found.insert(*id, json);
            }
            _ => missing.push(*id),
        }
    }
    for (user, json) in load_users(state, &missing).await? {
        found.insert(user.id.0, json);
    }
    Ok(found)
}

/// Reads users from SQLite and (re)writes their user-cache entries: each user with its
/// rendered JSON.
async fn load_users(state: &AppState, ids: &[i64]) -> Result<Vec<(User, Bytes)>, AppError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<UserRow> = state.store.accounts.users_by_ids(ids).await?;
    let mut loaded = Vec::with_capacity(rows.len());
    let mut fill = Vec::with_capacity(rows.len());
    for row in rows {
        let user = User::from(row);
        let json =
            Bytes::from(serde_json::to_vec(&user).map_err(|e| AppError::internal(e.to_string()))?);
        fill.push((user_key(user.id.0), json.clone()));
        loaded.push((user, json));
    }
    state.backends.cache.set_many(&fill, Some(USER_TTL)).await?;
    Ok(loaded)
}

/// Drops a user's cache entry after their row changed (a profile edit).
pub async fn forget_user(state: &AppState, id: i64) -> Result<(), AppError> {
    state.backends.cache.delete(&user_key(id)).await?;
    Ok(())
}

/// Forgets what the feed caches hold of a deleted account: its posts' entries (reads skip
/// posts that are gone, so feeds that listed them stop showing them), its own feed, author
/// list, followed-celebrity list and liked set, its user entry, and the like counts of
/// the posts it liked.
pub async fn forget_account(
    state: &AppState,
    user: i64,
    posts: &[i64],
    liked: &[i64],
) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    for post in posts {
        cache.delete(&post_key(*post)).await?;
    }
    for key in [
        crate::feed::fanout::feed_key(user),
        crate::feed::fanout::author_key(user),
        crate::feed::timeline::celebrities_key(user),
        liked_key(user),
        user_key(user),
    ] {
        cache.delete(&key).await?;
    }
    for post in liked {
        note_like_count_changed(state, *post).await?;
    }
    Ok(())
}

/// Users by id. A cached entry that does not parse as a `User` (written by another
/// version, say) is read again from SQLite and overwritten, which heals the feed's copy too.
pub async fn users(state: &AppState, ids: &[i64]) -> Result<HashMap<i64, User>, AppError> {
    let rendered = users_json(state, ids).await?;
    let mut users = HashMap::with_capacity(rendered.len());
    let mut unreadable = Vec::new();
    for (id, json) in rendered {
        match serde_json::from_slice::<User>(&json) {
            Ok(user) => {
                users.insert(id, user);
            }
            Err(_) => unreadable.push(id),
        }
    }
    for (user, _) in load_users(state, &unreadable).await? {
        users.insert(user.id.0, user);
    }
    Ok(users)
}

/// Like counts by post id (0 for posts nobody liked).
pub async fn like_counts(state: &AppState, ids: &[i64]) -> Result<HashMap<i64, i64>, AppError> {
    let cache = &state.backends.cache;
    let keys: Vec<String> = ids.iter().map(|id| likes_key(*id)).collect();
    let cached = cache.get_many(&keys).await?;
    let mut counts = HashMap::with_capacity(ids.len());
    let mut missing = Vec::new();
    for (id, value) in ids.iter().zip(cached) {
        match value {
            Some(v) if v.as_ref() == LIKES_CHANGED => missing.push((*id, false)),
            v => match v.and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok()) {
                Some(n) => {
                    counts.insert(*id, n);
                }
                None => missing.push((*id, true)),
            },
        }
    }
    if !missing.is_empty() {
        let asked: Vec<i64> = missing.iter().map(|(id, _)| *id).collect();
        let rows: HashMap<i64, i64> = state
            .store
            .feed
            .like_counts(&asked)
            .await?
            .into_iter()
            .collect();
        let mut fill = Vec::with_capacity(missing.len());
        for (id, cacheable) in missing {
            let n = rows.get(&id).copied().unwrap_or(0);
            if cacheable {
                fill.push((likes_key(id), Bytes::from(n.to_string())));
            }
            counts.insert(id, n);
        }
        cache.add_many(&fill, Some(LIKES_TTL)).await?;
    }
    Ok(counts)
}

/// Called after a like or unlike of `post` committed (see [`LIKES_TTL`]).
pub async fn note_like_count_changed(state: &AppState, post: i64) -> Result<(), AppError> {
    state
        .backends
        .cache
        .set(
            &likes_key(post),
            Bytes::from_static(LIKES_CHANGED),
            Some(LIKES_SETTLE),
        )
        .await?;
    Ok(())
}

/// Which of `ids` `user` liked, from the user's cached liked set (built from SQLite on a
/// miss). For a heavy liker whose set no longer holds every like, ids it does not hold are
/// asked of SQLite.
pub async fn liked_among(state: &AppState, user: i64, ids: &[i64]) -> Result<Vec<i64>, AppError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let cache = &state.backends.cache;
    let key = liked_key(user);
    if !cache.exists(&key).await? {
        build_liked(state, user, &key).await?;
    }
    let mut probe = ids.to_vec();
    probe.push(ALL_LIKES);
    probe.push(BUILDING);
    let mut held = cache.ids_contain(&key, &probe).await?;
    let building = held.pop().unwrap_or(false);
    let all = held.pop().unwrap_or(false) && !building;
    if building {
        // Being built by another read, or left half-built by one that died: build it
        // (again; a second fill finds the marker gone and does nothing). This read asks
        // SQLite, as `all` is false.
        build_liked(state, user, &key).await?;
    }
    let mut liked = Vec::new();
    let mut unknown = Vec::new();
    for (id, held) in ids.iter().zip(&held) {
        if *held {
            liked.push(*id);
        } else if !all {
            unknown.push(*id);
        }
    }
    liked.extend(state.store.feed.liked_by(user, &unknown).await?);
    Ok(liked)
}

/// Builds a user's liked set from SQLite: the key is created (with [`BUILDING`]) before
/// the read, so a like committed after the read is added to it by [`note_like`].
async fn build_liked(state: &AppState, user: i64, key: &str) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    cache
        .ids_add(&[(key.to_string(), BUILDING)], LIKED_CAP + 2)
        .await?;
    let mut liked = state
        .store
        .feed
        .liked_post_ids(user, LIKED_CAP as i64)
        .await?;
    if liked.len() < LIKED_CAP {
        liked.push(ALL_LIKES);
    }
    cache.ids_fill(key, BUILDING, &liked, LIKED_CAP + 1).await?;
    Ok(())
}

/// Keeps a user's liked set in step with a like or unlike that just committed.
///
/// A like goes into the set if there is one (a set being built included). An unlike drops
/// the whole set instead: a build that read SQLite before the unlike would put the post
/// back with its fill, and a dropped set makes that fill a no-op; the next read rebuilds.
pub async fn note_like(state: &AppState, user: i64, post: i64, like: bool) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    let key = liked_key(user);
    if like {
        if cache.exists(&key).await? {
            // A set dropped between the check and the add is started again by the add;
            // without its `ALL_LIKES` marker, reads ask SQLite about what it lacks.
            cache.ids_add(&[(key, post)], LIKED_CAP + 1).await?;
        }
    } else {
        cache.delete(&key).await?;
    }
    Ok(())
}
