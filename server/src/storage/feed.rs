//! Posts and likes, and the reads that build feeds from the durable store.

use super::Result;
use sqlx::FromRow;

/// A `posts` row.
#[derive(Debug, Clone, FromRow, serde::Serialize, serde::Deserialize)]
pub struct PostRow {
    pub id: i64,
    pub author_id: i64,
    pub content: String,
    pub created_at: i64,
    /// The post's images, as the API's JSON array (`None`: none).
    #[sqlx(default)]
    #[serde(default)]
    pub media: Option<String>,
}

/// What storing a post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostInsert {
    /// Stored, with its `publish` fanout job.
    Stored { job: i64 },
    /// The author used the idempotency key already: nothing stored.
    KeyUsed,
    /// One of the images is no longer the author's to attach (used meanwhile): nothing
    /// stored.
    MediaTaken,
}

/// What a fanout job does to the author's followers' feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutKind {
    /// Push a new post.
    Publish,
    /// Take a deleted post out.
    Delete,
}

impl FanoutKind {
    /// The `kind` column's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            FanoutKind::Publish => "publish",
            FanoutKind::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "publish" => Some(FanoutKind::Publish),
            "delete" => Some(FanoutKind::Delete),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
pub trait FeedStore: Send + Sync {
    /// Stores a post, attaches its images (`media`: the author's uploads, attached to
    /// nothing) and stores its `publish` fanout job, in one transaction.
    async fn insert_post(
        &self,
        post: &PostRow,
        media: &[i64],
        idempotency_key: Option<&str>,
        now: i64,
    ) -> Result<PostInsert>;
    /// Deletes a post (its likes cascade) and stores its `delete` fanout job in one
    /// transaction; returns the job's id, or `None` if there was no such post.
    async fn delete_post(&self, post: &PostRow, now: i64) -> Result<Option<i64>>;
    async fn post_by_idempotency_key(&self, author: i64, key: &str) -> Result<Option<PostRow>>;
    async fn post_by_id(&self, id: i64) -> Result<Option<PostRow>>;
    /// The posts among `ids` (in no particular order; missing ones are left out).
    async fn posts_by_ids(&self, ids: &[i64]) -> Result<Vec<PostRow>>;
    /// Newest post ids of one author below `below`.
    async fn author_post_ids(&self, author: i64, below: i64, limit: i64) -> Result<Vec<i64>>;
    /// Newest post ids of a user's feed straight from the durable store: their own posts
    /// and those of everyone they follow, below `below` (cold feeds, paging past the
    /// cache).
    async fn feed_post_ids(&self, user: i64, below: i64, limit: i64) -> Result<Vec<i64>>;
    /// Adds a like; false if it was already there.
    async fn insert_like(&self, post: i64, user: i64, now: i64) -> Result<bool>;
    /// Removes a like; false if there was none.
    async fn delete_like(&self, post: i64, user: i64) -> Result<bool>;
    /// `(post id, like count)` for each of `ids` that has likes.
    async fn like_counts(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>>;
    /// The newest `limit` post ids `user` liked, newest first.
    async fn liked_post_ids(&self, user: i64, limit: i64) -> Result<Vec<i64>>;
    /// Which of `ids` `user` has liked.
    async fn liked_by(&self, user: i64, ids: &[i64]) -> Result<Vec<i64>>;
}
