//! The files of uploaded images, behind one small interface: a local directory (one
//! machine, `KITH_MEDIA_DIR`) or a table of the shared PostgreSQL database (a cluster,
//! whose nodes share no disk). Files are named by the SHA-256 of their bytes, so a name
//! always means the same bytes: writing one twice is harmless, and readers may cache it
//! forever.

use bytes::Bytes;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt as _;

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
    /// The store in `dir`, created if missing; files a crash left half written go.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".part") {
                std::fs::remove_file(dir.join(name.as_ref()))?;
            }
        }
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
        // Written whole under a temporary name, synced, then renamed, and the rename
        // synced: a reader never sees half a file, and once this returns (before the row
        // naming the file commits) the file survives a power loss. A crash leaves at most
        // a temporary file, which `open` removes.
        let temporary = self
            .dir
            .join(format!(".{name}.{:016x}.part", rand::random::<u64>()));
        let written = async {
            let mut file = tokio::fs::File::create(&temporary).await?;
            file.write_all(&data).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temporary, &path).await?;
            tokio::fs::File::open(&self.dir).await?.sync_all().await
        }
        .await;
        if let Err(e) = written {
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

#[cfg(test)]
mod tests {
    use super::{BlobStore, DirBlobs};
    use bytes::Bytes;

    #[tokio::test]
    async fn files_round_trip_and_half_written_ones_go_at_open() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join(".a.jpg.0123.part"), b"half")?;
        let blobs = DirBlobs::open(dir.path())?;
        assert!(!dir.path().join(".a.jpg.0123.part").exists());

        blobs.put("a.jpg", Bytes::from_static(b"bytes")).await?;
        blobs.put("a.jpg", Bytes::from_static(b"bytes")).await?;
        assert_eq!(
            blobs.get("a.jpg").await?,
            Some(Bytes::from_static(b"bytes"))
        );
        blobs.delete("a.jpg").await?;
        blobs.delete("a.jpg").await?;
        assert_eq!(blobs.get("a.jpg").await?, None);
        let left: Vec<_> = std::fs::read_dir(dir.path())?.collect();
        assert!(left.is_empty(), "{left:?}");
        Ok(())
    }
}
