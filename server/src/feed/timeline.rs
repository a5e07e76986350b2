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
//!
//! Fanout pushes only into feeds that exist (a user who never reads costs no cache), so a
//! rebuild must create the key *before* it reads SQLite: it adds [`BUILDING`], reads, and
//! then fills the set only if the marker is still there (`Cache::ids_fill`). A post
//! committed after that read is fanned out after it, into the key that exists by then; a
//! post committed before it is in what the read returned. A rebuild that died half-way
//! leaves the marker, which the next reader sees at the end of the set and rebuilds.
//! Followed celebrities' posts come the same way from each celebrity's own cached list
//! (`posts:{id}`), and the list of followed celebrities is cached too, so a warm read asks
//! SQLite only which of the page's posts the viewer liked.

use super::{
    caches,
    fanout::{author_key, feed_key, FEED_CAP},
    json::{PageJson, PostJson},
};
use crate::{error::AppError, state::AppState};
use bytes::Bytes;
use std::time::Duration;

/// Marks a rebuilt id list that holds its source's whole history: reaching it means there
/// is nothing older to fetch from SQLite. It is the smallest member, so the first to go
/// when the list is trimmed (and the list stops being whole).
const COMPLETE_MARKER: i64 = 0;
/// Marks an id list being rebuilt (see the module docs). Below [`COMPLETE_MARKER`], so a
/// range that reaches the end of the list sees it.
const BUILDING: i64 = caches::BUILDING;
/// How long a user's list of followed celebrities is cached; follow and unfollow drop it,
/// and an author crossing the threshold shows up within this time.
const CELEBRITIES_TTL: Duration = Duration::from_secs(60);

/// Bumped whenever an author crosses the celebrity threshold (either way), which
/// invalidates every cached list of followed celebrities at once: a list is stored with the
/// version it was built under (`{version}|{ids as JSON}`) and used only while it is current.
const CELEBRITIES_VERSION: &str = "celebs:version";

/// The cache key of a user's followed celebrities.
pub fn celebrities_key(user_id: i64) -> String {
    crate::backend::id_key("celebs:", user_id)
}

/// Called after a follow or unfollow changed `author`'s follower count to `followers`: if
/// that crossed the threshold, every follower's list of celebrities is out of date.
pub async fn note_follower_count(
    state: &AppState,
    followers: i64,
    added: bool,
) -> Result<(), AppError> {
    let threshold = i64::try_from(state.config.celebrity_threshold).unwrap_or(i64::MAX);
    let crossed = if added {
        followers == threshold
    } else {
        followers == threshold - 1
    };
    if crossed {
        state.backends.cache.incr(CELEBRITIES_VERSION, 1).await?;
    }
    Ok(())
}

/// One page of `viewer`'s feed below `cursor`.
pub async fn read(
    state: &AppState,
    viewer: i64,
    cursor: Option<i64>,
    limit: usize,
) -> Result<PageJson, AppError> {
    let key = feed_key(viewer);
    let upper = cursor.unwrap_or(i64::MAX);
    let want = limit + 1;
    // Independent reads go out together (one pipelined round trip each step on Redis).
    let (mut ids, celebrities) = futures::try_join!(
        cached_ids(state, &key, upper, want, Source::Feed(viewer)),
        celebrities(state, viewer),
    )?;
    let keys: Vec<String> = celebrities.iter().map(|c| author_key(*c)).collect();
    let pulled = futures::future::try_join_all(
        celebrities
            .iter()
            .zip(&keys)
            .map(|(c, key)| cached_ids(state, key, upper, want, Source::Author(*c))),
    )
    .await?;
    ids.extend(pulled.into_iter().flatten());
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
) -> Result<PageJson, AppError> {
    let more = ids.len() > limit;
    ids.truncate(limit);
    let next_cursor = more.then(|| ids.last().map(i64::to_string)).flatten();
    Ok(PageJson {
        items: hydrate(state, viewer, &ids).await?,
        next_cursor,
    })
}

/// The durable source of a cached id list.
#[derive(Clone, Copy)]
enum Source {
    /// A user's feed: their posts and those of everyone they follow.
    Feed(i64),
    /// One author's posts.
    Author(i64),
}

impl Source {
    async fn ids(self, state: &AppState, below: i64, limit: usize) -> Result<Vec<i64>, AppError> {
        Ok(match self {
            Source::Feed(user) => {
                state
                    .store
                    .feed
                    .feed_post_ids(user, below, limit as i64)
                    .await?
            }
            Source::Author(user) => {
                state
                    .store
                    .feed
                    .author_post_ids(user, below, limit as i64)
                    .await?
            }
        })
    }
}

/// Up to `want` ids below `upper` from the cached list at `key`, rebuilding it from
/// `source` when it is missing and continuing in SQLite past its end.
async fn cached_ids(
    state: &AppState,
    key: &str,
    upper: i64,
    want: usize,
    source: Source,
) -> Result<Vec<i64>, AppError> {
    let cache = &state.backends.cache;
    // A built list is never empty (it holds ids or the marker), so on the hot path one
    // range read both finds the list and reads it.
    let mut ids = cache.ids_range(key, Some(upper), want).await?;
    let unfinished = ids.last() == Some(&BUILDING);
    if unfinished || (ids.is_empty() && !cache.exists(key).await?) {
        cache
            .ids_add(&[(key.to_string(), BUILDING)], FEED_CAP + 2)
            .await?;
        let mut stored = source.ids(state, i64::MAX, FEED_CAP).await?;
        if stored.len() < FEED_CAP {
            stored.push(COMPLETE_MARKER);
        }
        // `false`: another reader finished it first, or a follow dropped it meanwhile (the
        // range below then reads what is there, and SQLite past it).
        cache.ids_fill(key, BUILDING, &stored, FEED_CAP + 1).await?;
        ids = cache.ids_range(key, Some(upper), want).await?;
    }
    ids.retain(|id| *id != BUILDING);
    let whole = ids.last() == Some(&COMPLETE_MARKER);
    ids.retain(|id| *id != COMPLETE_MARKER);
    if ids.len() < want && !whole {
        let below = ids.last().copied().unwrap_or(upper);
        let asked = want - ids.len();
        let older = source.ids(state, below, asked).await?;
        // The range read ended inside the list, so `below` is its oldest id; SQLite having
        // fewer than asked means `older` is everything before it. Appending those and the
        // marker makes the list whole, and the next read of this list stays in the cache
        // (a list started by fanout, e.g. a new author's, would otherwise send every read
        // of it to SQLite).
        if !ids.is_empty() && older.len() < asked {
            let mut entries: Vec<(String, i64)> =
                older.iter().map(|id| (key.to_string(), *id)).collect();
            entries.push((key.to_string(), COMPLETE_MARKER));
            cache.ids_add(&entries, FEED_CAP + 1).await?;
        }
        ids.extend(older);
    }
    Ok(ids)
}

/// Whom `viewer` follows that has at least `KITH_CELEBRITY_THRESHOLD` followers.
/// The version is read in the same round trip as the list; a list built under an older
/// version (or written by an older format) is rebuilt from SQLite.
async fn celebrities(state: &AppState, viewer: i64) -> Result<Vec<i64>, AppError> {
    let cache = &state.backends.cache;
    let key = celebrities_key(viewer);
    let mut found = cache
        .get_many(&[CELEBRITIES_VERSION.to_string(), key.clone()])
        .await?
        .into_iter();
    let version = found
        .next()
        .flatten()
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok())
        .unwrap_or(0);
    if let Some(ids) = found
        .next()
        .flatten()
        .and_then(|v| decode_celebrities(&v, version))
    {
        return Ok(ids);
    }
    let threshold = i64::try_from(state.config.celebrity_threshold).unwrap_or(i64::MAX);
    let ids = state
        .store
        .graph
        .celebrity_followees(viewer, threshold)
        .await?;
    // Stored under the version read before SQLite was: if a crossing bumped it since,
    // the next read sees the list as stale and rebuilds it.
    let mut value = format!("{version}|").into_bytes();
    value.extend_from_slice(
        &serde_json::to_vec(&ids).map_err(|e| AppError::internal(e.to_string()))?,
    );
    cache
        .set(&key, Bytes::from(value), Some(CELEBRITIES_TTL))
        .await?;
    Ok(ids)
}

/// The ids of a cached celebrity list if it was built under `version`.
fn decode_celebrities(value: &[u8], version: i64) -> Option<Vec<i64>> {
    let bar = value.iter().position(|b| *b == b'|')?;
    let built_under: i64 = std::str::from_utf8(&value[..bar]).ok()?.parse().ok()?;
    if built_under != version {
        return None;
    }
    serde_json::from_slice(&value[bar + 1..]).ok()
}

/// The posts with `ids`, as `viewer` sees them, in the same order; ids of deleted posts
/// are skipped.
pub async fn hydrate(
    state: &AppState,
    viewer: Option<i64>,
    ids: &[i64],
) -> Result<Vec<PostJson>, AppError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Posts, like counts and the viewer's likes are independent reads: issue them together
    // (one pipelined round trip on Redis); authors need the posts first.
    let liked = async {
        match viewer {
            Some(v) => caches::liked_among(state, v, ids).await,
            None => Ok(Vec::new()),
        }
    };
    let (posts, likes, liked) = futures::try_join!(
        caches::posts(state, ids),
        caches::like_counts(state, ids),
        liked
    )?;
    let author_ids: Vec<i64> = posts.values().map(|p| p.author_id).collect();
    let authors = caches::users_json(state, &author_ids).await?;
    Ok(ids
        .iter()
        .filter_map(|id| {
            let post = posts.get(id)?;
            let author = authors.get(&post.author_id)?;
            Some(PostJson::render(
                *id,
                author,
                &post.members,
                likes.get(id).copied().unwrap_or(0),
                liked.contains(id),
            ))
        })
        .collect())
}
