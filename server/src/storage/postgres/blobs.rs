//! The files of uploads in the shared database (`media_blobs`), for a cluster whose nodes
//! share no disk: any node serves any file.

use super::PgStore;
use crate::storage::{
    blobs::{BlobError, BlobStore},
    now_ms,
};
use bytes::Bytes;

#[async_trait::async_trait]
impl BlobStore for PgStore {
    async fn put(&self, name: &str, data: Bytes) -> Result<(), BlobError> {
        sqlx::query(
            "INSERT INTO media_blobs (name, data, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(data.as_ref())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, BlobError> {
        let data: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM media_blobs WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(data.map(Bytes::from))
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        sqlx::query("DELETE FROM media_blobs WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
