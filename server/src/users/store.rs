//! SQL for profiles.

use sqlx::SqlitePool;

/// Follower, following and post counts of a user (kept by triggers in `user_stats`), and
/// whether `viewer` follows them.
pub struct Counts {
    pub followers: i64,
    pub following: i64,
    pub posts: i64,
    pub followed_by_viewer: bool,
}

pub async fn counts(
    db: &SqlitePool,
    user_id: i64,
    viewer: Option<i64>,
) -> Result<Counts, sqlx::Error> {
    let (followers, following, posts, followed): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT s.followers, s.following, s.posts,
            EXISTS (SELECT 1 FROM follows WHERE follower_id = ?2 AND followee_id = ?1)
         FROM user_stats s WHERE s.user_id = ?1",
    )
    .bind(user_id)
    .bind(viewer.unwrap_or(-1))
    .fetch_one(db)
    .await?;
    Ok(Counts {
        followers,
        following,
        posts,
        followed_by_viewer: followed != 0,
    })
}
