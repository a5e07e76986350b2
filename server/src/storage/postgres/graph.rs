//! The social graph on PostgreSQL: follows, follow lists, user search, profile counters.

use super::PgStore;
use crate::storage::{
    accounts::UserRow,
    graph::{Blocked, Counts, GraphStore, List, Listed},
    Result,
};

#[async_trait::async_trait]
impl GraphStore for PgStore {
    async fn follow(&self, follower: i64, followee: i64, now: i64) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(follower)
        .bind(followee)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn unfollow(&self, follower: i64, followee: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let removed =
            sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
                .bind(follower)
                .bind(followee)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        if removed {
            // Pulled notifications go with the follow by themselves; the rows pushed to
            // the follower go here, in the same transaction.
            sqlx::query(
                "DELETE FROM notifications WHERE user_id = $1 AND kind = 'post' AND actor_id = $2",
            )
            .bind(follower)
            .bind(followee)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn list(
        &self,
        user: i64,
        which: List,
        cursor: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<Listed>> {
        let (t, id) = cursor.unwrap_or((i64::MAX, i64::MAX));
        let sql = match which {
            List::Following => {
                "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, f.created_at AS listed_at
                 FROM follows f JOIN users u ON u.id = f.followee_id
                 WHERE f.follower_id = $1 AND (f.created_at, f.followee_id) < ($2, $3)
                 ORDER BY f.created_at DESC, f.followee_id DESC LIMIT $4"
            }
            List::Followers => {
                "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, f.created_at AS listed_at
                 FROM follows f JOIN users u ON u.id = f.follower_id
                 WHERE f.followee_id = $1 AND (f.created_at, f.follower_id) < ($2, $3)
                 ORDER BY f.created_at DESC, f.follower_id DESC LIMIT $4"
            }
            List::Blocks => {
                "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, b.created_at AS listed_at
                 FROM blocks b JOIN users u ON u.id = b.blocked_id
                 WHERE b.blocker_id = $1 AND (b.created_at, b.blocked_id) < ($2, $3)
                 ORDER BY b.created_at DESC, b.blocked_id DESC LIMIT $4"
            }
            List::Friends => {
                "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, f.created_at AS listed_at
                 FROM follows f
                 JOIN follows back
                   ON back.follower_id = f.followee_id AND back.followee_id = f.follower_id
                 JOIN users u ON u.id = f.followee_id
                 WHERE f.follower_id = $1 AND (f.created_at, f.followee_id) < ($2, $3)
                 ORDER BY f.created_at DESC, f.followee_id DESC LIMIT $4"
            }
        };
        sqlx::query_as(sql)
            .bind(user)
            .bind(t)
            .bind(id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }

    async fn search(&self, prefix: &str, after: Option<&str>, limit: i64) -> Result<Vec<UserRow>> {
        // On `lower(username)`, the expression of the unique index, which keeps the column's
        // "C" collation: the range is bytewise and read from that index, and names compare
        // without case as on SQLite. The prefix holds only [a-z0-9_] (validated by the
        // caller), so `prefix || '~'` is an upper bound ('~' sorts after all of them).
        let prefix = prefix.to_ascii_lowercase();
        let after = after.map(str::to_ascii_lowercase);
        let upper = format!("{prefix}~");
        let from = after.as_deref().unwrap_or(prefix.as_str());
        sqlx::query_as(
            "SELECT id, username, display_name, bio, created_at FROM users
             WHERE lower(username) >= $1 AND lower(username) < $2 AND deleted_at IS NULL
               AND ($3::text IS NULL OR lower(username) > $3)
             ORDER BY lower(username) LIMIT $4",
        )
        .bind(from)
        .bind(&upper)
        .bind(after.as_deref())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn counts(&self, user: i64, viewer: Option<i64>) -> Result<Counts> {
        let (followers, following, posts, followed_by_viewer, blocked_by_viewer): (
            i64,
            i64,
            i64,
            bool,
            bool,
        ) = sqlx::query_as(
            "SELECT s.followers, s.following, s.posts,
                        EXISTS (SELECT 1 FROM follows WHERE follower_id = $2 AND followee_id = $1),
                        EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1)
                 FROM user_stats s WHERE s.user_id = $1",
        )
        .bind(user)
        .bind(viewer.unwrap_or(-1))
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            followers,
            following,
            posts,
            followed_by_viewer,
            blocked_by_viewer,
        })
    }

    async fn follower_count(&self, user: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT followers FROM user_stats WHERE user_id = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    async fn celebrity_followees(&self, user: i64, threshold: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT f.followee_id FROM follows f JOIN user_stats s ON s.user_id = f.followee_id
             WHERE f.follower_id = $1 AND s.followers >= $2",
        )
        .bind(user)
        .bind(threshold)
        .fetch_all(&self.pool)
        .await
    }

    async fn followers_after(&self, author: i64, after: i64, limit: i64) -> Result<Vec<i64>> {
        // One array for the page: a fanout of thousands of followers decodes one value
        // instead of thousands of rows.
        sqlx::query_scalar(
            "SELECT COALESCE(array_agg(follower_id), '{}') FROM (
                 SELECT follower_id FROM follows WHERE followee_id = $1 AND follower_id > $2
                 ORDER BY follower_id LIMIT $3) page",
        )
        .bind(author)
        .bind(after)
        .bind(limit)
        .fetch_one(&self.pool)
        .await
    }

    async fn block(&self, blocker: i64, blocked: i64, now: i64) -> Result<Blocked> {
        let mut tx = self.pool.begin().await?;
        let new = sqlx::query(
            "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(blocker)
        .bind(blocked)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let unfollow = "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2";
        let was_following = sqlx::query(unfollow)
            .bind(blocker)
            .bind(blocked)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let was_followed = sqlx::query(unfollow)
            .bind(blocked)
            .bind(blocker)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        sqlx::query(
            "DELETE FROM notifications
              WHERE (user_id = $1 AND actor_id = $2) OR (user_id = $2 AND actor_id = $1)",
        )
        .bind(blocker)
        .bind(blocked)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Blocked {
            new,
            was_following,
            was_followed,
        })
    }

    async fn unblock(&self, blocker: i64, blocked: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
                .bind(blocker)
                .bind(blocked)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn apart(&self, a: i64, b: i64) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)
                 OR EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1)",
        )
        .bind(a)
        .bind(b)
        .fetch_one(&self.pool)
        .await
    }

    async fn blocked_by(&self, user: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT blocked_id FROM blocks WHERE blocker_id = $1")
            .bind(user)
            .fetch_all(&self.pool)
            .await
    }

    async fn blockers_of(&self, user: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT blocker_id FROM blocks WHERE blocked_id = $1")
            .bind(user)
            .fetch_all(&self.pool)
            .await
    }
}
