//! SQL of chat: channels, members, messages (the group commit of sends is in
//! `super::writer`).

use super::{id_list, SqliteStore};
use crate::{
    id::IdGenerator,
    storage::{
        chat::{Added, ChannelRow, Committed, MessageRow, NewMessage},
        is_unique_violation, ChatStore, Result, UserRow,
    },
};
use sqlx::{FromRow, SqliteConnection};

const MESSAGE_COLUMNS: &str =
    "channel_id, id, seq, sender_id, content, client_msg_id, created_at, edited_at, deleted_at, media";

async fn insert_channel(
    conn: &mut SqliteConnection,
    id: i64,
    kind: &str,
    name: &str,
    creator: i64,
    dm_key: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO channels (id, kind, name, creator_id, dm_key, created_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(id)
        .bind(kind)
        .bind(name)
        .bind(creator)
        .bind(dm_key)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds a member; false if they already were one.
async fn insert_member(
    conn: &mut SqliteConnection,
    channel: i64,
    user: i64,
    now: i64,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT OR IGNORE INTO channel_members (channel_id, user_id, joined_at) VALUES (?, ?, ?)",
    )
    .bind(channel)
    .bind(user)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

async fn member_count(conn: &mut SqliteConnection, channel: i64) -> Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM channel_members WHERE channel_id = ?")
        .bind(channel)
        .fetch_one(conn)
        .await
}

#[async_trait::async_trait]
impl ChatStore for SqliteStore {
    /// `a` is the channel's creator.
    async fn create_dm(&self, id: i64, dm_key: &str, a: i64, b: i64, now: i64) -> Result<bool> {
        let mut tx = self.writes.begin().await?;
        match insert_channel(&mut tx, id, "dm", "", a, Some(dm_key), now).await {
            Ok(()) => {
                insert_member(&mut tx, id, a, now).await?;
                insert_member(&mut tx, id, b, now).await?;
                tx.commit().await?;
                Ok(true)
            }
            // Both opened it at once: the other insert won (the caller uses its channel).
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_group(&self, id: i64, name: &str, members: &[i64], now: i64) -> Result<()> {
        let Some(&creator) = members.first() else {
            return Err(sqlx::Error::InvalidArgument(
                "a group needs at least its creator".into(),
            ));
        };
        let mut tx = self.writes.begin().await?;
        insert_channel(&mut tx, id, "group", name, creator, None, now).await?;
        for user in members {
            insert_member(&mut tx, id, *user, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_member(&self, channel: i64, user: i64, max: i64, now: i64) -> Result<Added> {
        let mut tx = self.writes.begin().await?;
        if !insert_member(&mut tx, channel, user, now).await? {
            tx.commit().await?;
            return Ok(Added::AlreadyMember);
        }
        // Counting inside the write transaction keeps concurrent adds from passing `max`.
        if member_count(&mut tx, channel).await? > max {
            // Dropping the transaction rolls the insert back.
            return Ok(Added::Full);
        }
        tx.commit().await?;
        Ok(Added::Added)
    }

    async fn delete_member(&self, channel: i64, user: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?")
                .bind(channel)
                .bind(user)
                .execute(&self.writes)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn rename_group(&self, channel: i64, name: &str) -> Result<bool> {
        Ok(
            sqlx::query("UPDATE channels SET name = ? WHERE id = ? AND kind = 'group'")
                .bind(name)
                .bind(channel)
                .execute(&self.writes)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn channel(&self, id: i64) -> Result<Option<ChannelRow>> {
        sqlx::query_as(
            "SELECT id, kind, name, creator_id, last_message_id FROM channels WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reads)
        .await
    }

    async fn channel_by_dm_key(&self, key: &str) -> Result<Option<ChannelRow>> {
        sqlx::query_as(
            "SELECT id, kind, name, creator_id, last_message_id FROM channels WHERE dm_key = ?",
        )
        .bind(key)
        .fetch_optional(&self.reads)
        .await
    }

    async fn is_member(&self, channel: i64, user: i64) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT 1 FROM channel_members WHERE channel_id = ? AND user_id = ?",
        )
        .bind(channel)
        .bind(user)
        .fetch_optional(&self.reads)
        .await?
        .is_some())
    }

    async fn members(&self, channel: i64) -> Result<Vec<UserRow>> {
        sqlx::query_as(
            "SELECT u.id, u.username, u.display_name, u.bio, u.created_at
             FROM channel_members m JOIN users u ON u.id = m.user_id
             WHERE m.channel_id = ? ORDER BY m.joined_at, u.id",
        )
        .bind(channel)
        .fetch_all(&self.reads)
        .await
    }

    async fn member_ids(&self, channel: i64) -> Result<Vec<i64>> {
        let list: String = sqlx::query_scalar(
            "SELECT json_group_array(user_id) FROM channel_members WHERE channel_id = ?",
        )
        .bind(channel)
        .fetch_one(&self.reads)
        .await?;
        id_list(&list)
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
                      WHERE x.channel_id = c.id AND x.id > m.last_read_message_id AND x.sender_id <> ?1) AS unread
             FROM channel_members m JOIN channels c ON c.id = m.channel_id
             WHERE m.user_id = ?1
             ORDER BY MAX(c.last_message_id, c.id) DESC",
        )
        .bind(user)
        .fetch_all(&self.reads)
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
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND id > ? ORDER BY id LIMIT ?"
            ))
            .bind(channel)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reads)
            .await;
        }
        let mut rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(channel)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.reads)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Gap-free because SQLite commits one write transaction at a time and the group
    /// commit numbers new messages above every stored id inside its transaction
    /// (`super::writer`): whatever commits after this read's snapshot has higher ids.
    async fn since(&self, user: i64, since: i64, limit: i64) -> Result<Vec<MessageRow>> {
        sqlx::query_as(
            "SELECT x.channel_id, x.id, x.seq, x.sender_id,
                    CASE WHEN b.blocker_id IS NULL THEN x.content ELSE '' END AS content,
                    x.client_msg_id, x.created_at, x.edited_at, x.deleted_at,
                    CASE WHEN b.blocker_id IS NULL THEN x.media END AS media,
                    b.blocker_id IS NOT NULL AS hidden
             FROM channel_members m JOIN messages x ON x.channel_id = m.channel_id
             LEFT JOIN blocks b ON b.blocker_id = m.user_id AND b.blocked_id = x.sender_id
             WHERE m.user_id = ? AND x.id > ?
             ORDER BY x.id LIMIT ?",
        )
        .bind(user)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.reads)
        .await
    }

    async fn last_message(&self, channel: i64) -> Result<Option<MessageRow>> {
        sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? ORDER BY id DESC LIMIT 1"
        ))
        .bind(channel)
        .fetch_optional(&self.reads)
        .await
    }

    async fn mark_read(&self, channel: i64, user: i64, message: i64) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "UPDATE channel_members
                SET last_read_message_id = MAX(last_read_message_id,
                    MIN(?, (SELECT last_message_id FROM channels WHERE id = channel_id)))
              WHERE channel_id = ? AND user_id = ?
              RETURNING last_read_message_id",
        )
        .bind(message)
        .bind(channel)
        .bind(user)
        .fetch_optional(&self.writes)
        .await
    }

    async fn message(&self, channel: i64, id: i64) -> Result<Option<MessageRow>> {
        sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND id = ?"
        ))
        .bind(channel)
        .bind(id)
        .fetch_optional(&self.reads)
        .await
    }

    async fn message_by_key(&self, sender: i64, client_msg_id: &str) -> Result<Option<MessageRow>> {
        sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"
        ))
        .bind(sender)
        .bind(client_msg_id)
        .fetch_optional(&self.reads)
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
        let mut tx = self.writes.begin().await?;
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "UPDATE messages SET content = ?, edited_at = ?
             WHERE channel_id = ? AND id = ? AND sender_id = ? AND deleted_at IS NULL
               AND created_at >= ?
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
            sqlx::query("UPDATE notifications SET excerpt = ? WHERE id = ? AND kind = 'message'")
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
        let mut tx = self.writes.begin().await?;
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "UPDATE messages SET content = '', media = NULL, deleted_at = ?
             WHERE channel_id = ? AND id = ? AND sender_id = ? AND deleted_at IS NULL
             RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(now)
        .bind(channel)
        .bind(id)
        .bind(sender)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            sqlx::query("DELETE FROM notifications WHERE id = ? AND kind = 'message'")
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
