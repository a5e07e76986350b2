//! Notification rows (see the migration for the layout).

use sqlx::{FromRow, SqlitePool};

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
pub struct About<'a> {
    pub kind: &'a str,
    /// The message's or post's id (the notification's id).
    pub subject: i64,
    pub actor_id: i64,
    pub channel_id: Option<i64>,
    pub excerpt: &'a str,
    pub created_at: i64,
}

/// Inserts one notification per recipient, in one statement; a recipient already
/// notified of the same subject is skipped.
pub async fn insert_many(
    db: &SqlitePool,
    about: &About<'_>,
    recipients: &[i64],
) -> Result<u64, sqlx::Error> {
    if recipients.is_empty() {
        return Ok(0);
    }
    let list = serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query(
        "INSERT OR IGNORE INTO notifications
             (user_id, id, kind, actor_id, channel_id, excerpt, created_at)
         SELECT value, ?1, ?2, ?3, ?4, ?5, ?6 FROM json_each(?7)
         -- A post deleted meanwhile notifies nobody: its deletion removes what was
         -- written before it, and this check stops what would come after.
         WHERE ?2 <> 'post' OR EXISTS (SELECT 1 FROM posts WHERE id = ?1)",
    )
    .bind(about.subject)
    .bind(about.kind)
    .bind(about.actor_id)
    .bind(about.channel_id)
    .bind(about.excerpt)
    .bind(about.created_at)
    .bind(list)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A page of a user's notifications, newest first, with ids below `before`.
pub async fn page(
    db: &SqlitePool,
    user: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, actor_id, channel_id, excerpt, created_at
           FROM notifications
          WHERE user_id = ? AND id < ?
          ORDER BY id DESC LIMIT ?",
    )
    .bind(user)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Everything up to this id is read (0: nothing).
pub async fn read_up_to(db: &SqlitePool, user: i64) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT up_to FROM notification_reads WHERE user_id = ?")
            .bind(user)
            .fetch_optional(db)
            .await?
            .unwrap_or(0),
    )
}

/// Marks every notification of `user` up to `up_to` (inclusive) read; never backwards.
pub async fn mark_read(db: &SqlitePool, user: i64, up_to: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notification_reads (user_id, up_to) VALUES (?, ?)
         ON CONFLICT (user_id) DO UPDATE SET up_to = MAX(up_to, excluded.up_to)",
    )
    .bind(user)
    .bind(up_to)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn unread_count(db: &SqlitePool, user: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications
          WHERE user_id = ?1
            AND id > COALESCE((SELECT up_to FROM notification_reads WHERE user_id = ?1), 0)",
    )
    .bind(user)
    .fetch_one(db)
    .await
}

/// Removes a deleted post's notifications from these recipients (primary-key deletes).
pub async fn forget_post(
    db: &SqlitePool,
    post_id: i64,
    recipients: &[i64],
) -> Result<(), sqlx::Error> {
    if recipients.is_empty() {
        return Ok(());
    }
    let list = serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "DELETE FROM notifications
          WHERE id = ? AND user_id IN (SELECT value FROM json_each(?))",
    )
    .bind(post_id)
    .bind(list)
    .execute(db)
    .await?;
    Ok(())
}

/// A `notification_outbox` row: a post whose followers are to be notified.
#[derive(Debug, Clone, FromRow)]
pub struct NotifyJob {
    pub id: i64,
    pub post_id: i64,
    pub author_id: i64,
}

pub async fn notify_job(db: &SqlitePool, id: i64) -> Result<Option<NotifyJob>, sqlx::Error> {
    sqlx::query_as("SELECT id, post_id, author_id FROM notification_outbox WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await
}
