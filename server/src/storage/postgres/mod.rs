//! The store on PostgreSQL 14 or newer, shared by every node of a cluster.
//!
//! # Layout
//! * this module: [`PgStore`] (the pool, connecting, migrating) and [`Health`];
//! * `accounts`, `graph`, `feed`, `chat`, `notifications`, `presence`, `outbox`: one
//!   `impl` of one storage trait each, as runtime queries (`$1`-style binds);
//! * `writer`: the chat group commit ([`super::ChatStore::commit_messages`]), one call of
//!   the SQL function `commit_messages` per batch on a connection of its own;
//! * the schema: `server/migrations/postgres/`, applied at start (`sqlx` takes an advisory
//!   lock, so nodes starting together migrate one at a time).
//!
//! # Durability
//! Every connection sets `synchronous_commit = on`: a commit returns only once its log
//! record is flushed, so anything acknowledged to a client (a 201, an `ack` frame) survives
//! a crash of the database server, even where the server's default is `off`.
//!
//! # Concurrency
//! Unlike SQLite, PostgreSQL runs write transactions side by side (at READ COMMITTED), so
//! what SQLite got from its single writer is asked for explicitly:
//! * a conflicting insert inside a transaction would abort the whole transaction, so
//!   transactions use `ON CONFLICT … DO NOTHING` and look at the rows affected;
//! * the member limit of a group locks the channel row while it counts (`add_member`);
//! * message commits are serialised across the cluster by one row lock, which keeps the
//!   visible messages a prefix in id order for the sync cursor (`writer`, and
//!   `docs/decisions/0001-sync-cursor.md`);
//! * each stale outbox job is claimed by one sweeping node (`FOR UPDATE SKIP LOCKED`).

mod accounts;
mod blobs;
mod chat;
mod feed;
mod graph;
mod media;
mod notifications;
mod outbox;
mod presence;
mod writer;

use super::{ConnectError, Health, Result};
use sqlx::{
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    PgConnection,
};
use std::{str::FromStr, sync::atomic::AtomicI64, time::Duration};

/// The node's handle on the PostgreSQL database: one pool for reads and writes alike.
pub struct PgStore {
    /// Connections to the database; every storage method borrows one per query or per
    /// transaction.
    pool: PgPool,
    /// How the pool connects, for the message writer's own connection.
    options: PgConnectOptions,
    /// The message writer's connection, outside the pool: a batch is one round trip on it,
    /// without the pool's check before each use. `None` until the first batch, and after
    /// an error (the next batch connects again).
    /// Held with when it was last used.
    writer: tokio::sync::Mutex<Option<(PgConnection, std::time::Instant)>>,
    /// The largest message id this node has seen in the message stream: its next batch is
    /// numbered above it.
    stream_floor: AtomicI64,
}

impl PgStore {
    /// Connects to `url` with at most `pool_size` connections and applies pending
    /// migrations.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, ConnectError> {
        let options = PgConnectOptions::from_str(url)?.options([
            ("synchronous_commit", "on"),
            // A node that stalls inside a transaction (paused, cut off without a reset)
            // would hold its locks, the message stream's among them, for every node:
            // PostgreSQL ends such a transaction, and a wait for a lock gives up, with a
            // 503 for whoever was waiting.
            ("idle_in_transaction_session_timeout", "10s"),
            ("lock_timeout", "5s"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .min_connections(0)
            // Past this a request fails with 503 `unavailable` instead of hanging.
            .acquire_timeout(Duration::from_secs(5))
            // A round trip per acquire: after the database restarts, the pool's dead
            // connections are found and replaced here, not by a failing request.
            .test_before_acquire(true)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            options,
            writer: tokio::sync::Mutex::new(None),
            stream_floor: AtomicI64::new(0),
        })
    }

    /// The pool itself, for tests and tools that work below the storage interfaces
    /// (seeding, fault injection); services use the traits.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl Health for PgStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// PostgreSQL does its own upkeep (autovacuum, checkpoints).
    fn spawn_upkeep(&self) {}
}
