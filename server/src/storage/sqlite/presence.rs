//! SQL of who hears about a user's presence.

use super::{id_list, SqliteStore};
use crate::storage::{PresenceStore, Result};

#[async_trait::async_trait]
impl PresenceStore for SqliteStore {
    async fn audience(&self, user: i64, small: i64) -> Result<Vec<i64>> {
        let list: String = sqlx::query_scalar(
            "SELECT json_group_array(id) FROM (
             SELECT f.follower_id AS id FROM follows f
               JOIN follows back ON back.follower_id = f.followee_id AND back.followee_id = f.follower_id
              WHERE f.followee_id = ?1
             UNION
             SELECT other.user_id FROM channel_members mine
               JOIN channel_members other ON other.channel_id = mine.channel_id
              WHERE mine.user_id = ?1 AND other.user_id != ?1
                AND (SELECT COUNT(*) FROM channel_members m WHERE m.channel_id = mine.channel_id) <= ?2) AS audience
             WHERE NOT EXISTS (SELECT 1 FROM blocks b
                                WHERE (b.blocker_id = ?1 AND b.blocked_id = audience.id)
                                   OR (b.blocker_id = audience.id AND b.blocked_id = ?1))",
        )
        .bind(user)
        .bind(small)
        .fetch_one(&self.reads)
        .await?;
        id_list(&list)
    }

    /// Channels of any size count: large groups ask when they are opened.
    async fn visible_to(&self, viewer: i64, users: &[i64]) -> Result<Vec<i64>> {
        let asked = serde_json::to_string(users).unwrap_or_else(|_| "[]".into());
        let list: String = sqlx::query_scalar(
            "SELECT json_group_array(u.value) FROM json_each(?2) u
              WHERE u.value = ?1
                 OR (((EXISTS (SELECT 1 FROM follows WHERE follower_id = ?1 AND followee_id = u.value)
                       AND EXISTS (SELECT 1 FROM follows WHERE follower_id = u.value AND followee_id = ?1))
                      OR EXISTS (SELECT 1 FROM channel_members mine
                                   JOIN channel_members other ON other.channel_id = mine.channel_id
                                  WHERE mine.user_id = ?1 AND other.user_id = u.value))
                     AND NOT EXISTS (SELECT 1 FROM blocks b
                                      WHERE (b.blocker_id = ?1 AND b.blocked_id = u.value)
                                         OR (b.blocker_id = u.value AND b.blocked_id = ?1)))",
        )
        .bind(viewer)
        .bind(asked)
        .fetch_one(&self.reads)
        .await?;
        id_list(&list)
    }

    /// One query for all the names.
    async fn by_usernames(&self, names: &[String]) -> Result<Vec<Option<(i64, String)>>> {
        let asked = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
        let rows: Vec<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT u.id, u.username FROM json_each(?1) n
               LEFT JOIN users u ON u.username = n.value
              ORDER BY n.key",
        )
        .bind(asked)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.into_iter().map(|(id, name)| id.zip(name)).collect())
    }
}
