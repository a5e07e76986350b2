//! Who hears about a user's presence, on PostgreSQL.

use super::PgStore;
use crate::storage::{presence::PresenceStore, Result};

#[async_trait::async_trait]
impl PresenceStore for PgStore {
    async fn audience(&self, user: i64, small: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT COALESCE(array_agg(id), '{}') FROM (
                 SELECT f.follower_id AS id FROM follows f
                   JOIN follows back
                     ON back.follower_id = f.followee_id AND back.followee_id = f.follower_id
                  WHERE f.followee_id = $1
                 UNION
                 SELECT other.user_id FROM channel_members mine
                   JOIN channel_members other ON other.channel_id = mine.channel_id
                  WHERE mine.user_id = $1 AND other.user_id <> $1
                    AND (SELECT COUNT(*) FROM channel_members m
                          WHERE m.channel_id = mine.channel_id) <= $2) audience
              WHERE NOT EXISTS (SELECT 1 FROM blocks b
                                 WHERE (b.blocker_id = $1 AND b.blocked_id = audience.id)
                                    OR (b.blocker_id = audience.id AND b.blocked_id = $1))",
        )
        .bind(user)
        .bind(small)
        .fetch_one(&self.pool)
        .await
    }

    async fn visible_to(&self, viewer: i64, users: &[i64]) -> Result<Vec<i64>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT COALESCE(array_agg(u.id), '{}') FROM unnest($2::bigint[]) AS u(id)
              WHERE u.id = $1
                 OR ((EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = u.id)
                      AND EXISTS (SELECT 1 FROM follows
                                   WHERE follower_id = u.id AND followee_id = $1))
                     OR EXISTS (SELECT 1 FROM channel_members mine
                                  JOIN channel_members other ON other.channel_id = mine.channel_id
                                 WHERE mine.user_id = $1 AND other.user_id = u.id))
                    AND NOT EXISTS (SELECT 1 FROM blocks b
                                     WHERE (b.blocker_id = $1 AND b.blocked_id = u.id)
                                        OR (b.blocker_id = u.id AND b.blocked_id = $1))",
        )
        .bind(viewer)
        .bind(users)
        .fetch_one(&self.pool)
        .await
    }

    async fn by_usernames(&self, names: &[String]) -> Result<Vec<Option<(i64, String)>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // `lower(u.username)` is the unique index's expression: one index probe per name.
        let rows: Vec<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT u.id, u.username
               FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ord)
               LEFT JOIN users u ON lower(u.username) = lower(n.name)
              ORDER BY n.ord",
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, name)| id.zip(name)).collect())
    }
}
