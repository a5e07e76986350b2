//! SQL of the social graph.

use crate::auth::store::UserRow;
use sqlx::{FromRow, SqlitePool};

/// Adds a follow; false if it existed.
pub async fn follow(
    db: &SqlitePool,
    follower: i64,
    followee: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)",
    )
    .bind(follower)
    .bind(followee)
    .bind(now)
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}

/// Removes a follow, and the notifications of the followee's posts that the follower kept
/// (pulled ones go with the follow by themselves); false if there was no follow.
pub async fn unfollow(db: &SqlitePool, follower: i64, followee: i64) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let removed = sqlx::query("DELETE FROM follows WHERE follower_id = ? AND followee_id = ?")
        .bind(follower)
        .bind(followee)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if removed {
        sqlx::query(
            "DELETE FROM notifications WHERE user_id = ? AND kind = 'post' AND actor_id = ?",
        )
        .bind(follower)
        .bind(followee)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(removed)
}

/// A user in a follow list, with the time of the follow (the list's order and cursor).
#[derive(Debug, FromRow)]
pub struct Listed {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub followed_at: i64,
}

/// Which list to read.
#[derive(Debug, Clone, Copy)]
pub enum List {
    /// Whom the user follows.
    Following,
    /// Who follows the user.
    Followers,
    /// Mutual follows.
    Friends,
}

/// One page of a list, most recent follow first, strictly after `cursor` = (time, user id).
pub async fn list(
    db: &SqlitePool,
    user: i64,
    which: List,
    cursor: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<Listed>, sqlx::Error> {
    let (t, id) = cursor.unwrap_or((i64::MAX, i64::MAX));
    let sql = match which {
        List::Following => {
            "SELECT u.id, u.username, u.display_name, u.created_at, f.created_at AS followed_at
             FROM follows f JOIN users u ON u.id = f.followee_id
             WHERE f.follower_id = ?1 AND (f.created_at, f.followee_id) < (?2, ?3)
             ORDER BY f.created_at DESC, f.followee_id DESC LIMIT ?4"
        }
        List::Followers => {
            "SELECT u.id, u.username, u.display_name, u.created_at, f.created_at AS followed_at
             FROM follows f JOIN users u ON u.id = f.follower_id
             WHERE f.followee_id = ?1 AND (f.created_at, f.follower_id) < (?2, ?3)
             ORDER BY f.created_at DESC, f.follower_id DESC LIMIT ?4"
        }
        List::Friends => {
            "SELECT u.id, u.username, u.display_name, u.created_at, f.created_at AS followed_at
             FROM follows f
             JOIN follows back ON back.follower_id = f.followee_id AND back.followee_id = f.follower_id
             JOIN users u ON u.id = f.followee_id
             WHERE f.follower_id = ?1 AND (f.created_at, f.followee_id) < (?2, ?3)
             ORDER BY f.created_at DESC, f.followee_id DESC LIMIT ?4"
        }
    };
    sqlx::query_as(sql)
        .bind(user)
        .bind(t)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await
}

/// Users whose name starts with `prefix`, alphabetically after `after`.
pub async fn search(
    db: &SqlitePool,
    prefix: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    // The prefix holds only [a-z0-9_] (validated by the caller), so `prefix || '~'` is an
    // upper bound ('~' sorts after every allowed character) and the username index is used.
    let upper = format!("{prefix}~");
    let lower = after.map_or(prefix.to_string(), str::to_string);
    sqlx::query_as(
        "SELECT id, username, display_name, created_at FROM users
         WHERE username >= ?1 AND username < ?2 AND (?3 IS NULL OR username > ?3)
         ORDER BY username LIMIT ?4",
    )
    .bind(&lower)
    .bind(upper)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}
