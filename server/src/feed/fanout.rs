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

use super::caches;
use crate::storage::{feed::FanoutKind, outbox::FanoutJob};
use crate::{error::AppError, outbox::Outbox, state::AppState};

/// Newest ids kept per feed cache; older pages come from SQLite.
pub const FEED_CAP: usize = 800;
/// Followers read (and feeds written) per batch: one SQL page and one `ids_push`. On Redis
/// that is one look at the index of feed caches, then scripts over the few feeds that
/// exist; 500-follower batches spent more of a large fanout on round trips than on pushes.
const PUSH_BATCH: i64 = 2_000;

/// The feed cache key of a user.
pub fn feed_key(user_id: i64) -> String {
    crate::backend::id_key("feed:", user_id)
}

/// The cache key of an author's own newest post ids (what followers of a celebrity pull).
pub fn author_key(user_id: i64) -> String {
    crate::backend::id_key("posts:", user_id)
}

/// The fanout outbox's jobs (`crate::outbox`).
pub struct FanoutJobs;

#[async_trait::async_trait]
impl crate::outbox::Jobs for FanoutJobs {
    async fn run(&self, state: &AppState, id: i64) -> Result<(), AppError> {
        process(state, id).await
    }
}

/// Runs one fanout job to completion (a no-op if another worker already finished it).
pub async fn process(state: &AppState, outbox_id: i64) -> Result<(), AppError> {
    let Some(job) = state.store.outbox.fanout_job(outbox_id).await? else {
        return Ok(());
    };
    match job.kind {
        FanoutKind::Publish => {
            publish(state, &job).await?;
            let now = state.clock.now_ms();
            // None: another worker ran this job too and handed it over first.
            if let Some(next) = state
                .store
                .outbox
                .hand_over_to_notifications(&job, now)
                .await?
            {
                if let Err(e) = Outbox::Notify.enqueue(state, next).await {
                    // The row is durable: the sweep enqueues it.
                    tracing::warn!(error = %e, "cannot enqueue post notifications");
                }
            }
        }
        FanoutKind::Delete => {
            retract(state, &job).await?;
            Outbox::Fanout.finish(state, outbox_id).await?;
        }
    }
    Ok(())
}

/// Whether the author is a celebrity now (at or above `KITH_CELEBRITY_THRESHOLD`): their
/// followers' feeds and notification lists pull their posts instead of being written to.
pub async fn is_celebrity(state: &AppState, author_id: i64) -> Result<bool, AppError> {
    let followers = state.store.graph.follower_count(author_id).await?;
    Ok(followers as u64 >= state.config.celebrity_threshold)
}

/// Calls `f` with each page of up to `batch` of the author's followers, in id order. The
/// next page is read from SQLite while `f` handles the current one.
pub async fn for_each_follower_batch<F, Fut>(
    state: &AppState,
    author_id: i64,
    batch: i64,
    mut f: F,
) -> Result<(), AppError>
where
    F: FnMut(Vec<i64>) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    let mut page = state
        .store
        .graph
        .followers_after(author_id, i64::MIN, batch)
        .await?;
    while let Some(&last) = page.iter().max() {
        if page.len() < batch as usize {
            // A short page is the last one.
            return f(page).await;
        }
        let (next, done) = futures::join!(
            state.store.graph.followers_after(author_id, last, batch),
            f(page)
        );
        done?;
        page = next?;
    }
    Ok(())
}

/// Calls `f` with batches of feed keys: the author's own feed and post list, then, unless
/// the author is a celebrity (whose followers pull), their followers' feeds (see
/// [`for_each_follower_batch`]), the author's keys riding along with the first batch.
async fn for_each_feed_batch<F, Fut>(
    state: &AppState,
    author_id: i64,
    mut f: F,
) -> Result<(), AppError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    let mut own = Some(vec![feed_key(author_id), author_key(author_id)]);
    if !is_celebrity(state, author_id).await? {
        for_each_follower_batch(state, author_id, PUSH_BATCH, |page| {
            let mut keys = own.take().unwrap_or_default();
            keys.extend(page.into_iter().map(feed_key));
            f(keys)
        })
        .await?;
    }
    match own {
        Some(keys) => f(keys).await,
        None => Ok(()),
    }
}

/// Pushes the post into the feeds.
async fn publish(state: &AppState, job: &FanoutJob) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    for_each_feed_batch(state, job.author_id, |keys| async move {
        cache.ids_push(&keys, job.post_id, FEED_CAP).await?;
        Ok(())
    })
    .await?;
    let lag_ms = (state.clock.now_ms() - job.created_at).max(0);
    state.metrics.fanout_lag.observe(lag_ms as f64 / 1000.0);
    Ok(())
}

async fn retract(state: &AppState, job: &FanoutJob) -> Result<(), AppError> {
    let cache = &state.backends.cache;
    for_each_feed_batch(state, job.author_id, |keys| async move {
        let entries: Vec<(String, i64)> = keys.into_iter().map(|k| (k, job.post_id)).collect();
        cache.ids_remove(&entries).await?;
        Ok(())
    })
    .await?;
    state.store.notifications.forget_post(job.post_id).await?;
    cache.delete(&caches::post_key(job.post_id)).await?;
    Ok(())
}
