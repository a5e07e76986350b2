//! Chat on PostgreSQL: channels, members, messages; the group commit of sends is in
//! `super::writer`.

use super::PgStore;
use crate::{
    id::IdGenerator,
    storage::{
        accounts::UserRow,
        chat::{Added, ChannelRow, ChatStore, Committed, MessageRow, NewMessage},
        Result,
    },
};
use sqlx::{FromRow, PgConnection};

const MESSAGE_COLUMNS: &str =
    "channel_id, id, seq, sender_id, content, client_msg_id, created_at, edited_at, deleted_at, media";

/// Adds `users` to `channel` inside the caller's transaction; returns how many were not
/// members yet. `ON CONFLICT` rather than a caught error: a unique violation would abort
/// the transaction.
async fn insert_members(
    tx: &mut PgConnection,
    channel: i64,
    users: &[i64],
    now: i64,
) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO channel_members (channel_id, user_id, joined_at)
         SELECT $1, u.user_id, $3 FROM unnest($2::bigint[]) AS u(user_id)
         ON CONFLICT DO NOTHING",
    )
    .bind(channel)
    .bind(users)
    .bind(now)
    .execute(tx)
    .await?
    .rows_affected())
}

#[async_trait::async_trait]
impl ChatStore for PgStore {
    async fn create_dm(&self, id: i64, dm_key: &str, a: i64, b: i64, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Opened by both at once: the second insert waits for the first to commit, then
        // finds the key taken and inserts nothing; the caller reads the pair's channel.
        let created = sqlx::query(
            "INSERT INTO channels (id, kind, name, creator_id, dm_key, created_at)
             VALUES ($1, 'dm', '', $2, $3, $4)
             ON CONFLICT (dm_key) DO NOTHING",
        )
        .bind(id)
        .bind(a)
        .bind(dm_key)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !created {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_members(&mut tx, id, &[a, b], now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_group(&self, id: i64, name: &str, members: &[i64], now: i64) -> Result<()> {
        let Some(&creator) = members.first() else {
            return Err(sqlx::Error::InvalidArgument(
                "a group's members start with its creator".into(),
            ));
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO channels (id, kind, name, creator_id, created_at)
             VALUES ($1, 'group', $2, $3, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(creator)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_members(&mut tx, id, members, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_member(&self, channel: i64, user: i64, max: i64, now: i64) -> Result<Added> {
        let mut tx = self.pool.begin().await?;
        // Adds to one channel queue on its row, so each one counts the members the previous
        // one left: without the lock, two adds could each count 99 and make 101.
        sqlx::query("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE")
            .bind(channel)
            .execute(&mut *tx)
            .await?;
        if insert_members(&mut tx, channel, &[user], now).await? == 0 {
            tx.rollback().await?;
            return Ok(Added::AlreadyMember);
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM channel_members WHERE channel_id = $1")
                .bind(channel)
                .fetch_one(&mut *tx)
                .await?;
        if count > max {
            tx.rollback().await?;
            return Ok(Added::Full);
        }
        tx.commit().await?;
        Ok(Added::Added)
    }

    async fn delete_member(&self, channel: i64, user: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2")
                .bind(channel)
                .bind(user)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn rename_group(&self, channel: i64, name: &str) -> Result<bool> {
        Ok(
            sqlx::query("UPDATE channels SET name = $1 WHERE id = $2 AND kind = 'group'")
                .bind(name)
                .bind(channel)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn channel(&self, id: i64) -> Result<Option<ChannelRow>> {
        sqlx::query_as(
            "SELECT id, kind, name, creator_id, last_message_id FROM channels WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    async fn channel_by_dm_key(&self, key: &str) -> Result<Option<ChannelRow>> {
        sqlx::query_as(
            "SELECT id, kind, name, creator_id, last_message_id FROM channels WHERE dm_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
    }

    async fn is_member(&self, channel: i64, user: i64) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM channel_members WHERE channel_id = $1 AND user_id = $2)",
        )
        .bind(channel)
        .bind(user)
        .fetch_one(&self.pool)
        .await
    }

    async fn members(&self, channel: i64) -> Result<Vec<UserRow>> {
        sqlx::query_as(
            "SELECT u.id, u.username, u.display_name, u.bio, u.created_at
             FROM channel_members m JOIN users u ON u.id = m.user_id
             WHERE m.channel_id = $1 ORDER BY m.joined_at, u.id",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await
    }

    async fn member_ids(&self, channel: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT COALESCE(array_agg(user_id), '{}') FROM channel_members WHERE channel_id = $1",
        )
        .bind(channel)
        .fetch_one(&self.pool)
        .await
    }

    async fn channels_of(&self, user: i64) -> Result<Vec<(ChannelRow, i64)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            channel: ChannelRow,
            unread: i64,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT c.id, c.kind, c.name, c.creator_id, c.last_message_id,
                    (SELECT COUNT(*) FROM messages x
                      WHERE x.channel_id = c.id AND x.id > m.last_read_message_id
                        AND x.sender_id <> $1) AS unread
             FROM channel_members m JOIN channels c ON c.id = m.channel_id
             WHERE m.user_id = $1
             ORDER BY GREATEST(c.last_message_id, c.id) DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.channel, r.unread)).collect())
    }

    async fn history(
        &self,
        channel: i64,
        before: Option<i64>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        if let Some(after) = after {
            return sqlx::query_as(&format!(
                "SELECT {MESSAGE_COLUMNS}
                 FROM messages WHERE channel_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind(channel)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await;
        }
        let mut rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS}
             FROM messages WHERE channel_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(channel)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    async fn since(&self, user: i64, since: i64, limit: i64) -> Result<Vec<MessageRow>> {
        // One statement, so one snapshot: it holds a prefix of the messages in id order
        // (`super::writer`), and every message it misses has a larger id than all it
        // returns.
        sqlx::query_as(
            "SELECT x.channel_id, x.id, x.seq, x.sender_id,
                    CASE WHEN b.blocker_id IS NULL THEN x.content ELSE '' END AS content,
                    x.client_msg_id, x.created_at, x.edited_at, x.deleted_at,
                    CASE WHEN b.blocker_id IS NULL THEN x.media END AS media,
                    b.blocker_id IS NOT NULL AS hidden
             FROM channel_members m JOIN messages x ON x.channel_id = m.channel_id
             LEFT JOIN blocks b ON b.blocker_id = m.user_id AND b.blocked_id = x.sender_id
             WHERE m.user_id = $1 AND x.id > $2
             ORDER BY x.id LIMIT $3",
        )
        .bind(user)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn last_message(&self, channel: i64) -> Result<Option<MessageRow>> {
        sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS}
             FROM messages WHERE channel_id = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(channel)
        .fetch_optional(&self.pool)
        .await
    }

    async fn mark_read(&self, channel: i64, user: i64, message: i64) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "UPDATE channel_members
                SET last_read_message_id = GREATEST(last_read_message_id,
                    LEAST($1, (SELECT c.last_message_id FROM channels c
                                WHERE c.id = channel_members.channel_id)))
              WHERE channel_id = $2 AND user_id = $3
              RETURNING last_read_message_id",
        )
        .bind(message)
        .bind(channel)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
    }

    async fn message(&self, channel: i64, id: i64) -> Result<Option<MessageRow>> {
        sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND id = $2"
        ))
        .bind(channel)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    async fn message_by_key(&self, sender: i64, client_msg_id: &str) -> Result<Option<MessageRow>> {
        sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = $1 AND client_msg_id = $2"
        ))
        .bind(sender)
        .bind(client_msg_id)
        .fetch_optional(&self.pool)
        .await
    }

    async fn edit_message(
        &self,
        channel: i64,
        id: i64,
        sender: i64,
        content: &str,
        excerpt: &str,
        sent_since: i64,
        now: i64,
    ) -> Result<Option<MessageRow>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "UPDATE messages SET content = $1, edited_at = $2
             WHERE channel_id = $3 AND id = $4 AND sender_id = $5 AND deleted_at IS NULL
               AND created_at >= $6
             RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(content)
        .bind(now)
        .bind(channel)
        .bind(id)
        .bind(sender)
        .bind(sent_since)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            sqlx::query("UPDATE notifications SET excerpt = $1 WHERE id = $2 AND kind = 'message'")
                .bind(excerpt)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    async fn delete_message(
        &self,
        channel: i64,
        id: i64,
        sender: i64,
        now: i64,
    ) -> Result<Option<MessageRow>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "UPDATE messages SET content = '', media = NULL, deleted_at = $1
             WHERE channel_id = $2 AND id = $3 AND sender_id = $4 AND deleted_at IS NULL
             RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(now)
        .bind(channel)
        .bind(id)
        .bind(sender)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            sqlx::query("DELETE FROM notifications WHERE id = $1 AND kind = 'message'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    async fn commit_messages(
        &self,
        ids: &IdGenerator,
        batch: &[&NewMessage],
    ) -> Result<Vec<Committed>> {
        self.commit_batch(ids, batch).await
    }
}
