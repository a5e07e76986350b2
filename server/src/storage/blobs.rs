//! The files of uploaded images, behind one small interface: a local directory (one
//! machine, `KITH_MEDIA_DIR`) or a table of the shared PostgreSQL database (a cluster,
//! whose nodes share no disk). Files are named by the SHA-256 of their bytes, so a name
//! always means the same bytes: writing one twice is harmless, and readers may cache it
//! forever.

use bytes::Bytes;
use std::path::PathBuf;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("media directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Database(#[from] sqlx::Error),
}

/// Where the files of uploads are kept.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `name` (a no-op if it is there already).
    async fn put(&self, name: &str, data: Bytes) -> Result<(), BlobError>;
    /// The file `name`, if stored.
    async fn get(&self, name: &str) -> Result<Option<Bytes>, BlobError>;
    /// Deletes `name` (a no-op if it is not there).
    async fn delete(&self, name: &str) -> Result<(), BlobError>;
}

/// Files in a local directory.
pub struct DirBlobs {
    dir: PathBuf,
}

impl DirBlobs {
    /// The store in `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
}

#[async_trait::async_trait]
impl BlobStore for DirBlobs {
    async fn put(&self, name: &str, data: Bytes) -> Result<(), BlobError> {
        let path = self.dir.join(name);
        if tokio::fs::try_exists(&path).await? {
            return Ok(());
        }
        // Written whole under a temporary name, then renamed: a reader never sees half a
        // file, and a crash leaves at most a stray temporary file.
        let temporary = self
            .dir
            .join(format!(".{name}.{:016x}.part", rand::random::<u64>()));
        tokio::fs::write(&temporary, &data).await?;
        if let Err(e) = tokio::fs::rename(&temporary, &path).await {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(e.into());
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, BlobError> {
        match tokio::fs::read(self.dir.join(name)).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.dir.join(name)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
