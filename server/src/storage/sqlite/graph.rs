//! SQL of the social graph, and of the counters kept by triggers in `user_stats`.

use super::{id_list, SqliteStore};
use crate::storage::{
    graph::{Blocked, Counts, List, Listed},
    GraphStore, Result, UserRow,
};

#[async_trait::async_trait]
impl GraphStore for SqliteStore {
    async fn follow(&self, follower: i64, followee: i64, now: i64) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(follower)
        .bind(followee)
        .bind(now)
        .execute(&self.writes)
        .await?
        .rows_affected()
            > 0)
    }

    /// Removes a follow, and the notifications of the followee's posts that the follower
    /// kept (pulled ones go with the follow by themselves).
    async fn unfollow(&self, follower: i64, followee: i64) -> Result<bool> {
        let mut tx = self.writes.begin().await?;
        let removed = sqlx::query("DELETE FROM follows WHERE follower_id = ? AND followee_id = ?")
            .bind(follower)
            .bind(followee)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if removed {
            sqlx::query(
                "DELETE FROM notifications WHERE user_id = ? AND kind = 'post' AND actor_id = ?",
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
                 WHERE f.follower_id = ?1 AND (f.created_at, f.followee_id) < (?2, ?3)
                 ORDER BY f.created_at DESC, f.followee_id DESC LIMIT ?4"
            }
            List::Followers => {
                "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, f.created_at AS listed_at
                 FROM follows f JOIN users u ON u.id = f.follower_id
                 WHERE f.followee_id = ?1 AND (f.created_at, f.follower_id) < (?2, ?3)
                 ORDER BY f.created_at DESC, f.follower_id DESC LIMIT ?4"
            }
            List::Blocks => {
                "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, b.created_at AS listed_at
                 FROM blocks b JOIN users u ON u.id = b.blocked_id
                 WHERE b.blocker_id = ?1 AND (b.created_at, b.blocked_id) < (?2, ?3)
                 ORDER BY b.created_at DESC, b.blocked_id DESC LIMIT ?4"
            }
            List::Friends => {
                "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, f.created_at AS listed_at
                 FROM follows f
                 JOIN follows back ON back.follower_id = f.followee_id AND back.followee_id = f.follower_id
                 JOIN users u ON u.id = f.followee_id
                 WHERE f.follower_id = ?1 AND (f.created_at, f.followee_id) < (?2, ?3)
                 ORDER BY f.created_at DESC, f.followee_id DESC LIMIT ?4"
            }
        };
        sqlx::query_as(sql)
            .bind(user)
            .bind(t)
            .bind(id)
            .bind(limit)
            .fetch_all(&self.reads)
            .await
    }

    async fn search(&self, prefix: &str, after: Option<&str>, limit: i64) -> Result<Vec<UserRow>> {
        // The prefix holds only [a-z0-9_] (validated by the caller), so `prefix || '~'` is
        // an upper bound ('~' sorts after every allowed character) and the username index
        // is used.
        let upper = format!("{prefix}~");
        let lower = after.map_or(prefix.to_string(), str::to_string);
        sqlx::query_as(
            "SELECT id, username, display_name, bio, created_at FROM users
             WHERE username >= ?1 AND username < ?2 AND (?3 IS NULL OR username > ?3)
               AND deleted_at IS NULL
             ORDER BY username LIMIT ?4",
        )
        .bind(&lower)
        .bind(upper)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reads)
        .await
    }

    async fn counts(&self, user: i64, viewer: Option<i64>) -> Result<Counts> {
        let (followers, following, posts, followed, blocked): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT s.followers, s.following, s.posts,
                EXISTS (SELECT 1 FROM follows WHERE follower_id = ?2 AND followee_id = ?1),
                EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?2 AND blocked_id = ?1)
             FROM user_stats s WHERE s.user_id = ?1",
            )
            .bind(user)
            .bind(viewer.unwrap_or(-1))
            .fetch_one(&self.reads)
            .await?;
        Ok(Counts {
            followers,
            following,
            posts,
            followed_by_viewer: followed != 0,
            blocked_by_viewer: blocked != 0,
        })
    }

    async fn follower_count(&self, user: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT followers FROM user_stats WHERE user_id = ?")
                .bind(user)
                .fetch_optional(&self.reads)
                .await?
                .unwrap_or(0),
        )
    }

    async fn celebrity_followees(&self, user: i64, threshold: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT f.followee_id FROM follows f JOIN user_stats s ON s.user_id = f.followee_id
             WHERE f.follower_id = ? AND s.followers >= ?",
        )
        .bind(user)
        .bind(threshold)
        .fetch_all(&self.reads)
        .await
    }

    /// The page's ids come in no particular order, as one row (see [`id_list`]).
    async fn followers_after(&self, author: i64, after: i64, limit: i64) -> Result<Vec<i64>> {
        let list: String = sqlx::query_scalar(
            "SELECT json_group_array(follower_id) FROM (
               SELECT follower_id FROM follows WHERE followee_id = ? AND follower_id > ?
               ORDER BY follower_id LIMIT ?)",
        )
        .bind(author)
        .bind(after)
        .bind(limit)
        .fetch_one(&self.reads)
        .await?;
        id_list(&list)
    }

    async fn block(&self, blocker: i64, blocked: i64, now: i64) -> Result<Blocked> {
        let mut tx = self.writes.begin().await?;
        let new = sqlx::query(
            "INSERT OR IGNORE INTO blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(blocker)
        .bind(blocked)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let unfollow = "DELETE FROM follows WHERE follower_id = ? AND followee_id = ?";
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
              WHERE (user_id = ?1 AND actor_id = ?2) OR (user_id = ?2 AND actor_id = ?1)",
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
            sqlx::query("DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?")
                .bind(blocker)
                .bind(blocked)
                .execute(&self.writes)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn apart(&self, a: i64, b: i64) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2)
                 OR EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?2 AND blocked_id = ?1)",
        )
        .bind(a)
        .bind(b)
        .fetch_one(&self.reads)
        .await
    }

    async fn blocked_by(&self, user: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT blocked_id FROM blocks WHERE blocker_id = ?")
            .bind(user)
            .fetch_all(&self.reads)
            .await
    }

    async fn blockers_of(&self, user: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT blocker_id FROM blocks WHERE blocked_id = ?")
            .bind(user)
            .fetch_all(&self.reads)
            .await
    }
}
