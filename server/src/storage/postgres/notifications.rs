//! Notification rows, pulled post notifications and read watermarks on PostgreSQL.

use super::PgStore;
use crate::storage::{
    notifications::{About, NotificationRow, NotificationStore},
    Result,
};

/// The pulled post notifications `$1` sees: posts in `pulled_post_notifications` by an
/// author $1 followed when the post was made, not older than `$2` (an id), and not already
/// a row of $1's own (a job that wrote rows, then found its author past the threshold on a
/// retry). Shared by the page and the count.
macro_rules! pulled {
    () => {
        "
      FROM pulled_post_notifications n
      JOIN follows f ON f.follower_id = $1 AND f.followee_id = n.author_id
      JOIN posts p ON p.id = n.post_id
     WHERE n.post_id >= $2 AND f.created_at <= p.created_at
       AND NOT EXISTS (SELECT 1 FROM notifications x WHERE x.user_id = $1 AND x.id = n.post_id)"
    };
}

#[async_trait::async_trait]
impl NotificationStore for PgStore {
    async fn insert_many(&self, about: &About<'_>, recipients: &[i64]) -> Result<Vec<i64>> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        // A post deleted meanwhile notifies nobody, and a follower who unfollowed meanwhile
        // is not notified: the deletion or unfollow removes what was written before it, and
        // these checks stop what would come after. SQLite runs one writer at a time; here
        // the post's row is share-locked (`FOR KEY SHARE`) so that a deletion waits for this
        // insert to commit (its fanout then removes these rows) or this insert waits for the
        // deletion and sees no post. The follows are not locked (one lock per recipient):
        // an unfollow committing during this statement can leave one stale notification.
        sqlx::query_scalar(
            "INSERT INTO notifications (user_id, id, kind, actor_id, channel_id, excerpt, created_at)
             SELECT r.id, $1, $2, $3, $4, $5, $6 FROM unnest($7::bigint[]) AS r(id)
              WHERE $2 <> 'post'
                 OR (EXISTS (SELECT 1 FROM posts WHERE id = $1 FOR KEY SHARE)
                     AND EXISTS (SELECT 1 FROM follows
                                  WHERE follower_id = r.id AND followee_id = $3))
             ON CONFLICT DO NOTHING
             RETURNING user_id",
        )
        .bind(about.subject)
        .bind(about.kind)
        .bind(about.actor_id)
        .bind(about.channel_id)
        .bind(about.excerpt)
        .bind(about.created_at)
        .bind(recipients)
        .fetch_all(&self.pool)
        .await
    }

    async fn mark_pulled(&self, post: i64, author: i64) -> Result<bool> {
        // The post is share-locked as it is read, so a concurrent deletion either waits
        // for this row (and cascades to it) or leaves nothing to insert.
        let done = sqlx::query(
            "INSERT INTO pulled_post_notifications (post_id, author_id)
             SELECT id, author_id FROM posts WHERE id = $1 AND author_id = $2 FOR KEY SHARE
             ON CONFLICT DO NOTHING",
        )
        .bind(post)
        .bind(author)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn page(
        &self,
        user: i64,
        before: Option<i64>,
        limit: i64,
        pulled_since: i64,
        excerpt_chars: i64,
    ) -> Result<Vec<NotificationRow>> {
        // `substr` takes an `integer` length, hence `$5::int`; a pulled row's `channel_id`
        // is a typed NULL so that both sides of the UNION agree.
        const PAGE: &str = concat!(
            "SELECT id, kind, actor_id, channel_id, excerpt, created_at FROM (
                 SELECT id, kind, actor_id, channel_id, excerpt, created_at
                   FROM notifications
                  WHERE user_id = $1 AND id < $3
                  ORDER BY id DESC LIMIT $4) own
             UNION ALL
             SELECT id, kind, actor_id, channel_id, excerpt, created_at FROM (
                 SELECT p.id AS id, 'post'::text AS kind, p.author_id AS actor_id,
                        NULL::bigint AS channel_id,
                        CASE WHEN char_length(p.content) > $5
                             THEN substr(p.content, 1, $5::int) || '…'
                             ELSE p.content END AS excerpt,
                        p.created_at AS created_at",
            pulled!(),
            " AND n.post_id < $3
                  ORDER BY n.post_id DESC LIMIT $4) pulled
             ORDER BY id DESC LIMIT $4"
        );
        sqlx::query_as(PAGE)
            .bind(user)
            .bind(pulled_since)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .bind(excerpt_chars)
            .fetch_all(&self.pool)
            .await
    }

    async fn read_up_to(&self, user: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT up_to FROM notification_reads WHERE user_id = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    async fn mark_read(&self, user: i64, up_to: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification_reads (user_id, up_to) VALUES ($1, $2)
             ON CONFLICT (user_id)
             DO UPDATE SET up_to = GREATEST(notification_reads.up_to, EXCLUDED.up_to)",
        )
        .bind(user)
        .bind(up_to)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn unread_count(&self, user: i64, pulled_since: i64) -> Result<i64> {
        const COUNT: &str = concat!(
            "WITH r AS (SELECT COALESCE(
                 (SELECT up_to FROM notification_reads WHERE user_id = $1), 0) AS up_to)
             SELECT (SELECT COUNT(*) FROM notifications
                      WHERE user_id = $1 AND id > (SELECT up_to FROM r))
                  + (SELECT COUNT(*)",
            pulled!(),
            " AND n.post_id > (SELECT up_to FROM r))"
        );
        sqlx::query_scalar(COUNT)
            .bind(user)
            .bind(pulled_since)
            .fetch_one(&self.pool)
            .await
    }

    async fn forget_post(&self, post: i64) -> Result<()> {
        sqlx::query("DELETE FROM notifications WHERE id = $1 AND kind = 'post'")
            .bind(post)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
