//! SQL of uploaded images (see [`MediaStore`]).

use super::{push_in_list, SqliteStore};
use crate::storage::{
    media::{MediaRow, MediaStore, MEDIA_COLUMNS},
    Result,
};
use sqlx::{QueryBuilder, SqliteConnection};

/// Of the deleted rows' files (image and thumbnail of each), those no `media` row names
/// any more, in the caller's transaction.
async fn unnamed(conn: &mut SqliteConnection, rows: Vec<(String, String)>) -> Result<Vec<String>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let files: Vec<String> = rows.into_iter().flat_map(|(f, t)| [f, t]).collect();
    let list = serde_json::to_string(&files).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query_scalar(
        "SELECT DISTINCT f.value FROM json_each(?1) AS f
          WHERE NOT EXISTS (SELECT 1 FROM media m WHERE m.file = f.value)
            AND NOT EXISTS (SELECT 1 FROM media m WHERE m.thumbnail = f.value)",
    )
    .bind(list)
    .fetch_all(conn)
    .await
}

impl SqliteStore {
    /// Runs `sql`, a `DELETE` of `media` rows `RETURNING file, thumbnail` bound to `first`
    /// (and `second`), and returns the files no row names any more, in one transaction.
    async fn delete_rows(
        &self,
        sql: &str,
        first: i64,
        second: Option<&str>,
    ) -> Result<Vec<String>> {
        let mut tx = self.writes.begin().await?;
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
impl MediaStore for SqliteStore {
    async fn insert_media(&self, row: &MediaRow) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO media ({MEDIA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        .execute(&self.writes)
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
        let mut q = QueryBuilder::new(format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE owner_id = "
        ));
        q.push_bind(owner);
        q.push(" AND post_id IS NULL AND (message_key IS NULL OR message_key = ");
        q.push_bind(message_key);
        q.push(") AND id IN ");
        push_in_list(&mut q, ids);
        q.build_query_as().fetch_all(&self.reads).await
    }

    async fn claim_for_message(&self, owner: i64, ids: &[i64], message_key: &str) -> Result<bool> {
        if ids.is_empty() {
            return Ok(true);
        }
        let mut tx = self.writes.begin().await?;
        let mut q = QueryBuilder::new("UPDATE media SET message_key = ");
        q.push_bind(message_key);
        q.push(" WHERE owner_id = ");
        q.push_bind(owner);
        q.push(" AND post_id IS NULL AND (message_key IS NULL OR message_key = ");
        q.push_bind(message_key);
        q.push(") AND id IN ");
        push_in_list(&mut q, ids);
        let claimed = q.build().execute(&mut *tx).await?.rows_affected();
        if claimed != ids.len() as u64 {
            // Dropping the transaction rolls the partial claim back.
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn unclaim(&self, owner: i64, message_key: &str) -> Result<()> {
        sqlx::query(
            "UPDATE media SET message_key = NULL
              WHERE owner_id = ?1 AND message_key = ?2
                AND NOT EXISTS (SELECT 1 FROM messages x
                                 WHERE x.sender_id = ?1 AND x.client_msg_id = ?2)",
        )
        .bind(owner)
        .bind(message_key)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn release_post(&self, post: i64) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media WHERE post_id = ? RETURNING file, thumbnail",
            post,
            None,
        )
        .await
    }

    async fn release_message(&self, owner: i64, message_key: &str) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media WHERE owner_id = ? AND message_key = ? RETURNING file, thumbnail",
            owner,
            Some(message_key),
        )
        .await
    }

    async fn release_owner(&self, owner: i64) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media WHERE owner_id = ? AND message_key IS NULL
             RETURNING file, thumbnail",
            owner,
            None,
        )
        .await
    }

    async fn collect(&self, before: i64) -> Result<Vec<String>> {
        self.delete_rows(
            "DELETE FROM media AS d
              WHERE d.created_at < ?
                AND CASE
                    WHEN d.post_id IS NOT NULL THEN
                        NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = d.post_id)
                    WHEN d.message_key IS NOT NULL THEN
                        NOT EXISTS (SELECT 1 FROM messages x
                                     WHERE x.sender_id = d.owner_id
                                       AND x.client_msg_id = d.message_key
                                       AND x.deleted_at IS NULL)
                    ELSE 1
                END
             RETURNING file, thumbnail",
            before,
            None,
        )
        .await
    }

    async fn set_alt(&self, owner: i64, id: i64, alt: &str) -> Result<Option<MediaRow>> {
        sqlx::query_as(&format!(
            "UPDATE media SET alt = ? WHERE id = ? AND owner_id = ?
                AND post_id IS NULL AND message_key IS NULL
             RETURNING {MEDIA_COLUMNS}"
        ))
        .bind(alt)
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.writes)
        .await
    }

    async fn is_owner(&self, owner: i64, id: i64) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM media WHERE id = ? AND owner_id = ?)")
            .bind(id)
            .bind(owner)
            .fetch_one(&self.reads)
            .await
    }
}
