//! Chat: channels, members, messages, and the group commit of sends.

use super::{accounts::UserRow, to_datetime, Result};
use crate::id::IdGenerator;
use app::model::{Id, Message, User};
use sqlx::FromRow;
use std::sync::Arc;

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
    /// When the content was last edited (reads that do not select it leave it `None`).
    #[sqlx(default)]
    #[serde(default)]
    pub edited_at: Option<i64>,
    /// When the sender deleted it; the content is empty from then on.
    #[sqlx(default)]
    #[serde(default)]
    pub deleted_at: Option<i64>,
    /// Read for someone who blocked the sender: the content is left out (reads that do
    /// not ask leave it `false`).
    #[sqlx(default)]
    #[serde(default)]
    pub hidden: bool,
    /// The message's images, as the API's JSON array (`None`: none).
    #[sqlx(default)]
    #[serde(default)]
    pub media: Option<String>,
}

impl MessageRow {
    /// The API's message for this row, sent by `sender`.
    pub fn into_message(self, sender: User) -> Message {
        Message {
            id: Id(self.id),
            channel_id: Id(self.channel_id),
            seq: self.seq,
            sender,
            content: self.content,
            created_at: to_datetime(self.created_at),
            client_msg_id: self.client_msg_id,
            edited_at: self.edited_at.map(to_datetime),
            deleted_at: self.deleted_at.map(to_datetime),
            media: if self.hidden {
                Vec::new()
            } else {
                super::media::parse_media(self.media.as_deref())
            },
            hidden: self.hidden,
        }
    }
}

/// A message to store.
#[derive(Debug)]
pub struct NewMessage {
    pub channel: i64,
    pub sender: i64,
    pub content: String,
    pub client_msg_id: String,
    pub now: i64,
    /// The images, as the API's JSON array (`None`: none), claimed for this message
    /// beforehand ([`MediaStore::claim_for_message`](super::MediaStore::claim_for_message)).
    pub media: Option<String>,
}

/// What committing one send did.
#[derive(Debug)]
pub enum Committed {
    /// Stored by this batch; `members` are the channel's members at commit, to wake, and
    /// `hidden_from` those of them who blocked the sender (they get the message hidden).
    Stored {
        row: MessageRow,
        members: Arc<[i64]>,
        hidden_from: Vec<i64>,
    },
    /// A retry: the message first stored under this `client_msg_id` (maybe in another
    /// channel, which the caller reports).
    Existing(MessageRow),
    /// The channel does not exist.
    NoChannel,
    /// The sender is not a member of the channel.
    NotMember,
    /// A 1:1 whose two members are apart: one blocked the other.
    Apart,
}

/// What adding a member did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    Added,
    AlreadyMember,
    /// The group has `max` members already; nothing changed.
    Full,
}

#[async_trait::async_trait]
pub trait ChatStore: Send + Sync {
    /// Creates the 1:1 channel `id` of `a` and `b` under `dm_key`; false (nothing
    /// created) if the pair already has one.
    async fn create_dm(&self, id: i64, dm_key: &str, a: i64, b: i64, now: i64) -> Result<bool>;
    /// Creates a group of `members` (the creator first) in one transaction.
    async fn create_group(&self, id: i64, name: &str, members: &[i64], now: i64) -> Result<()>;
    /// Adds a member unless the channel would then have more than `max`.
    async fn add_member(&self, channel: i64, user: i64, max: i64, now: i64) -> Result<Added>;
    /// Removes a member; false if they were not one.
    async fn delete_member(&self, channel: i64, user: i64) -> Result<bool>;
    /// Renames a group; false (nothing changed) if the channel is not a group.
    async fn rename_group(&self, channel: i64, name: &str) -> Result<bool>;
    async fn channel(&self, id: i64) -> Result<Option<ChannelRow>>;
    async fn channel_by_dm_key(&self, key: &str) -> Result<Option<ChannelRow>>;
    async fn is_member(&self, channel: i64, user: i64) -> Result<bool>;
    /// Members of a channel, in the order they joined.
    async fn members(&self, channel: i64) -> Result<Vec<UserRow>>;
    async fn member_ids(&self, channel: i64) -> Result<Vec<i64>>;
    /// The user's channels with their unread counts, most recent activity first.
    async fn channels_of(&self, user: i64) -> Result<Vec<(ChannelRow, i64)>>;
    /// A page of a channel's history: before `before` (newest first, returned oldest
    /// first) or after `after` (oldest first).
    async fn history(
        &self,
        channel: i64,
        before: Option<i64>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MessageRow>>;
    /// Messages with ids above `since` in any of the user's channels, oldest first; those
    /// whose sender the user blocked come hidden (without content).
    ///
    /// Gap-free on every engine: a message not yet visible to this read will have an id
    /// above every id this read returns (see `docs/decisions/0001-sync-cursor.md`).
    async fn since(&self, user: i64, since: i64, limit: i64) -> Result<Vec<MessageRow>>;
    /// The newest message of a channel.
    async fn last_message(&self, channel: i64) -> Result<Option<MessageRow>>;
    /// Moves a member's read position forward (never back, never past the newest
    /// message); returns the position now stored (`None` if they are not a member).
    async fn mark_read(&self, channel: i64, user: i64, message: i64) -> Result<Option<i64>>;
    /// One message of a channel.
    async fn message(&self, channel: i64, id: i64) -> Result<Option<MessageRow>>;
    /// The message `sender` stored under `client_msg_id`, in any channel.
    async fn message_by_key(&self, sender: i64, client_msg_id: &str) -> Result<Option<MessageRow>>;
    /// Replaces the content of message `id` of `channel` and sets its `edited_at` to `now`,
    /// if `sender` sent it at or after `sent_since` and has not deleted it; its
    /// notifications get `excerpt`, in the same transaction. The message as now stored, or
    /// `None` (nothing changed) when it does not qualify.
    #[allow(clippy::too_many_arguments)]
    async fn edit_message(
        &self,
        channel: i64,
        id: i64,
        sender: i64,
        content: &str,
        excerpt: &str,
        sent_since: i64,
        now: i64,
    ) -> Result<Option<MessageRow>>;
    /// Empties the content of message `id` of `channel` and sets its `deleted_at` to
    /// `now`, if `sender` sent it and has not deleted it yet, and drops its notifications,
    /// in one transaction. The message as now stored, or `None` (nothing changed).
    async fn delete_message(
        &self,
        channel: i64,
        id: i64,
        sender: i64,
        now: i64,
    ) -> Result<Option<MessageRow>>;
    /// Commits a batch of sends in one transaction (group commit): checks each sender's
    /// membership, returns the stored message for a repeated `client_msg_id`, numbers the
    /// new messages with ids above every stored message's and with each channel's next
    /// `seq`s, and moves the channels on. One answer per send, in order.
    async fn commit_messages(
        &self,
        ids: &IdGenerator,
        batch: &[&NewMessage],
    ) -> Result<Vec<Committed>>;
}
