//! Notification rows.

use sqlx::SqlitePool;

#[derive(Debug, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: i64,
    pub kind: String,
    pub actor_id: i64,
    pub channel_id: Option<i64>,
    pub message_id: Option<i64>,
    pub post_id: Option<i64>,
    pub excerpt: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// What one batch of notifications is about; every recipient gets the same.
pub struct About<'a> {
    pub kind: &'a str,
    pub actor_id: i64,
    pub channel_id: Option<i64>,
    pub message_id: Option<i64>,
    pub post_id: Option<i64>,
    pub excerpt: &'a str,
    pub created_at: i64,
}

/// Inserts one notification per `(id, recipient)`, in one statement; a recipient already
/// notified of the same message or post is skipped.
pub async fn insert_many(
    db: &SqlitePool,
    about: &About<'_>,
    rows: &[(i64, i64)],
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let pairs = serde_json::to_string(rows).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query(
        "INSERT OR IGNORE INTO notifications
             (id, user_id, kind, actor_id, channel_id, message_id, post_id, excerpt, created_at)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?, ?, ?, ?, ?, ?, ?
           FROM json_each(?)",
    )
    .bind(about.kind)
    .bind(about.actor_id)
    .bind(about.channel_id)
    .bind(about.message_id)
    .bind(about.post_id)
    .bind(about.excerpt)
    .bind(about.created_at)
    .bind(pairs)
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
        "SELECT id, kind, actor_id, channel_id, message_id, post_id, excerpt, created_at, read_at
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

/// Marks every notification of `user` up to `up_to` (inclusive) read.
pub async fn mark_read(
    db: &SqlitePool,
    user: i64,
    up_to: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE notifications SET read_at = ? WHERE user_id = ? AND id <= ? AND read_at IS NULL",
    )
    .bind(now)
    .bind(user)
    .bind(up_to)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn unread_count(db: &SqlitePool, user: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read_at IS NULL")
        .bind(user)
        .fetch_one(db)
        .await
}

/// Removes the notifications of a deleted post.
pub async fn forget_post(db: &SqlitePool, post_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM notifications WHERE post_id = ?")
        .bind(post_id)
        .execute(db)
        .await?;
    Ok(())
}
