//! SQL of the two outboxes (`fanout_outbox`, `notification_outbox`).

use super::SqliteStore;
use crate::storage::{
    feed::FanoutKind,
    outbox::{FanoutJob, NotifyJob, Outbox},
    OutboxStore, Result,
};
use sqlx::FromRow;

/// A `fanout_outbox` row.
#[derive(FromRow)]
struct FanoutRow {
    id: i64,
    kind: String,
    post_id: i64,
    author_id: i64,
    created_at: i64,
}

#[async_trait::async_trait]
impl OutboxStore for SqliteStore {
    /// A `kind` this build does not know is a decode error: the job fails (and is logged),
    /// its row stays.
    async fn fanout_job(&self, id: i64) -> Result<Option<FanoutJob>> {
        let row: Option<FanoutRow> = sqlx::query_as(
            "SELECT id, kind, post_id, author_id, created_at FROM fanout_outbox WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reads)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let kind = FanoutKind::parse(&row.kind).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown fanout job kind {:?}", row.kind).into())
        })?;
        Ok(Some(FanoutJob {
            id: row.id,
            kind,
            post_id: row.post_id,
            author_id: row.author_id,
            created_at: row.created_at,
        }))
    }

    async fn notify_job(&self, id: i64) -> Result<Option<NotifyJob>> {
        let row: Option<(i64, i64, i64)> =
            sqlx::query_as("SELECT id, post_id, author_id FROM notification_outbox WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reads)
                .await?;
        Ok(row.map(|(id, post_id, author_id)| NotifyJob {
            id,
            post_id,
            author_id,
        }))
    }

    async fn hand_over_to_notifications(&self, job: &FanoutJob, now: i64) -> Result<Option<i64>> {
        let mut tx = self.writes.begin().await?;
        let retired = sqlx::query("DELETE FROM fanout_outbox WHERE id = ?")
            .bind(job.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if retired == 0 {
            return Ok(None);
        }
        let id = sqlx::query(
            "INSERT INTO notification_outbox (post_id, author_id, created_at, enqueued_at) VALUES (?, ?, ?, ?)",
        )
        .bind(job.post_id)
        .bind(job.author_id)
        .bind(job.created_at)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn finish(&self, outbox: Outbox, id: i64) -> Result<()> {
        sqlx::query(&format!("DELETE FROM {} WHERE id = ?", outbox.table()))
            .bind(id)
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    /// One `UPDATE … RETURNING` on the write connection: SQLite runs one write at a time,
    /// so two sweeps never claim the same job.
    async fn claim_stale(&self, outbox: Outbox, stale_before: i64, now: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(&format!(
            "UPDATE {} SET enqueued_at = ? WHERE enqueued_at < ? RETURNING id",
            outbox.table()
        ))
        .bind(now)
        .bind(stale_before)
        .fetch_all(&self.writes)
        .await
    }

    async fn pending(&self) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM fanout_outbox) + (SELECT COUNT(*) FROM notification_outbox)",
        )
        .fetch_one(&self.reads)
        .await
    }
}
