//! Durable background jobs: a row in an outbox table, committed with the write that
//! causes the work, plus its id on a queue the workers pop.
//!
//! Two outboxes exist, one per stage of a post's delivery:
//! * [`Outbox::Fanout`]: the fanout service pushes the post into followers' feed caches
//!   (`feed::fanout`);
//! * [`Outbox::Notify`]: the notification service then notifies those followers and sends
//!   the online ones a live `new_post` event (`notifications::posts`).
//!
//! The fanout job hands over to the notification job in the transaction that finishes it,
//! so a post reaches its followers' feeds without waiting for thousands of notification
//! rows, and neither stage is lost if the process dies. Workers delete a row only when its
//! work is done; rows left over by a crash are re-enqueued at start-up and by a periodic
//! sweep. Both jobs are idempotent, so doing one twice changes nothing.
//!
//! This module runs the queues, workers and sweeps; what a job does is its feature's,
//! registered at start-up as the [`Jobs`] of its outbox (`crate::startup`).

use crate::{error::AppError, state::AppState};
use bytes::Bytes;
use std::{sync::Arc, time::Duration};

/// A job handed out this long ago and still in its outbox is presumed lost.
const STALE_AFTER_MS: i64 = 30_000;
/// How often each outbox is swept for lost jobs.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub use crate::storage::outbox::Outbox;

impl Outbox {
    /// The queue (in-process or Redis list) carrying job ids to the workers; `/metrics`
    /// reports its depth.
    pub const fn queue(self) -> &'static str {
        match self {
            Outbox::Fanout => "fanout",
            Outbox::Notify => "notify",
        }
    }

    /// Puts a job on its queue.
    pub async fn enqueue(self, state: &AppState, id: i64) -> Result<(), AppError> {
        state
            .backends
            .queue
            .push(self.queue(), Bytes::from(id.to_string()))
            .await?;
        Ok(())
    }

    /// Deletes a finished job.
    pub async fn finish(self, state: &AppState, id: i64) -> Result<(), AppError> {
        Ok(state.store.outbox.finish(self, id).await?)
    }
}

/// What runs the jobs of one outbox: the feature that owns them.
#[async_trait::async_trait]
pub trait Jobs: Send + Sync {
    /// Runs job `id` to completion and finishes it; a job run twice (a crash, a sweep)
    /// changes nothing the second time.
    async fn run(&self, state: &AppState, id: i64) -> Result<(), AppError>;
}

/// Starts `KITH_FANOUT_WORKERS` workers for each outbox of `handlers`, which run its jobs
/// with its [`Jobs`], and each outbox's sweep (nothing at all with 0 workers, which tests
/// use to leave jobs unfinished as a crash would).
pub fn spawn(state: &AppState, handlers: &[(Outbox, Arc<dyn Jobs>)]) {
    let workers = state.config.fanout_workers;
    if workers == 0 {
        return;
    }
    for (outbox, jobs) in handlers {
        for _ in 0..workers {
            tokio::spawn(worker(state.clone(), *outbox, jobs.clone()));
        }
        tokio::spawn(sweeper(state.clone(), *outbox));
    }
}

async fn worker(state: AppState, outbox: Outbox, jobs: Arc<dyn Jobs>) {
    loop {
        match state
            .backends
            .queue
            .pop(outbox.queue(), Duration::from_secs(1))
            .await
        {
            Ok(Some(item)) => {
                let Some(id) = std::str::from_utf8(&item)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    tracing::warn!(queue = outbox.queue(), "dropping malformed job");
                    continue;
                };
                if let Err(e) = jobs.run(&state, id).await {
                    // The row stays; the sweep retries it.
                    tracing::warn!(queue = outbox.queue(), job = id, error = %e, "job failed");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(queue = outbox.queue(), error = %e, "job queue unavailable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Re-enqueues unfinished jobs: everything at start-up, then stale ones every few seconds.
async fn sweeper(state: AppState, outbox: Outbox) {
    let mut stale_before = i64::MAX;
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let now = state.clock.now_ms();
        match state
            .store
            .outbox
            .claim_stale(outbox, stale_before, now)
            .await
        {
            Ok(ids) => {
                if !ids.is_empty() {
                    tracing::info!(
                        queue = outbox.queue(),
                        jobs = ids.len(),
                        "re-enqueueing unfinished jobs"
                    );
                }
                for id in ids {
                    if let Err(e) = outbox.enqueue(&state, id).await {
                        tracing::warn!(queue = outbox.queue(), error = %e, "cannot re-enqueue job");
                    }
                }
            }
            Err(e) => tracing::warn!(queue = outbox.queue(), error = %e, "outbox sweep failed"),
        }
        stale_before = state.clock.now_ms() - STALE_AFTER_MS;
    }
}
