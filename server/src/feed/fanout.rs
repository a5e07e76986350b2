//! The fanout service and its workers (fanout-on-write), plus the outbox that makes it
//! survive crashes.
//!
//! A post (or a deletion) is committed together with a `fanout_outbox` row; the row's id
//! goes on the fanout queue. Workers pop ids, do the work, and delete the row last, so work
//! interrupted by a crash is still in the outbox: it is re-enqueued at start-up and by a
//! periodic sweep. Feeds are sorted sets, so doing a job twice changes nothing.
//!
//! Authors with fewer followers than `KITH_CELEBRITY_THRESHOLD` get their post ids pushed
//! into every follower's feed cache, in pipelined batches; at or above it nothing is pushed
//! (followers pull those posts at read time, see `timeline`).

use super::{caches, store};
use crate::{error::AppError, state::AppState, FANOUT_QUEUE};
use bytes::Bytes;
use std::time::Duration;

/// Newest ids kept per feed cache; older pages come from SQLite.
pub const FEED_CAP: usize = 800;
/// Followers read (and feeds written) per batch: one SQL page and one Redis pipeline.
const BATCH: i64 = 2000;
/// A job handed out this long ago and still in the outbox is presumed lost.
const STALE_AFTER_MS: i64 = 30_000;

/// The feed cache key of a user.
pub fn feed_key(user_id: i64) -> String {
    format!("feed:{user_id}")
}

/// The cache key of an author's own newest post ids (what followers of a celebrity pull).
pub fn author_key(user_id: i64) -> String {
    format!("posts:{user_id}")
}

/// Puts an outbox job on the fanout queue.
pub async fn enqueue(state: &AppState, outbox_id: i64) -> Result<(), AppError> {
    state
        .backends
        .queue
        .push(FANOUT_QUEUE, Bytes::from(outbox_id.to_string()))
        .await?;
    Ok(())
}

/// Starts the workers and the outbox sweep (none with `KITH_FANOUT_WORKERS=0`).
pub fn spawn(state: &AppState) {
    let workers = state.config.fanout_workers;
    if workers == 0 {
        return;
    }
    for _ in 0..workers {
        tokio::spawn(worker(state.clone()));
    }
    tokio::spawn(sweeper(state.clone()));
}

async fn worker(state: AppState) {
    loop {
        match state
            .backends
            .queue
            .pop(FANOUT_QUEUE, Duration::from_secs(1))
            .await
        {
            Ok(Some(item)) => {
                let Some(id) = std::str::from_utf8(&item)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    tracing::warn!("dropping malformed fanout job");
                    continue;
                };
                if let Err(e) = process(&state, id).await {
                    // The outbox row stays; the sweep retries it.
                    tracing::warn!(job = id, error = %e, "fanout job failed");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "fanout queue unavailable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Re-enqueues unfinished jobs: everything at start-up, then stale ones every few seconds.
async fn sweeper(state: AppState) {
    let mut stale_before = i64::MAX;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let now = state.clock.now_ms();
        match store::claim_stale_outbox(&state.db, stale_before, now).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    tracing::info!(jobs = ids.len(), "re-enqueueing unfinished fanout");
                }
                for id in ids {
                    if let Err(e) = enqueue(&state, id).await {
                        tracing::warn!(error = %e, "cannot re-enqueue fanout");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
        }
        stale_before = state.clock.now_ms() - STALE_AFTER_MS;
    }
}

/// Runs one outbox job to completion (a no-op if another worker already finished it).
pub async fn process(state: &AppState, outbox_id: i64) -> Result<(), AppError> {
    let Some(job) = store::outbox_job(&state.db, outbox_id).await? else {
        return Ok(());
    };
    match job.kind.as_str() {
        "publish" => publish(state, &job).await?,
        "delete" => retract(state, &job).await?,
        other => tracing::warn!(kind = other, "unknown fanout job kind"),
    }
    store::delete_outbox_job(&state.db, outbox_id).await?;
    Ok(())
}

/// Calls `f` with the author's own feed and post list, then with each batch of the
/// author's followers (their feed keys and ids) unless the author is a celebrity.
async fn for_each_feed_batch<F, Fut>(
    state: &AppState,
    author_id: i64,
    mut f: F,
) -> Result<(), AppError>
where
    F: FnMut(Vec<String>, Vec<i64>) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    f(vec![feed_key(author_id), author_key(author_id)], Vec::new()).await?;
    let followers = store::follower_count(&state.db, author_id).await?;
    if followers as u64 >= state.config.celebrity_threshold {
        return Ok(());
    }
    let mut after = i64::MIN;
    loop {
        let page = store::followers_after(&state.db, author_id, after, BATCH).await?;
        let Some(&last) = page.last() else { break };
        after = last;
        f(page.iter().copied().map(feed_key).collect(), page).await?;
    }
    Ok(())
}

/// Pushes the post into the feeds, notifies the followers and sends the online ones a
/// `new_post` frame (serialized once).
async fn publish(state: &AppState, job: &store::OutboxRow) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    let post = match super::posts::one(state, None, job.post_id).await {
        Ok(post) => Some(post),
        // Deleted before its fanout ran: the delete job cleans up.
        Err(AppError::Client { .. }) => None,
        Err(e) => return Err(e),
    };
    let frame = post.as_ref().map(|post| {
        let json = serde_json::json!({"type": "new_post", "post": post}).to_string();
        crate::chat::ws::wake::frame(0, 0, json.as_bytes())
    });
    let (post, frame) = (&post, &frame);
    for_each_feed_batch(state, job.author_id, |keys, followers| async move {
        let entries: Vec<(String, i64)> = keys.into_iter().map(|k| (k, job.post_id)).collect();
        cache.ids_add(&entries, FEED_CAP).await?;
        if let (Some(post), Some(frame)) = (post, frame) {
            if !followers.is_empty() {
                crate::notifications::for_post(
                    state,
                    job.author_id,
                    job.post_id,
                    &post.content,
                    &followers,
                )
                .await?;
                let online = crate::presence::online_among(state, &followers).await?;
                crate::chat::service::wake(state, &online, frame.clone()).await?;
            }
        }
        Ok(())
    })
    .await?;
    let lag_ms = (state.clock.now_ms() - job.created_at).max(0);
    state.metrics.fanout_lag.observe(lag_ms as f64 / 1000.0);
    Ok(())
}

async fn retract(state: &AppState, job: &store::OutboxRow) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    for_each_feed_batch(state, job.author_id, |keys, followers| async move {
        let entries: Vec<(String, i64)> = keys.into_iter().map(|k| (k, job.post_id)).collect();
        cache.ids_remove(&entries).await?;
        crate::notifications::store::forget_post(&state.db, job.post_id, &followers).await?;
        Ok(())
    })
    .await?;
    cache.delete(&caches::post_key(job.post_id)).await?;
    Ok(())
}
