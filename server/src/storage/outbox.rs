//! The two outboxes of a post's delivery: durable jobs committed with the write that
//! causes them (see `crate::outbox` for the workers).

use super::{feed::FanoutKind, Result};

/// One of the durable job tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbox {
    /// Feed fanout of a post or of its deletion (`fanout_outbox`).
    Fanout,
    /// Notifications and live events for a post's followers (`notification_outbox`).
    Notify,
}

impl Outbox {
    /// The table holding the jobs.
    pub const fn table(self) -> &'static str {
        match self {
            Outbox::Fanout => "fanout_outbox",
            Outbox::Notify => "notification_outbox",
        }
    }
}

/// A fanout job.
#[derive(Debug, Clone)]
pub struct FanoutJob {
    pub id: i64,
    pub kind: FanoutKind,
    pub post_id: i64,
    pub author_id: i64,
    /// The post's creation time.
    pub created_at: i64,
}

/// A notification job: a post whose followers are to be notified.
#[derive(Debug, Clone)]
pub struct NotifyJob {
    pub id: i64,
    pub post_id: i64,
    pub author_id: i64,
}

#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync {
    async fn fanout_job(&self, id: i64) -> Result<Option<FanoutJob>>;
    async fn notify_job(&self, id: i64) -> Result<Option<NotifyJob>>;
    /// Retires a finished publish job and queues its notifications, in one transaction, so
    /// the post's followers are notified exactly as surely as their feeds were written.
    /// Returns the notification job's id, or `None` if the fanout job was already retired.
    async fn hand_over_to_notifications(&self, job: &FanoutJob, now: i64) -> Result<Option<i64>>;
    /// Deletes a finished job.
    async fn finish(&self, outbox: Outbox, id: i64) -> Result<()>;
    /// Claims jobs handed out before `stale_before` and still unfinished: marks them handed
    /// out again at `now` and returns their ids. Each stale job goes to one caller, however
    /// many nodes sweep at once.
    async fn claim_stale(&self, outbox: Outbox, stale_before: i64, now: i64) -> Result<Vec<i64>>;
    /// Jobs in both outboxes.
    async fn pending(&self) -> Result<i64>;
}
