//! Posts, likes and durable feed reads on PostgreSQL.

use super::PgStore;
use crate::storage::{
    feed::{FanoutKind, FeedStore, PostInsert, PostRow},
    Result,
};
use sqlx::PgConnection;

/// Records fanout work for a post inside the caller's transaction; returns the job's id.
async fn insert_fanout_job(
    tx: &mut PgConnection,
    kind: FanoutKind,
    post: &PostRow,
    now: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO fanout_outbox (kind, post_id, author_id, created_at, enqueued_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(kind.as_str())
    .bind(post.id)
    .bind(post.author_id)
    .bind(post.created_at)
    .bind(now)
    .fetch_one(tx)
    .await
}

#[async_trait::async_trait]
impl FeedStore for PgStore {
    async fn insert_post(
        &self,
        post: &PostRow,
        media: &[i64],
        idempotency_key: Option<&str>,
        now: i64,
    ) -> Result<PostInsert> {
        let mut tx = self.pool.begin().await?;
        // A unique violation would abort the transaction, so a used key inserts nothing
        // instead (after waiting for a concurrent insert of the same key to commit or roll
        // back); the caller then reads the first post.
        let inserted = sqlx::query(
            "INSERT INTO posts (id, author_id, content, created_at, idempotency_key, media)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (author_id, idempotency_key) WHERE idempotency_key IS NOT NULL
             DO NOTHING",
        )
        .bind(post.id)
        .bind(post.author_id)
        .bind(&post.content)
        .bind(post.created_at)
        .bind(idempotency_key)
        .bind(&post.media)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Dropping the transaction rolls it back (it wrote nothing).
            return Ok(PostInsert::KeyUsed);
        }
        if !media.is_empty() {
            // A concurrent claim of the same rows waits for this one's commit, then finds
            // them taken.
            let claimed = sqlx::query(
                "UPDATE media SET post_id = $1
                  WHERE owner_id = $2 AND post_id IS NULL AND message_key IS NULL
                    AND id = ANY($3)",
            )
            .bind(post.id)
            .bind(post.author_id)
            .bind(media)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed != media.len() as u64 {
                return Ok(PostInsert::MediaTaken);
            }
        }
        let job = insert_fanout_job(&mut tx, FanoutKind::Publish, post, now).await?;
        tx.commit().await?;
        Ok(PostInsert::Stored { job })
    }

    async fn delete_post(&self, post: &PostRow, now: i64) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM posts WHERE id = $1")
            .bind(post.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        let job = insert_fanout_job(&mut tx, FanoutKind::Delete, post, now).await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    async fn post_by_idempotency_key(&self, author: i64, key: &str) -> Result<Option<PostRow>> {
        sqlx::query_as(
            "SELECT id, author_id, content, created_at, media FROM posts
             WHERE author_id = $1 AND idempotency_key = $2",
        )
        .bind(author)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
    }

    async fn post_by_id(&self, id: i64) -> Result<Option<PostRow>> {
        sqlx::query_as("SELECT id, author_id, content, created_at, media FROM posts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    async fn posts_by_ids(&self, ids: &[i64]) -> Result<Vec<PostRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(
            "SELECT id, author_id, content, created_at, media FROM posts WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }

    async fn author_post_ids(&self, author: i64, below: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT id FROM posts WHERE author_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(author)
        .bind(below)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn feed_post_ids(&self, user: i64, below: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT id FROM posts
             WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1
                                 UNION ALL SELECT $1)
               AND id < $2
             ORDER BY id DESC LIMIT $3",
        )
        .bind(user)
        .bind(below)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn insert_like(&self, post: i64, user: i64, now: i64) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO likes (post_id, user_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(post)
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn delete_like(&self, post: i64, user: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM likes WHERE post_id = $1 AND user_id = $2")
                .bind(post)
                .bind(user)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn like_counts(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(
            "SELECT post_id, COUNT(*) FROM likes WHERE post_id = ANY($1) GROUP BY post_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }

    async fn liked_post_ids(&self, user: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT post_id FROM likes WHERE user_id = $1 ORDER BY post_id DESC LIMIT $2",
        )
        .bind(user)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn liked_by(&self, user: i64, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT post_id FROM likes WHERE user_id = $1 AND post_id = ANY($2)")
            .bind(user)
            .bind(ids)
            .fetch_all(&self.pool)
            .await
    }
}
