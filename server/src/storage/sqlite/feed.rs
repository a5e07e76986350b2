//! SQL of the news feed: posts (stored with their fanout jobs), likes, feed rebuilds.

use super::{push_in_list, SqliteStore};
use crate::storage::{
    feed::{FanoutKind, PostInsert, PostRow},
    is_unique_violation, FeedStore, Result,
};
use sqlx::{QueryBuilder, SqliteConnection};

/// Records fanout work for a post, in the caller's transaction; returns the job id.
async fn insert_outbox(
    conn: &mut SqliteConnection,
    kind: FanoutKind,
    post_id: i64,
    author_id: i64,
    created_at: i64,
    now: i64,
) -> Result<i64> {
    let id = sqlx::query(
        "INSERT INTO fanout_outbox (kind, post_id, author_id, created_at, enqueued_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(kind.as_str())
    .bind(post_id)
    .bind(author_id)
    .bind(created_at)
    .bind(now)
    .execute(conn)
    .await?
    .last_insert_rowid();
    Ok(id)
}

#[async_trait::async_trait]
impl FeedStore for SqliteStore {
    async fn insert_post(
        &self,
        post: &PostRow,
        media: &[i64],
        idempotency_key: Option<&str>,
        now: i64,
    ) -> Result<PostInsert> {
        let mut tx = self.writes.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO posts (id, author_id, content, created_at, idempotency_key, media) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(post.id)
        .bind(post.author_id)
        .bind(&post.content)
        .bind(post.created_at)
        .bind(idempotency_key)
        .bind(&post.media)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // A concurrent retry with the same key won the race: nothing is stored (the
            // transaction rolls back as it drops), the caller answers with that post.
            Err(e) if is_unique_violation(&e) => return Ok(PostInsert::KeyUsed),
            Err(e) => return Err(e),
        }
        if !media.is_empty() {
            let mut q = QueryBuilder::new("UPDATE media SET post_id = ");
            q.push_bind(post.id);
            q.push(" WHERE owner_id = ");
            q.push_bind(post.author_id);
            q.push(" AND post_id IS NULL AND message_key IS NULL AND id IN ");
            push_in_list(&mut q, media);
            if q.build().execute(&mut *tx).await?.rows_affected() != media.len() as u64 {
                return Ok(PostInsert::MediaTaken);
            }
        }
        let job = insert_outbox(
            &mut tx,
            FanoutKind::Publish,
            post.id,
            post.author_id,
            post.created_at,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(PostInsert::Stored { job })
    }

    async fn delete_post(&self, post: &PostRow, now: i64) -> Result<Option<i64>> {
        let mut tx = self.writes.begin().await?;
        // Its likes cascade.
        let deleted = sqlx::query("DELETE FROM posts WHERE id = ?")
            .bind(post.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if !deleted {
            return Ok(None);
        }
        let job = insert_outbox(
            &mut tx,
            FanoutKind::Delete,
            post.id,
            post.author_id,
            post.created_at,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    async fn post_by_idempotency_key(&self, author: i64, key: &str) -> Result<Option<PostRow>> {
        sqlx::query_as(
            "SELECT id, author_id, content, created_at, media FROM posts WHERE author_id = ? AND idempotency_key = ?",
        )
        .bind(author)
        .bind(key)
        .fetch_optional(&self.reads)
        .await
    }

    async fn post_by_id(&self, id: i64) -> Result<Option<PostRow>> {
        sqlx::query_as("SELECT id, author_id, content, created_at, media FROM posts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reads)
            .await
    }

    async fn posts_by_ids(&self, ids: &[i64]) -> Result<Vec<PostRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new(
            "SELECT id, author_id, content, created_at, media FROM posts WHERE id IN ",
        );
        push_in_list(&mut q, ids);
        q.build_query_as::<PostRow>().fetch_all(&self.reads).await
    }

    async fn author_post_ids(&self, author: i64, below: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT id FROM posts WHERE author_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(author)
        .bind(below)
        .bind(limit)
        .fetch_all(&self.reads)
        .await
    }

    /// Used to rebuild a cold feed cache and to page past the cache's newest ~800 ids.
    async fn feed_post_ids(&self, user: i64, below: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT id FROM posts
             WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1 UNION ALL SELECT ?1)
               AND id < ?2
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(user)
        .bind(below)
        .bind(limit)
        .fetch_all(&self.reads)
        .await
    }

    async fn insert_like(&self, post: i64, user: i64, now: i64) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT OR IGNORE INTO likes (post_id, user_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(post)
        .bind(user)
        .bind(now)
        .execute(&self.writes)
        .await?
        .rows_affected()
            > 0)
    }

    async fn delete_like(&self, post: i64, user: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM likes WHERE post_id = ? AND user_id = ?")
                .bind(post)
                .bind(user)
                .execute(&self.writes)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn like_counts(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new("SELECT post_id, COUNT(*) FROM likes WHERE post_id IN ");
        push_in_list(&mut q, ids);
        q.push(" GROUP BY post_id");
        q.build_query_as::<(i64, i64)>()
            .fetch_all(&self.reads)
            .await
    }

    /// Reads the index on likes by user.
    async fn liked_post_ids(&self, user: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT post_id FROM likes WHERE user_id = ? ORDER BY post_id DESC LIMIT ?",
        )
        .bind(user)
        .bind(limit)
        .fetch_all(&self.reads)
        .await
    }

    async fn liked_by(&self, user: i64, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new("SELECT post_id FROM likes WHERE user_id = ");
        q.push_bind(user);
        q.push(" AND post_id IN ");
        push_in_list(&mut q, ids);
        q.build_query_scalar::<i64>().fetch_all(&self.reads).await
    }
}
