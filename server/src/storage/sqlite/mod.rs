//! The SQLite store: one database file in WAL mode, a read pool and a one-connection write
//! pool on it, the migrations of `server/migrations/sqlite/` applied at start.
//!
//! Durability: `synchronous = FULL` by default, so a transaction acknowledged to a client
//! (a 201, an `ack` frame) survives a power loss, at the price of an fsync per commit.
//! `KITH_SQLITE_SYNCHRONOUS=NORMAL` trades that for speed: in WAL mode a crash of the
//! process still loses nothing, but a power loss may drop the last commits (never corrupts).
//!
//! # Layout
//! * this module: [`SqliteStore`], its connection setup and its [`Health`];
//! * `backup`: copies of the database taken while it serves, and their restoration;
//! * `checkpoint`: the checkpointer, which folds the write-ahead log back into the database
//!   file beside the writers;
//! * `accounts`, `graph`, `feed`, `chat`, `notifications`, `presence`, `outbox`: one
//!   storage trait each;
//! * `writer`: the SQL of the chat group commit ([`super::ChatStore::commit_messages`]).

mod accounts;
pub mod backup;
mod chat;
mod checkpoint;
mod feed;
mod graph;
mod media;
mod notifications;
mod outbox;
mod presence;
mod writer;

use super::{ConnectError, Health, Result, SqliteSync};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    QueryBuilder, Sqlite, SqlitePool,
};
use std::{str::FromStr, time::Duration};

/// Most page cache each read connection keeps, in KiB. A reader's cache serves little
/// beyond its current query: SQLite empties it whenever another connection has written
/// since the reader's last transaction, which under chat traffic is nearly every time. At
/// SQLite's default (2,000 KiB each) the eight readers' caches grew as the database did,
/// and the node's memory with them through a 30-minute soak; pages a reader lets go stay
/// in the kernel's page cache, a `pread` away.
const READ_CACHE_KIB: u32 = 256;

/// The node's two pools on one database file.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads (any number at once, beside the writer, as WAL allows).
    reads: SqlitePool,
    /// Writes: one connection, so this node's write transactions queue for it in order
    /// instead of racing for SQLite's write lock. Connections that lose that race are
    /// retried by SQLite's busy handler, which sleeps 1, 2, 5, 10 … 100 ms between
    /// attempts: with posts, notification batches and outbox updates all writing, a post
    /// waited up to a third of a second that way. (Other processes on the same file still
    /// meet that handler; `busy_timeout` bounds it.) Never take a second write connection
    /// while holding this one: it would wait for itself.
    writes: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, applies pending migrations, and
    /// returns the store on its read and write pools.
    pub async fn connect(url: &str, synchronous: SqliteSync) -> Result<Self, ConnectError> {
        let synchronous = match synchronous {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            // Writers queue inside SQLite for up to 5 s instead of failing with SQLITE_BUSY.
            .busy_timeout(Duration::from_secs(5))
            // No checkpoint inside a commit: by default the commit that takes the log past
            // 1,000 pages copies it into the database file and syncs it, and every message
            // waiting on that commit waits for the copy (the 1:1 chat tail). The
            // checkpointer (`checkpoint::spawn_checkpointer`) does it beside the writers
            // instead.
            .pragma("wal_autocheckpoint", "0")
            // Temporary files (statement journals, sorts) in memory: a statement journal on
            // disk took a system call and a page copy for every page the statement changed.
            .pragma("temp_store", "MEMORY");
        // No `journal_size_limit`: cutting a log that a burst made large back to the limit
        // is done by the next writer when it restarts the log, inside its commit, and the
        // kernel took ~0.3 s to drop a few hundred MB of a file's pages (every write of the
        // node waited). The file keeps its largest size instead and is reused from its start.
        let pool = |size: u32| {
            SqlitePoolOptions::new()
                .max_connections(size)
                // Every connection opens with the pool: a connection opened later, under a
                // burst, added its page cache (and its worker thread) to the node's memory
                // in the middle of a run, where it then stayed.
                .min_connections(size)
                .acquire_timeout(Duration::from_secs(10))
                // A local file cannot drop the connection; pinging it on every acquire costs
                // two thread hops per query for nothing.
                .test_before_acquire(false)
                // Connections stay open for the node's life: a local file has no server to
                // time them out, and each reopened connection starts with a cold page cache
                // (and its prepared statements compiled again).
                .idle_timeout(None)
                .max_lifetime(None)
        };
        // Nodes started together on one file would each find the migrations missing and
        // each apply them (SQLite has no lock sqlx's migrator could take), and switching a
        // new file to WAL or truncating its log meets the other nodes' locks: they take
        // turns on a lock file beside the database, from here to the end of the set-up.
        let turn = migration_turn(options.get_filename()).await?;
        let writes = pool(1).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&writes).await?;
        // A migration that rewrote a table (as `20261127000009` does `messages`) leaves a
        // log the size of that table, and the log file keeps its largest size: fold it into
        // the database and cut it back before the node starts. (With another node busy on
        // the same file this gives up after `busy_timeout` and leaves the log as it is.)
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&writes)
            .await?;
        // Each read connection caches at most `READ_CACHE_KIB` of pages; the write
        // connection keeps SQLite's default (2,000 KiB), where the pages a batch of
        // messages changes stay hot.
        let reads = pool(8)
            .connect_with(options.pragma("cache_size", format!("-{READ_CACHE_KIB}")))
            .await?;
        drop(turn);
        Ok(Self { reads, writes })
    }

    /// The read pool (tests inspect the database through it).
    pub fn reads(&self) -> &SqlitePool {
        &self.reads
    }

    /// The write pool: its one connection is every write of this node (tests use it to
    /// leave rows as a crash would).
    pub fn writes(&self) -> &SqlitePool {
        &self.writes
    }
}

#[async_trait::async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        Ok(())
    }

    fn spawn_upkeep(&self) {
        checkpoint::spawn_checkpointer(self.reads.clone(), self.writes.clone());
    }
}

/// An exclusive lock on `{database}.migrating` (none for an in-memory database), taken on
/// the blocking pool; released when dropped.
async fn migration_turn(database: &std::path::Path) -> Result<Option<std::fs::File>> {
    if database.as_os_str().is_empty() || database == std::path::Path::new(":memory:") {
        return Ok(None);
    }
    let mut path = database.as_os_str().to_owned();
    path.push(".migrating");
    let lock = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))??;
    Ok(Some(lock))
}

/// Decodes an id list that SQL built with `json_group_array`. Lists come back as one
/// JSON value because sqlx passes every result row between threads one at a time: a
/// hundred ids as one row cost a hundredth of a hundred rows.
pub(crate) fn id_list(json: &str) -> Result<Vec<i64>> {
    serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Appends the list `ids` for an `IN` to `q`, as one parameter: `(SELECT value FROM
/// json_each(?))` bound to the ids as a JSON array. The statement's text is then the same
/// whatever the list's length, so each connection prepares it once. (A placeholder per id
/// made a statement per length, and every connection kept each one it met in its statement
/// cache: the node's memory grew for as long as new lengths came along.) SQLite still looks
/// every id up in the index, as it did for the placeholders.
fn push_in_list(q: &mut QueryBuilder<'_, Sqlite>, ids: &[i64]) {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    q.push("(SELECT value FROM json_each(");
    q.push_bind(format!("[{list}]"));
    q.push("))");
}
