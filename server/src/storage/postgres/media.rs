//! Uploaded images on PostgreSQL (see [`MediaStore`]).

use super::PgStore;
use crate::storage::{
    media::{MediaRow, MediaStore, MEDIA_COLUMNS},
    Result,
};
use sqlx::PgConnection;

/// Of the deleted rows' files, those no `media` row names any more, in the caller's
/// transaction.
async fn unnamed(conn: &mut PgConnection, rows: Vec<(String, String)>) -> Result<Vec<String>> {
    let mut files: Vec<String> = rows.into_iter().flat_map(|(f, t)| [f, t]).collect();
    files.sort_unstable();
    files.dedup();
    if files.is_empty() {
        return Ok(files);
    }
    sqlx::query_scalar(
        "SELECT f FROM unnest($1::text[]) AS f
          WHERE NOT EXISTS (SELECT 1 FROM media m WHERE m.file = f)
            AND NOT EXISTS (SELECT 1 FROM media m WHERE m.thumbnail = f)",
    )
    .bind(&files)
    .fetch_all(conn)
    .await
}

impl PgStore {
    /// Runs `sql`, a `DELETE` of `media` rows `RETURNING file, thumbnail` bound to `first`
    /// (and `second`), and returns the files no row names any more, in one transaction.
    async fn delete_rows(
        &self,
        sql: &str,
        first: i64,
        second: Option<&str>,
    ) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query_as(sql).bind(first);
        if let Some(second) = second {
            query = query.bind(second);
        }
        let rows: Vec<(String, String)> = query.fetch_all(&mut *tx).await?;
        let gone = unnamed(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(gone)
    }
}

#[async_trait::async_trait]
impl MediaStore for PgStore {
    async fn insert_media(&self, row: &MediaRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO media ({MEDIA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(row.id)
        .bind(row.owner_id)
        .bind(&row.file)
        .bind(&row.thumbnail)
        .bind(&row.content_type)
        .bind(row.width)
        .bind(row.height)
        .bind(row.bytes)
        .bind(&row.alt)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn attachable(
        &self,
        owner: i64,
        ids: &[i64],
        message_key: Option<&str>,
    ) -> Result<Vec<MediaRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(&format!(
            "SELECT {MEDIA_COLUMNS} FROM media
              WHERE owner_id = $1 AND post_id IS NULL
                AND (message_key IS NULL OR message_key = $2) AND id = ANY($3)"
        ))
        .bind(owner)
        .bind(message_key)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }

    async fn claim_for_message(&self, owner: i64, ids: &[i64], message_key: &str) -> Result<bool> {
        if ids.is_empty() {
            return Ok(true);
        }
        let mut tx = self.pool.begin().await?;
        // A concurrent claim of the same rows waits for this one's commit, then finds
        // them taken (READ COMMITTED re-checks the condition on the newest row version).
        let claimed = sqlx::query(
            "UPDATE media SET message_key = $1
              WHERE owner_id = $2 AND post_id IS NULL
                AND (message_key IS NULL OR message_key = $1) AND id = ANY($3)",
        )
        .bind(message_key)
        .bind(owner)
        .bind(ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed != ids.len() as u64 {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn unclaim(&self, owner: i64, message_key: &str) -> Result<()> {
        sqlx::query(
            "UPDATE media SET message_key = NULL
              WHERE owner_id = $1 AND message_key = $2
                AND NOT EXISTS (SELECT 1 FROM messages x
                                 WHERE x.sender_id = $1 AND x.client_msg_id = $2)",
        )
        .bind(owner)
        .bind(message_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_post(&self, post: i64) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media WHERE post_id = $1 RETURNING file, thumbnail",
            post,
            None,
        )
        .await
    }

    async fn release_message(&self, owner: i64, message_key: &str) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media WHERE owner_id = $1 AND message_key = $2
             RETURNING file, thumbnail",
            owner,
            Some(message_key),
        )
        .await
    }

    async fn release_owner(&self, owner: i64) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media WHERE owner_id = $1 AND message_key IS NULL
             RETURNING file, thumbnail",
            owner,
            None,
        )
        .await
    }

    async fn collect(&self, before: i64) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media AS d
              WHERE d.created_at < $1
                AND CASE
                    WHEN d.post_id IS NOT NULL THEN
                        NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = d.post_id)
                    WHEN d.message_key IS NOT NULL THEN
                        NOT EXISTS (SELECT 1 FROM messages x
                                     WHERE x.sender_id = d.owner_id
                                       AND x.client_msg_id = d.message_key
                                       AND x.deleted_at IS NULL)
                    ELSE TRUE
                END
             RETURNING file, thumbnail",
            before,
            None,
        )
        .await
    }

    async fn set_alt(&self, owner: i64, id: i64, alt: &str) -> Result<Option<MediaRow>> {
        sqlx::query_as(&format!(
            "UPDATE media SET alt = $1 WHERE id = $2 AND owner_id = $3
                AND post_id IS NULL AND message_key IS NULL
             RETURNING {MEDIA_COLUMNS}"
        ))
        .bind(alt)
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
    }

    async fn is_owner(&self, owner: i64, id: i64) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM media WHERE id = $1 AND owner_id = $2)")
            .bind(id)
            .bind(owner)
            .fetch_one(&self.pool)
            .await
    }
}
