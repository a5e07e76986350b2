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
         -- A post deleted meanwhile notifies nobody, and a follower who unfollowed
         -- meanwhile is not notified: the deletion or unfollow removes what was written
         -- before it, and these checks stop what would come after.
         WHERE ?2 <> 'post'
            OR (EXISTS (SELECT 1 FROM posts WHERE id = ?1)
                AND EXISTS (SELECT 1 FROM follows
                             WHERE follower_id = json_each.value AND followee_id = ?3))",
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

/// Records that a post's followers pull its notification (see the migration); a post
/// deleted meanwhile is skipped.
pub async fn mark_pulled(db: &SqlitePool, post_id: i64, author_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO pulled_post_notifications (post_id, author_id)
         SELECT id, author_id FROM posts WHERE id = ?1 AND author_id = ?2",
    )
    .bind(post_id)
    .bind(author_id)
    .execute(db)
    .await?;
    Ok(())
}

/// The pulled post notifications `?1` sees: posts in `pulled_post_notifications` by an
/// author ?1 followed when the post was made, not older than `?2` (an id), and not already
/// a row of ?1's own (a job that wrote rows, then found its author past the threshold on
/// a retry). Shared by the page and the count.
macro_rules! pulled {
    () => {
        "
      FROM pulled_post_notifications n
      JOIN follows f ON f.follower_id = ?1 AND f.followee_id = n.author_id
      JOIN posts p ON p.id = n.post_id
     WHERE n.post_id >= ?2 AND f.created_at <= p.created_at
       AND NOT EXISTS (SELECT 1 FROM notifications x WHERE x.user_id = ?1 AND x.id = n.post_id)"
    };
}

/// A page of a user's notifications, newest first, with ids below `before`: their own
/// rows merged with the posts they pull (none older than `pulled_since`, an id).
/// `excerpt_chars` shortens pulled posts as stored excerpts were shortened.
pub async fn page(
    db: &SqlitePool,
    user: i64,
    before: Option<i64>,
    limit: i64,
    pulled_since: i64,
    excerpt_chars: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    const PAGE: &str = concat!(
        "SELECT id, kind, actor_id, channel_id, excerpt, created_at FROM (
             SELECT id, kind, actor_id, channel_id, excerpt, created_at
               FROM notifications
              WHERE user_id = ?1 AND id < ?3
              ORDER BY id DESC LIMIT ?4)
         UNION ALL
         SELECT id, kind, actor_id, channel_id, excerpt, created_at FROM (
             SELECT p.id AS id, 'post' AS kind, p.author_id AS actor_id, NULL AS channel_id,
                    CASE WHEN length(p.content) > ?5 THEN substr(p.content, 1, ?5) || '…'
                         ELSE p.content END AS excerpt,
                    p.created_at AS created_at",
        pulled!(),
        " AND n.post_id < ?3
              ORDER BY n.post_id DESC LIMIT ?4)
         ORDER BY id DESC LIMIT ?4"
    );
    sqlx::query_as(PAGE)
        .bind(user)
        .bind(pulled_since)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .bind(excerpt_chars)
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

/// Unread notifications of `user`: rows above their watermark, and pulled posts above it
/// and not older than `pulled_since` (an id).
pub async fn unread_count(
    db: &SqlitePool,
    user: i64,
    pulled_since: i64,
) -> Result<i64, sqlx::Error> {
    const COUNT: &str = concat!(
        "WITH r AS (SELECT COALESCE((SELECT up_to FROM notification_reads WHERE user_id = ?1), 0) AS up_to)
         SELECT (SELECT COUNT(*) FROM notifications WHERE user_id = ?1 AND id > (SELECT up_to FROM r))
              + (SELECT COUNT(*)",
        pulled!(),
        " AND n.post_id > (SELECT up_to FROM r))"
    );
    sqlx::query_scalar(COUNT)
        .bind(user)
        .bind(pulled_since)
        .fetch_one(db)
        .await
}

/// Removes a deleted post's notifications, from whoever holds them (by the subject index).
pub async fn forget_post(db: &SqlitePool, post_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM notifications WHERE id = ? AND kind = 'post'")
        .bind(post_id)
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
