//! The fanout service (fanout-on-write): pushes a post's id into its author's followers'
//! feed caches, or takes a deleted post out of them.
//!
//! Jobs come from the fanout outbox (`crate::outbox`): a post (or a deletion) is committed
//! together with a `fanout_outbox` row, and the workers run [`process`]. Feeds are sorted
//! sets, so doing a job twice changes nothing. A finished publish job hands the post over
//! to the notification service's own outbox in the same transaction that retires it.
//!
//! Authors with fewer followers than `KITH_CELEBRITY_THRESHOLD` get their post ids pushed
//! into every follower's feed cache, in pipelined batches; at or above it nothing is pushed
//! (followers pull those posts at read time, see `timeline`).

use super::{caches, store};
use crate::{error::AppError, outbox::Outbox, state::AppState};

/// Newest ids kept per feed cache; older pages come from SQLite.
pub const FEED_CAP: usize = 800;
/// Followers read (and feeds written) per batch: one SQL page and one Redis pipeline.
const BATCH: i64 = 2000;

/// The feed cache key of a user.
pub fn feed_key(user_id: i64) -> String {
    format!("feed:{user_id}")
}

/// The cache key of an author's own newest post ids (what followers of a celebrity pull).
pub fn author_key(user_id: i64) -> String {
    format!("posts:{user_id}")
}

/// Runs one fanout job to completion (a no-op if another worker already finished it).
pub async fn process(state: &AppState, outbox_id: i64) -> Result<(), AppError> {
    let Some(job) = store::outbox_job(&state.db, outbox_id).await? else {
        return Ok(());
    };
    match job.kind.as_str() {
        "publish" => {
            publish(state, &job).await?;
            let now = state.clock.now_ms();
            // None: another worker ran this job too and handed it over first.
            if let Some(next) = store::hand_over_to_notifications(&state.db, &job, now).await? {
                if let Err(e) = Outbox::Notify.enqueue(state, next).await {
                    // The row is durable: the sweep enqueues it.
                    tracing::warn!(error = %e, "cannot enqueue post notifications");
                }
            }
        }
        "delete" => {
            retract(state, &job).await?;
            Outbox::Fanout.finish(&state.db, outbox_id).await?;
        }
        other => tracing::warn!(kind = other, "unknown fanout job kind"),
    }
    Ok(())
}

/// Calls `f` with each page of the author's followers, in id order, unless the author is a
/// celebrity (at or above `KITH_CELEBRITY_THRESHOLD`), whose followers are never written
/// to one by one.
pub async fn for_each_follower_batch<F, Fut>(
    state: &AppState,
    author_id: i64,
    mut f: F,
) -> Result<(), AppError>
where
    F: FnMut(Vec<i64>) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    let followers = store::follower_count(&state.db, author_id).await?;
    if followers as u64 >= state.config.celebrity_threshold {
        return Ok(());
    }
    let mut after = i64::MIN;
    loop {
        let page = store::followers_after(&state.db, author_id, after, BATCH).await?;
        let Some(&last) = page.iter().max() else {
            break;
        };
        after = last;
        f(page).await?;
    }
    Ok(())
}

/// Calls `f` with the author's own feed and post list, then with each batch of the
/// author's followers' feed keys (see [`for_each_follower_batch`]).
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
    for_each_follower_batch(state, author_id, |page| {
        f(page.iter().copied().map(feed_key).collect(), page)
    })
    .await
}

/// Pushes the post into the feeds.
async fn publish(state: &AppState, job: &store::OutboxRow) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    for_each_feed_batch(state, job.author_id, |keys, _| async move {
        let entries: Vec<(String, i64)> = keys.into_iter().map(|k| (k, job.post_id)).collect();
        cache.ids_add(&entries, FEED_CAP).await?;
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
