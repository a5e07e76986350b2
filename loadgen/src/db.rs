//! The tool's own connection to the server's database, SQLite or PostgreSQL (the URL's
//! scheme picks, as in the server): [`Db`] opens it the way each engine wants, [`Batch`]
//! writes the seeders' multi-row inserts, and the probes read what the scenarios wait for
//! (outbox depth, the newest message). The admin functions at the end create and drop the
//! scratch databases of PostgreSQL runs.
//!
//! No `sqlx::Any`: each arm uses its engine's own pool, types and placeholders, which
//! `QueryBuilder<Sqlite>` and `QueryBuilder<Postgres>` write for us.

use crate::{error::Error, posting::Stage};
use sqlx::{
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
    Connection as _, Database, Encode, Postgres, QueryBuilder, Sqlite, Transaction, Type,
};
use std::{future::Future, str::FromStr as _, time::Duration};

/// Rows per multi-row INSERT: 1,000 × 6 columns stays far below SQLite's 32,766 variables
/// (PostgreSQL allows 65,535).
pub const ROWS_PER_INSERT: usize = 1_000;
/// Longest wait for an admin statement (connect, create, drop) before giving up on it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A pool on the server's database.
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// The seeding writer: one connection, since seeding is one transaction at a time.
    pub async fn writer(url: &str) -> Result<Self, Error> {
        if is_postgres(url) {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(PgConnectOptions::from_str(url)?)
                .await?;
            return Ok(Self::Postgres(pool));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::from_str(url)?
                    .foreign_keys(true)
                    // The server may hold the write lock for a fanout batch; wait, don't fail.
                    .busy_timeout(Duration::from_secs(30)),
            )
            .await?;
        Ok(Self::Sqlite(pool))
    }

    /// A read-only connection for polling. It skips sqlx's ping-before-use, which would
    /// double the cost of every 1 ms poll.
    pub async fn probe(url: &str) -> Result<Self, Error> {
        if is_postgres(url) {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect_with(
                    PgConnectOptions::from_str(url)?
                        .options([("default_transaction_read_only", "on")]),
                )
                .await?;
            return Ok(Self::Postgres(pool));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(SqliteConnectOptions::from_str(url)?.read_only(true))
            .await?;
        Ok(Self::Sqlite(pool))
    }

    /// Starts a run of seeding inserts. On SQLite it is one transaction: every commit
    /// syncs, and the server's readers see nothing until the end. On PostgreSQL each
    /// statement commits on its own: a trigger updates the followee's `user_stats` row for
    /// every follow, and within one transaction each update walks every version of the row
    /// the transaction left behind, so the celebrity's 100,000 follows would take time
    /// quadratic in their number; committed versions are pruned as the next ones are made.
    pub async fn batch(&self) -> Result<Batch<'_>, Error> {
        Ok(match self {
            Self::Sqlite(pool) => Batch::Sqlite(pool.begin().await?),
            Self::Postgres(pool) => Batch::Postgres(pool),
        })
    }

    /// After seeding: on PostgreSQL, `VACUUM (ANALYZE)`. Autovacuum would do the same a
    /// minute or so after the bulk insert (statistics for the planner, the visibility map
    /// for index-only scans), that is, in the middle of a measurement. SQLite keeps no
    /// statistics by itself, so its database is left as the server would find it.
    pub async fn settle(&self) -> Result<(), Error> {
        if let Self::Postgres(pool) = self {
            // The simple protocol: VACUUM may not run inside a transaction block.
            sqlx::raw_sql("VACUUM (ANALYZE)").execute(pool).await?;
        }
        Ok(())
    }

    /// Jobs left in the outboxes of `stage` (both engines answer the same SQL).
    pub async fn pending_jobs(&self, stage: Stage) -> Result<i64, Error> {
        let sql = stage.query();
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?,
            Self::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?,
        })
    }

    /// The newest message id committed (0 before the first message).
    pub async fn newest_message_id(&self) -> Result<i64, Error> {
        Ok(match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(id), 0) FROM messages")
                    .fetch_one(pool)
                    .await?
            }
            // `messages` has no index on `id` alone there; the stream's one row holds it.
            Self::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>("SELECT last_id FROM message_stream")
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// Closes the pool's connections (before the server is stopped, or the database dropped).
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// Inserts in progress (see [`Db::batch`]); [`Batch::commit`] ends them.
pub enum Batch<'a> {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(&'a PgPool),
}

impl Batch<'_> {
    /// Inserts `rows`, [`ROWS_PER_INSERT`] to a statement. Nothing here inserts messages:
    /// whatever does must raise `message_stream.last_id` on PostgreSQL (see its schema).
    pub async fn insert<const N: usize>(&mut self, rows: &Rows<N>) -> Result<(), Error> {
        for chunk in rows.rows.chunks(ROWS_PER_INSERT) {
            match self {
                Self::Sqlite(tx) => {
                    let mut query: QueryBuilder<Sqlite> = values(rows.head, chunk);
                    query.build().execute(&mut **tx).await?;
                }
                Self::Postgres(pool) => {
                    let mut query: QueryBuilder<Postgres> = values(rows.head, chunk);
                    query.build().execute(*pool).await?;
                }
            }
        }
        Ok(())
    }

    /// Commits the SQLite transaction; PostgreSQL's statements are committed already.
    pub async fn commit(self) -> Result<(), Error> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(_) => {}
        }
        Ok(())
    }
}

/// One value of a seeded row, of a type both engines bind (BIGINT, TEXT, BLOB/BYTEA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    /// A TEXT column that may be NULL.
    NullableText(Option<String>),
}

/// Rows of one table for [`Batch::insert`], `N` values each.
#[derive(Debug)]
pub struct Rows<const N: usize> {
    /// `INSERT INTO table (c1, …, cN) `; the `VALUES` follow.
    head: &'static str,
    rows: Vec<[Value; N]>,
}

impl<const N: usize> Rows<N> {
    /// The rows of `INSERT INTO table (c1, …, cN) ` (`head`, with its trailing space).
    pub fn new(head: &'static str, rows: impl IntoIterator<Item = [Value; N]>) -> Self {
        Self {
            head,
            rows: rows.into_iter().collect(),
        }
    }
}

/// `head VALUES (…), (…), …` with every value bound, in `DB`'s own placeholders.
fn values<'args, DB, const N: usize>(head: &str, rows: &[[Value; N]]) -> QueryBuilder<'args, DB>
where
    DB: Database,
    i64: Encode<'args, DB> + Type<DB>,
    String: Encode<'args, DB> + Type<DB>,
    Vec<u8>: Encode<'args, DB> + Type<DB>,
    Option<String>: Encode<'args, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(head);
    query.push_values(rows, |mut row, row_values| {
        for value in row_values {
            match value {
                Value::Int(n) => row.push_bind(*n),
                Value::Text(s) => row.push_bind(s.clone()),
                Value::Bytes(b) => row.push_bind(b.clone()),
                Value::NullableText(s) => row.push_bind(s.clone()),
            };
        }
    });
    query
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// `admin_url` with its database replaced by `database` (user, host, port and parameters
/// kept): what the server under test and the seeders connect to.
pub fn database_url(admin_url: &str, database: &str) -> Result<String, Error> {
    let (scheme, rest) = admin_url
        .split_once("://")
        .ok_or_else(|| Error::Usage(format!("{admin_url:?} is not a postgres:// URL")))?;
    let (location, params) = match rest.split_once('?') {
        Some((location, params)) => (location, Some(params)),
        None => (rest, None),
    };
    let authority = location.split_once('/').map_or(location, |(a, _)| a);
    let mut url = format!("{scheme}://{authority}/{database}");
    if let Some(params) = params {
        url.push('?');
        url.push_str(params);
    }
    Ok(url)
}

/// "PostgreSQL 16.4 with fsync on": the server behind `admin_url`, for the reports; an error
/// when it does not answer.
pub async fn describe_postgres(admin_url: &str) -> Result<String, Error> {
    admin(async {
        let mut conn = PgConnection::connect(admin_url).await?;
        let (version, fsync) = sqlx::query_as::<_, (String, String)>(
            "SELECT current_setting('server_version'), current_setting('fsync')",
        )
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        Ok::<_, Error>(format!("PostgreSQL {version} with fsync {fsync}"))
    })
    .await
}

/// Creates the database `name` (a plain lower-case identifier) on `admin_url`'s server.
pub async fn create_database(admin_url: &str, name: &str) -> Result<(), Error> {
    admin_statement(admin_url, &format!("CREATE DATABASE \"{name}\"")).await
}

/// Drops the database `name`, disconnecting whoever is still connected to it.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), Error> {
    admin_statement(
        admin_url,
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    )
    .await
}

async fn admin_statement(admin_url: &str, sql: &str) -> Result<(), Error> {
    admin(async {
        let mut conn = PgConnection::connect(admin_url).await?;
        // The simple protocol: CREATE and DROP DATABASE may not run in a transaction block.
        sqlx::raw_sql(sql).execute(&mut conn).await?;
        conn.close().await?;
        Ok::<_, Error>(())
    })
    .await
}

/// `work`, or an error once it has taken [`ADMIN_TIMEOUT`] (a server that accepts the
/// connection and never answers would otherwise hold the run forever).
async fn admin<T>(work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(ADMIN_TIMEOUT, work)
        .await
        .map_err(|_| {
            Error::Run(format!(
                "PostgreSQL did not answer within {ADMIN_TIMEOUT:?}"
            ))
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> [[Value; 3]; 2] {
        [
            [
                Value::Int(1),
                Value::Text("a".into()),
                Value::NullableText(None),
            ],
            [
                Value::Int(2),
                Value::Bytes(vec![0, 1]),
                Value::NullableText(Some("2:3".into())),
            ],
        ]
    }

    #[test]
    fn each_engine_gets_its_own_placeholders() {
        let head = "INSERT INTO t (a, b, c) ";
        let sqlite: QueryBuilder<Sqlite> = values(head, &rows()[..]);
        assert_eq!(
            sqlite.sql(),
            "INSERT INTO t (a, b, c) VALUES (?, ?, ?), (?, ?, ?)"
        );
        let postgres: QueryBuilder<Postgres> = values(head, &rows()[..]);
        assert_eq!(
            postgres.sql(),
            "INSERT INTO t (a, b, c) VALUES ($1, $2, $3), ($4, $5, $6)"
        );
    }

    #[test]
    fn the_scratch_url_keeps_everything_but_the_database() {
        let url = |admin| database_url(admin, "kith_load_ab").unwrap();
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/kith_load_ab"
        );
        assert_eq!(
            url("postgresql://u:p@db:5433"),
            "postgresql://u:p@db:5433/kith_load_ab"
        );
        assert_eq!(
            url("postgres://u@db/admin?sslmode=disable"),
            "postgres://u@db/kith_load_ab?sslmode=disable"
        );
        assert!(database_url("127.0.0.1:5432", "x").is_err());
    }

    #[test]
    fn the_scheme_picks_the_engine() {
        assert!(is_postgres("postgres://postgres@127.0.0.1:5432/kith"));
        assert!(is_postgres("postgresql://postgres@127.0.0.1/kith"));
        assert!(!is_postgres("sqlite:///tmp/kith.db"));
    }
}
