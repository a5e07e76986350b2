//! Who hears about a user's presence.

use super::Result;

#[async_trait::async_trait]
pub trait PresenceStore: Send + Sync {
    /// The user's friends (mutual follows) and the other members of the channels of at
    /// most `small` members they belong to.
    async fn audience(&self, user: i64, small: i64) -> Result<Vec<i64>>;
    /// Which of `users` `viewer` may see the presence of: themself, their friends, and the
    /// people they share a channel with.
    async fn visible_to(&self, viewer: i64, users: &[i64]) -> Result<Vec<i64>>;
    /// The id and username of each of `names`, in order (`None` for a name no user has;
    /// usernames compare without regard to case).
    async fn by_usernames(&self, names: &[String]) -> Result<Vec<Option<(i64, String)>>>;
}
