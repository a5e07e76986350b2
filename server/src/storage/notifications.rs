//! Notification rows (see the migrations for the layout).

use super::Result;
use sqlx::FromRow;

#[derive(Debug, FromRow)]
pub struct NotificationRow {
    pub id: i64,
    pub kind: String,
    pub actor_id: i64,
    pub channel_id: Option<i64>,
    pub excerpt: String,
    pub created_at: i64,
}

/// What one batch of notifications is about; every recipient gets the same.
#[derive(Debug)]
pub struct About<'a> {
    /// `message` or `post`.
    pub kind: &'a str,
    /// The message's or post's id (the notification's id).
    pub subject: i64,
    pub actor_id: i64,
    pub channel_id: Option<i64>,
    pub excerpt: &'a str,
    pub created_at: i64,
}

#[async_trait::async_trait]
pub trait NotificationStore: Send + Sync {
    /// Inserts one notification per recipient, in one statement; a recipient already
    /// notified of the same subject is skipped, and so is a post deleted meanwhile or a
    /// follower who unfollowed meanwhile. Returns the recipients notified now: a job run
    /// twice (a crash, two nodes) tells each recipient once.
    async fn insert_many(&self, about: &About<'_>, recipients: &[i64]) -> Result<Vec<i64>>;
    /// Records that a post's followers pull its notification; a deleted post is skipped.
    /// Whether it was recorded now (not before).
    async fn mark_pulled(&self, post: i64, author: i64) -> Result<bool>;
    /// A page of a user's notifications, newest first, with ids below `before`: their own
    /// rows merged with the posts they pull (none older than `pulled_since`, an id).
    /// `excerpt_chars` shortens pulled posts as stored excerpts were shortened.
    async fn page(
        &self,
        user: i64,
        before: Option<i64>,
        limit: i64,
        pulled_since: i64,
        excerpt_chars: i64,
    ) -> Result<Vec<NotificationRow>>;
    /// Everything up to this id is read (0: nothing).
    async fn read_up_to(&self, user: i64) -> Result<i64>;
    /// Marks every notification of `user` up to `up_to` (inclusive) read; never backwards.
    async fn mark_read(&self, user: i64, up_to: i64) -> Result<()>;
    /// Unread notifications of `user` (rows and pulled posts above their watermark).
    async fn unread_count(&self, user: i64, pulled_since: i64) -> Result<i64>;
    /// Removes a deleted post's notifications, from whoever holds them.
    async fn forget_post(&self, post: i64) -> Result<()>;
}
