//! Post notifications: the notification service's stage of a post's delivery, run from
//! the notification outbox after the fanout service has written the followers' feeds.
//!
//! Each follower gets a notification (written in batches, one statement per page of
//! followers), and those online get a live `new_post` frame, serialized once per post. A
//! job run twice (re-enqueued after a crash, or taken by a node starting meanwhile) tells
//! only the followers the first run did not.
//! A celebrity's post gets one `pulled_post_notifications` row instead of a row per
//! follower (followers pull it, as they pull the post into their feed); the online ones
//! still get the live frame, so a followed celebrity raises the "new posts" banner too.

use crate::storage::outbox::NotifyJob;
use crate::{
    error::AppError,
    feed,
    live::{self, Event},
    outbox::Outbox,
    presence,
    state::AppState,
};
use app::protocol::ServerFrame;

/// Followers per batch: one write transaction of notification rows, which every other
/// write of the node waits for.
const BATCH: i64 = 500;

/// The notification outbox's jobs (`crate::outbox`).
pub struct NotifyJobs;

#[async_trait::async_trait]
impl crate::outbox::Jobs for NotifyJobs {
    async fn run(&self, state: &AppState, id: i64) -> Result<(), AppError> {
        process(state, id).await
    }
}

/// Runs one notification job to completion (a no-op if it was already finished).
pub async fn process(state: &AppState, id: i64) -> Result<(), AppError> {
    let Some(job) = state.store.outbox.notify_job(id).await? else {
        return Ok(());
    };
    match feed::posts::one(state, None, job.post_id).await {
        Ok(post) => notify_followers(state, &job, &post.to_post()?).await?,
        // Deleted before its notifications went out: nobody is told.
        Err(AppError::Client { .. }) => {}
        Err(e) => return Err(e),
    }
    Outbox::Notify.finish(state, id).await?;
    Ok(())
}

async fn notify_followers(
    state: &AppState,
    job: &NotifyJob,
    post: &app::model::Post,
) -> Result<(), AppError> {
    let event = &Event::new(&ServerFrame::NewPost { post: post.clone() });
    let pulled = feed::fanout::is_celebrity(state, job.author_id).await?;
    if pulled
        && !state
            .store
            .notifications
            .mark_pulled(job.post_id, job.author_id)
            .await?
    {
        // An earlier run of this job (before a crash, or on another node) recorded it and
        // told whoever was online then.
        return Ok(());
    }
    feed::fanout::for_each_follower_batch(state, job.author_id, BATCH, |followers| async move {
        // Only those this run notified: a job run twice tells each follower once.
        let told = if pulled {
            followers
        } else {
            super::for_post(state, job.author_id, job.post_id, &post.content, &followers).await?
        };
        let online = presence::online_among(state, &told).await?;
        live::send(state, &online, event).await?;
        Ok(())
    })
    .await
}
