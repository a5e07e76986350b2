//! SQL of the news feed: posts, likes, the fanout outbox and feed rebuilds.

use crate::auth::store::UserRow;
use sqlx::{FromRow, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

/// A `posts` row.
#[derive(Debug, Clone, FromRow, serde::Serialize, serde::Deserialize)]
pub struct PostRow {
    pub id: i64,
    pub author_id: i64,
    pub content: String,
    pub created_at: i64,
}

/// A `fanout_outbox` row.
#[derive(Debug, Clone, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub post_id: i64,
    pub author_id: i64,
    pub created_at: i64,
}

pub async fn insert_post(
    conn: &mut SqliteConnection,
    post: &PostRow,
    idempotency_key: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO posts (id, author_id, content, created_at, idempotency_key) VALUES (?, ?, ?, ?, ?)")
        .bind(post.id)
        .bind(post.author_id)
        .bind(&post.content)
        .bind(post.created_at)
        .bind(idempotency_key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records fanout work for a post; returns the job id.
pub async fn insert_outbox(
    conn: &mut SqliteConnection,
    kind: &str,
    post_id: i64,
    author_id: i64,
    created_at: i64,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let id = sqlx::query(
        "INSERT INTO fanout_outbox (kind, post_id, author_id, created_at, enqueued_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(kind)
    .bind(post_id)
    .bind(author_id)
    .bind(created_at)
    .bind(now)
    .execute(conn)
    .await?
    .last_insert_rowid();
    Ok(id)
}

pub async fn post_by_idempotency_key(
    db: &SqlitePool,
    author_id: i64,
    key: &str,
) -> Result<Option<PostRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, author_id, content, created_at FROM posts WHERE author_id = ? AND idempotency_key = ?",
    )
    .bind(author_id)
    .bind(key)
    .fetch_optional(db)
    .await
}

pub async fn post_by_id(db: &SqlitePool, id: i64) -> Result<Option<PostRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, author_id, content, created_at FROM posts WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Appends `(?, ?, …)` for `ids` to `q`.
fn push_in_list(q: &mut QueryBuilder<'_, Sqlite>, ids: &[i64]) {
    q.push("(");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    sep.push_unseparated(")");
}

pub async fn posts_by_ids(db: &SqlitePool, ids: &[i64]) -> Result<Vec<PostRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q =
        QueryBuilder::new("SELECT id, author_id, content, created_at FROM posts WHERE id IN ");
    push_in_list(&mut q, ids);
    q.build_query_as().fetch_all(db).await
}

pub async fn users_by_ids(db: &SqlitePool, ids: &[i64]) -> Result<Vec<UserRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q =
        QueryBuilder::new("SELECT id, username, display_name, created_at FROM users WHERE id IN ");
    push_in_list(&mut q, ids);
    q.build_query_as().fetch_all(db).await
}

/// Deletes a post (its likes cascade); false if it did not exist.
pub async fn delete_post(conn: &mut SqliteConnection, id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM posts WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected()
        > 0)
}

/// Newest post ids of one author below `below`.
pub async fn author_post_ids(
    db: &SqlitePool,
    author_id: i64,
    below: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM posts WHERE author_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
    )
    .bind(author_id)
    .bind(below)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Newest post ids of a user's feed straight from the durable store: their own posts and
/// those of everyone they follow, below `below`. Used to rebuild a cold feed cache and to
/// page past the cache's newest ~800 ids.
pub async fn feed_post_ids(
    db: &SqlitePool,
    user_id: i64,
    below: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM posts
         WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1 UNION ALL SELECT ?1)
           AND id < ?2
         ORDER BY id DESC LIMIT ?3",
    )
    .bind(user_id)
    .bind(below)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Everyone `user_id` follows who has at least `threshold` followers: their posts are
/// pulled at read time instead of pushed.
pub async fn celebrity_followees(
    db: &SqlitePool,
    user_id: i64,
    threshold: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT f.followee_id FROM follows f JOIN user_stats s ON s.user_id = f.followee_id
         WHERE f.follower_id = ? AND s.followers >= ?",
    )
    .bind(user_id)
    .bind(threshold)
    .fetch_all(db)
    .await
}

pub async fn follower_count(db: &SqlitePool, user_id: i64) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT followers FROM user_stats WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(db)
            .await?
            .unwrap_or(0),
    )
}

/// One page of an author's followers after `after`: the `limit` smallest ids (in no
/// particular order; one row for the whole page, see `db::id_list`).
pub async fn followers_after(
    db: &SqlitePool,
    author_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let list: String = sqlx::query_scalar(
        "SELECT json_group_array(follower_id) FROM (
           SELECT follower_id FROM follows WHERE followee_id = ? AND follower_id > ?
           ORDER BY follower_id LIMIT ?)",
    )
    .bind(author_id)
    .bind(after)
    .bind(limit)
    .fetch_one(db)
    .await?;
    crate::db::id_list(&list)
}

pub async fn outbox_job(db: &SqlitePool, id: i64) -> Result<Option<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, post_id, author_id, created_at FROM fanout_outbox WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Retires a finished publish job and queues its notifications, in one transaction so the
/// post's followers are notified exactly as surely as their feeds were written. Returns the
/// notification job's id, or `None` if the fanout job was already retired.
pub async fn hand_over_to_notifications(
    db: &SqlitePool,
    job: &OutboxRow,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = db.begin().await?;
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

/// Adds a like; false if it was already there.
pub async fn insert_like(
    db: &SqlitePool,
    post_id: i64,
    user_id: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("INSERT OR IGNORE INTO likes (post_id, user_id, created_at) VALUES (?, ?, ?)")
            .bind(post_id)
            .bind(user_id)
            .bind(now)
            .execute(db)
            .await?
            .rows_affected()
            > 0,
    )
}

/// Removes a like; false if there was none.
pub async fn delete_like(db: &SqlitePool, post_id: i64, user_id: i64) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM likes WHERE post_id = ? AND user_id = ?")
            .bind(post_id)
            .bind(user_id)
            .execute(db)
            .await?
            .rows_affected()
            > 0,
    )
}

/// `(post_id, like count)` for each of `ids` that has likes.
pub async fn like_counts(db: &SqlitePool, ids: &[i64]) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::new("SELECT post_id, COUNT(*) FROM likes WHERE post_id IN ");
    push_in_list(&mut q, ids);
    q.push(" GROUP BY post_id");
    q.build_query_as().fetch_all(db).await
}

/// Which of `ids` `user_id` has liked.
/// The newest `limit` post ids `user_id` liked, newest first (the index on likes by user).
pub async fn liked_post_ids(
    db: &SqlitePool,
    user_id: i64,
    limit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT post_id FROM likes WHERE user_id = ? ORDER BY post_id DESC LIMIT ?")
        .bind(user_id)
        .bind(limit)
        .fetch_all(db)
        .await
}

pub async fn liked_by(db: &SqlitePool, user_id: i64, ids: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = QueryBuilder::new("SELECT post_id FROM likes WHERE user_id = ");
    q.push_bind(user_id);
    q.push(" AND post_id IN ");
    push_in_list(&mut q, ids);
    q.build_query_scalar().fetch_all(db).await
}
