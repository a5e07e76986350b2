//! The fanout and notification outboxes on PostgreSQL.

use super::PgStore;
use crate::storage::{
    feed::FanoutKind,
    outbox::{FanoutJob, NotifyJob, Outbox, OutboxStore},
    Result,
};

#[async_trait::async_trait]
impl OutboxStore for PgStore {
    async fn fanout_job(&self, id: i64) -> Result<Option<FanoutJob>> {
        let row: Option<(i64, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, kind, post_id, author_id, created_at FROM fanout_outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, kind, post_id, author_id, created_at)) = row else {
            return Ok(None);
        };
        let kind = FanoutKind::parse(&kind).ok_or_else(|| {
            sqlx::Error::Decode(format!("fanout job {id} has an unknown kind {kind:?}").into())
        })?;
        Ok(Some(FanoutJob {
            id,
            kind,
            post_id,
            author_id,
            created_at,
        }))
    }

    async fn notify_job(&self, id: i64) -> Result<Option<NotifyJob>> {
        let row: Option<(i64, i64, i64)> =
            sqlx::query_as("SELECT id, post_id, author_id FROM notification_outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, post_id, author_id)| NotifyJob {
            id,
            post_id,
            author_id,
        }))
    }

    async fn hand_over_to_notifications(&self, job: &FanoutJob, now: i64) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        // A second worker on the same job waits here for the first one's commit, then
        // finds nothing to delete and queues nothing.
        let retired = sqlx::query("DELETE FROM fanout_outbox WHERE id = $1")
            .bind(job.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if retired == 0 {
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notification_outbox (post_id, author_id, created_at, enqueued_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(job.post_id)
        .bind(job.author_id)
        .bind(job.created_at)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn finish(&self, outbox: Outbox, id: i64) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE id = $1", outbox.table());
        sqlx::query(&sql).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn claim_stale(&self, outbox: Outbox, stale_before: i64, now: i64) -> Result<Vec<i64>> {
        // Every node sweeps: `SKIP LOCKED` leaves rows another sweep is claiming to that
        // sweep, so each stale job is handed out once. At most 1,000 per sweep keeps the
        // statement short; the next sweep takes the rest.
        let table = outbox.table();
        let sql = format!(
            "UPDATE {table} SET enqueued_at = $1
              WHERE id IN (SELECT id FROM {table} WHERE enqueued_at < $2
                            ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)
              RETURNING id"
        );
        sqlx::query_scalar(&sql)
            .bind(now)
            .bind(stale_before)
            .fetch_all(&self.pool)
            .await
    }

    async fn pending(&self) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM fanout_outbox) + (SELECT COUNT(*) FROM notification_outbox)",
        )
        .fetch_one(&self.pool)
        .await
    }
}
