//! Backups of a SQLite database, taken while the node serves, and their restoration.
//!
//! A backup is `VACUUM INTO`: one read transaction, so the copy is the database as of one
//! commit, whatever is written meanwhile (in WAL mode the writers go on beside it). The
//! copy is a complete database file with no write-ahead log of its own. Restoring checks
//! such a file and puts it where the database is to be, which must hold none. PostgreSQL is backed up with its own tools (`pg_dump`, README "Backups").

use sqlx::{sqlite::SqliteConnectOptions, ConnectOptions, Connection};
use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not a SQLite database URL (sqlite://PATH)")]
    NotSqlite(String),
    #[error("{0} exists already; backups and restores never overwrite a file")]
    Exists(PathBuf),
    #[error("{0} is not a Kith database: {1}")]
    NotABackup(PathBuf, String),
    #[error(transparent)]
    Sqlite(#[from] sqlx::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The database file a `sqlite://` URL names.
fn database_path(url: &str) -> Result<PathBuf, BackupError> {
    let options =
        SqliteConnectOptions::from_str(url).map_err(|_| BackupError::NotSqlite(url.to_string()))?;
    Ok(options.get_filename().to_path_buf())
}

/// Writes a consistent copy of the database at `url` to `to` (a new file), while the
/// database may be in use.
pub async fn backup(url: &str, to: &Path) -> Result<(), BackupError> {
    if to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let mut conn = SqliteConnectOptions::from_str(url)
        .map_err(|_| BackupError::NotSqlite(url.to_string()))?
        .create_if_missing(false)
        .read_only(true)
        .connect()
        .await?;
    sqlx::query("VACUUM INTO ?")
        .bind(to.to_string_lossy().as_ref())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Puts the backup `from` in place as the database at `url`, after checking that it is
/// whole and is a Kith database. The database must not exist: a restore never overwrites
/// one (move the old files aside first, with every node stopped), so it cannot clobber a
/// database a node still has open.
pub async fn restore(url: &str, from: &Path) -> Result<(), BackupError> {
    check_backup(from).await?;
    let target = database_path(url)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = target.clone().into_os_string();
        file.push(suffix);
        let file = PathBuf::from(file);
        if file.exists() {
            return Err(BackupError::Exists(file));
        }
    }
    // Copied beside the target, then renamed into place: a restore cut short leaves no
    // half-written database.
    let staged = target.with_extension("restoring");
    std::fs::copy(from, &staged)?;
    std::fs::File::open(&staged)?.sync_all()?;
    std::fs::rename(&staged, &target)?;
    Ok(())
}

/// Opens `path` read-only and checks it: SQLite's integrity check, and Kith's migrations
/// table in it.
async fn check_backup(path: &Path) -> Result<(), BackupError> {
    let not_a_backup = |why: String| BackupError::NotABackup(path.to_path_buf(), why);
    if !path.is_file() {
        return Err(not_a_backup("no such file".into()));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| not_a_backup(e.to_string()))?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| not_a_backup(e.to_string()))?;
    if integrity != "ok" {
        return Err(not_a_backup(integrity));
    }
    let migrated: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .map_err(|_| not_a_backup("it holds no Kith schema".into()))?;
    if migrated == 0 {
        return Err(not_a_backup("it holds no Kith schema".into()));
    }
    conn.close().await?;
    Ok(())
}
