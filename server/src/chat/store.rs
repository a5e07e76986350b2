//! SQL of chat: channels, members, messages.

use crate::auth::store::UserRow;
use sqlx::{FromRow, SqliteConnection, SqlitePool};

/// A `channels` row.
#[derive(Debug, Clone, FromRow)]
pub struct ChannelRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub creator_id: i64,
    pub last_message_id: i64,
}

/// A `messages` row.
#[derive(Debug, Clone, FromRow, serde::Serialize, serde::Deserialize)]
pub struct MessageRow {
    pub channel_id: i64,
    pub id: i64,
    pub seq: i64,
    pub sender_id: i64,
    pub content: String,
    pub client_msg_id: String,
    pub created_at: i64,
}

const MESSAGE_COLUMNS: &str = "channel_id, id, seq, sender_id, content, client_msg_id, created_at";

pub async fn insert_channel(
    conn: &mut SqliteConnection,
    id: i64,
    kind: &str,
    name: &str,
    creator: i64,
    dm_key: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
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
pub async fn insert_member(
    conn: &mut SqliteConnection,
    channel: i64,
    user: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
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

pub async fn delete_member(db: &SqlitePool, channel: i64, user: i64) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?")
            .bind(channel)
            .bind(user)
            .execute(db)
            .await?
            .rows_affected()
            > 0,
    )
}

pub async fn channel(db: &SqlitePool, id: i64) -> Result<Option<ChannelRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, kind, name, creator_id, last_message_id FROM channels WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn channel_by_dm_key(
    db: &SqlitePool,
    key: &str,
) -> Result<Option<ChannelRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, name, creator_id, last_message_id FROM channels WHERE dm_key = ?",
    )
    .bind(key)
    .fetch_optional(db)
    .await
}

pub async fn is_member(db: &SqlitePool, channel: i64, user: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT 1 FROM channel_members WHERE channel_id = ? AND user_id = ?",
    )
    .bind(channel)
    .bind(user)
    .fetch_optional(db)
    .await?
    .is_some())
}

pub async fn member_count(conn: &mut SqliteConnection, channel: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM channel_members WHERE channel_id = ?")
        .bind(channel)
        .fetch_one(conn)
        .await
}

/// Members of a channel, in the order they joined.
pub async fn members(db: &SqlitePool, channel: i64) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.username, u.display_name, u.created_at
         FROM channel_members m JOIN users u ON u.id = m.user_id
         WHERE m.channel_id = ? ORDER BY m.joined_at, u.id",
    )
    .bind(channel)
    .fetch_all(db)
    .await
}

pub async fn member_ids(db: &SqlitePool, channel: i64) -> Result<Vec<i64>, sqlx::Error> {
    let list: String = sqlx::query_scalar(
        "SELECT json_group_array(user_id) FROM channel_members WHERE channel_id = ?",
    )
    .bind(channel)
    .fetch_one(db)
    .await?;
    crate::db::id_list(&list)
}

/// The user's channels with their unread counts, most recent activity first.
pub async fn channels_of(
    db: &SqlitePool,
    user: i64,
) -> Result<Vec<(ChannelRow, i64)>, sqlx::Error> {
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
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.channel, r.unread)).collect())
}

/// A page of a channel's history: before `before` (newest first, returned oldest first)
/// or after `after` (oldest first).
pub async fn history(
    db: &SqlitePool,
    channel: i64,
    before: Option<i64>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    if let Some(after) = after {
        return sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(channel)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await;
    }
    let mut rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
    ))
    .bind(channel)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.reverse();
    Ok(rows)
}

/// Messages newer than `since` in any of the user's channels, oldest first.
pub async fn since(
    db: &SqlitePool,
    user: i64,
    since: i64,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT x.channel_id, x.id, x.seq, x.sender_id, x.content, x.client_msg_id, x.created_at
         FROM channel_members m JOIN messages x ON x.channel_id = m.channel_id
         WHERE m.user_id = ? AND x.id > ?
         ORDER BY x.id LIMIT ?",
    )
    .bind(user)
    .bind(since)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The newest message of a channel.
pub async fn last_message(
    db: &SqlitePool,
    channel: i64,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? ORDER BY id DESC LIMIT 1"
    ))
    .bind(channel)
    .fetch_optional(db)
    .await
}

/// Moves a member's read position forward (never back, never past the newest message);
/// returns the position now stored (`None` if they are not a member).
pub async fn mark_read(
    db: &SqlitePool,
    channel: i64,
    user: i64,
    message_id: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE channel_members
            SET last_read_message_id = MAX(last_read_message_id,
                MIN(?, (SELECT last_message_id FROM channels WHERE id = channel_id)))
          WHERE channel_id = ? AND user_id = ?
          RETURNING last_read_message_id",
    )
    .bind(message_id)
    .bind(channel)
    .bind(user)
    .fetch_optional(db)
    .await
}
