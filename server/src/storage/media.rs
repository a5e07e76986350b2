//! Uploaded images: their rows, attaching them to chat messages, releasing them, and
//! collecting those never used. (Attaching to a post is part of storing the post:
//! [`FeedStore::insert_post`](super::FeedStore::insert_post).) The files are in the blob
//! store (`crate::media::blobs`); these rows say who uploaded them and where they are used.

use super::Result;
use app::model::{Id, Media};
use sqlx::FromRow;

/// A `media` row.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct MediaRow {
    pub id: i64,
    pub owner_id: i64,
    /// `{sha256}.{ext}` of the image in the blob store.
    pub file: String,
    /// `{sha256}.{ext}` of its thumbnail.
    pub thumbnail: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    pub bytes: i64,
    pub alt: String,
    pub created_at: i64,
}

impl MediaRow {
    /// The API's `Media` for this row.
    pub fn to_media(&self) -> Media {
        Media {
            id: Id(self.id),
            url: format!("/media/{}", self.file),
            thumbnail_url: format!("/media/{}", self.thumbnail),
            width: u32::try_from(self.width).unwrap_or_default(),
            height: u32::try_from(self.height).unwrap_or_default(),
            content_type: self.content_type.clone(),
            bytes: u64::try_from(self.bytes).unwrap_or_default(),
            alt: self.alt.clone(),
        }
    }
}

/// The columns of [`MediaRow`], for `SELECT`s.
pub const MEDIA_COLUMNS: &str =
    "id, owner_id, file, thumbnail, content_type, width, height, bytes, alt, created_at";

/// The `media` column of a post or message: the API's JSON array, or `None` for none.
pub fn media_json(rows: &[MediaRow]) -> Option<String> {
    (!rows.is_empty()).then(|| {
        let media: Vec<Media> = rows.iter().map(MediaRow::to_media).collect();
        serde_json::to_string(&media).unwrap_or_else(|_| "[]".into())
    })
}

/// The `Media` objects of a stored `media` column (none for NULL or, should a row ever
/// hold one, unreadable JSON).
pub fn parse_media(column: Option<&str>) -> Vec<Media> {
    column
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

#[async_trait::async_trait]
pub trait MediaStore: Send + Sync {
    /// Stores a new upload, attached to nothing.
    async fn insert_media(&self, row: &MediaRow) -> Result<()>;
    /// Those of `ids` that `owner` uploaded and are attached to nothing, or (a retry of a
    /// send) to `owner`'s message `message_key`; in no particular order.
    async fn attachable(
        &self,
        owner: i64,
        ids: &[i64],
        message_key: Option<&str>,
    ) -> Result<Vec<MediaRow>>;
    /// Attaches `ids` to `owner`'s message `message_key` if every one of them is
    /// [`attachable`](Self::attachable); false (nothing changed) otherwise.
    async fn claim_for_message(&self, owner: i64, ids: &[i64], message_key: &str) -> Result<bool>;
    /// Undoes [`claim_for_message`](Self::claim_for_message) for a send that stored no
    /// message: `owner`'s images claimed under `message_key` are attached to nothing again,
    /// unless a message with that key exists (a concurrent retry stored it).
    async fn unclaim(&self, owner: i64, message_key: &str) -> Result<()>;
    /// Deletes the rows of post `post`'s images; returns the files no row names any more.
    async fn release_post(&self, post: i64) -> Result<Vec<String>>;
    /// Deletes the rows of the images of `owner`'s message `message_key`; returns the
    /// files no row names any more.
    async fn release_message(&self, owner: i64, message_key: &str) -> Result<Vec<String>>;
    /// Deletes the rows of `owner`'s images that are not in a chat message (those stay
    /// with the messages, which stay for the other members): their posts' and their unused
    /// uploads (a deleted account). Returns the files no row names any more.
    async fn release_owner(&self, owner: i64) -> Result<Vec<String>>;
    /// Deletes the rows of uploads created before `before` and attached to nothing, or to
    /// a post that is gone, or to a message that was never stored; returns the files no row
    /// names any more.
    async fn collect(&self, before: i64) -> Result<Vec<String>>;
    /// Sets the description of `owner`'s upload `id` while it is attached to nothing (once
    /// attached, the post or message holds a copy); the row as now stored, or `None`
    /// (nothing changed: not theirs, unknown, or attached).
    async fn set_alt(&self, owner: i64, id: i64, alt: &str) -> Result<Option<MediaRow>>;
    /// Whether `owner` uploaded `id` (attached or not).
    async fn is_owner(&self, owner: i64, id: i64) -> Result<bool>;
}
