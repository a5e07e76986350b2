//! The durable store, behind one small interface per feature.
//!
//! Services and routes call `state.store.<feature>.<method>(…)` and never name a database
//! driver: the same binary runs on SQLite (one machine) or PostgreSQL (a cluster), chosen
//! at start by the scheme of `KITH_DATABASE_URL`. Every method is one atomic unit: where
//! a feature needs several writes to land together ("store a post and its fanout job",
//! "commit a batch of chat messages"), that is one method and one transaction.
//!
//! # Layout
//! * `accounts`, `graph`, `feed`, `chat`, `media`, `notifications`, `presence`, `outbox`:
//!   the interfaces (traits) and the rows they exchange.
//! * `blobs`: where the files of uploaded images are kept: a local directory, or the
//!   PostgreSQL database (`postgres/blobs.rs`) for a cluster.
//! * `sqlite/`: SQLite in WAL mode: a read pool, one write connection, the checkpointer;
//!   migrations in `server/migrations/sqlite/`.
//! * `postgres/`: PostgreSQL 14 or newer; migrations in `server/migrations/postgres/`.
//!
//! Errors are `sqlx::Error` (the driver-neutral error type): the HTTP layer turns them into
//! an opaque 500, or a 503 `unavailable` when the database cannot be reached.

pub mod accounts;
pub mod blobs;
pub mod chat;
pub mod feed;
pub mod graph;
pub mod media;
pub mod notifications;
pub mod outbox;
pub mod postgres;
pub mod presence;
pub mod sqlite;

use std::sync::Arc;

pub use accounts::{AccountStore, UserRow};
pub use blobs::BlobStore;
pub use chat::ChatStore;
pub use feed::FeedStore;
pub use graph::GraphStore;
pub use media::MediaStore;
pub use notifications::NotificationStore;
pub use outbox::OutboxStore;
pub use presence::PresenceStore;

/// What every store method returns.
pub type Result<T, E = sqlx::Error> = std::result::Result<T, E>;

/// The implementation behind a [`Storage`].
#[derive(Clone)]
pub enum Raw {
    Sqlite(Arc<sqlite::SqliteStore>),
    Postgres(Arc<postgres::PgStore>),
}

/// Which database a node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Operations on the store as a whole.
#[async_trait::async_trait]
pub trait Health: Send + Sync {
    /// One round trip to the database (readiness).
    async fn ping(&self) -> Result<()>;
    /// Starts the engine's background upkeep (SQLite's checkpointer); nothing elsewhere.
    fn spawn_upkeep(&self);
}

/// The node's store: one handle per feature, all backed by the same database.
#[derive(Clone)]
pub struct Storage {
    /// The engine itself, for tests and tools that work below the interfaces (seeding,
    /// fault injection); services use the feature handles.
    pub raw: Raw,
    pub accounts: Arc<dyn AccountStore>,
    pub graph: Arc<dyn GraphStore>,
    pub feed: Arc<dyn FeedStore>,
    pub chat: Arc<dyn ChatStore>,
    pub media: Arc<dyn MediaStore>,
    /// The files of uploaded images (a directory, or the database), per
    /// [`Options::media`].
    pub blobs: Arc<dyn BlobStore>,
    pub notifications: Arc<dyn NotificationStore>,
    pub presence: Arc<dyn PresenceStore>,
    pub outbox: Arc<dyn OutboxStore>,
    pub health: Arc<dyn Health>,
}

impl Storage {
    /// Every feature's handle on one implementation.
    fn of<S>(raw: Raw, store: Arc<S>, blobs: Arc<dyn BlobStore>) -> Self
    where
        S: AccountStore
            + GraphStore
            + FeedStore
            + ChatStore
            + MediaStore
            + NotificationStore
            + PresenceStore
            + OutboxStore
            + Health
            + 'static,
    {
        Self {
            raw,
            accounts: store.clone(),
            graph: store.clone(),
            feed: store.clone(),
            chat: store.clone(),
            media: store.clone(),
            blobs,
            notifications: store.clone(),
            presence: store.clone(),
            outbox: store.clone(),
            health: store,
        }
    }

    /// Connects to the database `url` names (`sqlite:` or `postgres:`/`postgresql:`) and
    /// applies its pending migrations.
    pub async fn connect(url: &str, options: &Options) -> Result<Self, ConnectError> {
        match engine_of(url) {
            Some(Engine::Sqlite) => {
                let store =
                    Arc::new(sqlite::SqliteStore::connect(url, options.sqlite_synchronous).await?);
                let blobs: Arc<dyn BlobStore> = match &options.media {
                    MediaFiles::Directory(dir) => Arc::new(blobs::DirBlobs::open(dir)?),
                    MediaFiles::Database => return Err(ConnectError::MediaInDatabase),
                };
                Ok(Self::of(Raw::Sqlite(store.clone()), store, blobs))
            }
            Some(Engine::Postgres) => {
                let store =
                    Arc::new(postgres::PgStore::connect(url, options.postgres_pool_size).await?);
                let blobs: Arc<dyn BlobStore> = match &options.media {
                    MediaFiles::Directory(dir) => Arc::new(blobs::DirBlobs::open(dir)?),
                    MediaFiles::Database => store.clone(),
                };
                Ok(Self::of(Raw::Postgres(store.clone()), store, blobs))
            }
            None => Err(ConnectError::Scheme),
        }
    }
}

/// The engine a database URL names, by its scheme.
pub fn engine_of(url: &str) -> Option<Engine> {
    if url.starts_with("sqlite:") {
        Some(Engine::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Some(Engine::Postgres)
    } else {
        None
    }
}

/// Engine settings from the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub sqlite_synchronous: SqliteSync,
    /// Connections to PostgreSQL per node.
    pub postgres_pool_size: u32,
    /// Where the files of uploaded images go.
    pub media: MediaFiles,
}

/// Where the files of uploaded images are kept (`KITH_MEDIA_STORE`, `KITH_MEDIA_DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFiles {
    /// A local directory: one machine, or nodes that share a mounted one.
    Directory(std::path::PathBuf),
    /// The PostgreSQL database, which every node of a cluster shares.
    Database,
}

/// SQLite's `synchronous` setting (`KITH_SQLITE_SYNCHRONOUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    /// An acknowledged write survives a power loss (an fsync per commit).
    Full,
    /// Faster; a power loss may drop the last commits (a process crash loses nothing).
    Normal,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("KITH_DATABASE_URL must start with sqlite: or postgres:")]
    Scheme,
    #[error(
        "KITH_MEDIA_STORE=database needs PostgreSQL; on SQLite media files go in KITH_MEDIA_DIR"
    )]
    MediaInDatabase,
    #[error("KITH_MEDIA_DIR: {0}")]
    MediaDir(#[from] std::io::Error),
}

/// Current time in Unix milliseconds, the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Converts a stored timestamp for the API.
pub fn to_datetime(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Whether `e` is a UNIQUE constraint violation (mapped to 409 or to idempotent success).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether `e` means the database could not be reached (as opposed to a query it refused):
/// the answer is then 503 `unavailable`, and the pool reconnects by itself.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        // PostgreSQL shutting down or restarting (class 57P: operator intervention), not
        // accepting connections yet (class 08: connection exception), a lock not granted in
        // time (55P03) or a stalled transaction ended (25P03).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("57P") || c.starts_with("08") || c == "55P03" || c == "25P03"
        }),
        _ => false,
    }
}
