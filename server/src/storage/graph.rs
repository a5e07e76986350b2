//! The social graph: follows, follow lists, user search, the counters a profile shows.

use super::{accounts::UserRow, Result};
use sqlx::FromRow;

/// A user in a follow or block list, with the time of the follow or block (the list's
/// order and cursor).
#[derive(Debug, FromRow)]
pub struct Listed {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub listed_at: i64,
}

/// What a block changed.
#[derive(Debug, Default)]
pub struct Blocked {
    /// False if the block existed already (nothing changed).
    pub new: bool,
    /// The blocker followed the blocked person (that follow is gone).
    pub was_following: bool,
    /// The blocked person followed the blocker (that follow is gone).
    pub was_followed: bool,
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
    /// Whom the user blocked.
    Blocks,
}

/// Follower, following and post counts of a user (kept by triggers in `user_stats`), and
/// whether the viewer follows and whether they blocked them.
#[derive(Debug)]
pub struct Counts {
    pub followers: i64,
    pub following: i64,
    pub posts: i64,
    pub followed_by_viewer: bool,
    pub blocked_by_viewer: bool,
}

#[async_trait::async_trait]
pub trait GraphStore: Send + Sync {
    /// Adds a follow; false if it existed.
    async fn follow(&self, follower: i64, followee: i64, now: i64) -> Result<bool>;
    /// Removes a follow and, in the same transaction, the notifications of the followee's
    /// posts that the follower kept; false if there was no follow.
    async fn unfollow(&self, follower: i64, followee: i64) -> Result<bool>;
    /// One page of a list, most recent follow first, strictly after `cursor` = (time, id).
    async fn list(
        &self,
        user: i64,
        which: List,
        cursor: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<Listed>>;
    /// Users whose name starts with `prefix` (only `[a-z0-9_]`), alphabetically after
    /// `after`.
    async fn search(&self, prefix: &str, after: Option<&str>, limit: i64) -> Result<Vec<UserRow>>;
    async fn counts(&self, user: i64, viewer: Option<i64>) -> Result<Counts>;
    async fn follower_count(&self, user: i64) -> Result<i64>;
    /// Everyone `user` follows who has at least `threshold` followers (their posts are
    /// pulled at read time instead of pushed).
    async fn celebrity_followees(&self, user: i64, threshold: i64) -> Result<Vec<i64>>;
    /// One page of an author's followers after `after`: the `limit` smallest ids.
    async fn followers_after(&self, author: i64, after: i64, limit: i64) -> Result<Vec<i64>>;
    /// `blocker` blocks `blocked`, in one transaction: the block, the end of the follows
    /// between them both ways, and of the notifications either had of the other.
    async fn block(&self, blocker: i64, blocked: i64, now: i64) -> Result<Blocked>;
    /// Lifts a block; false if there was none.
    async fn unblock(&self, blocker: i64, blocked: i64) -> Result<bool>;
    /// Whether either of `a` and `b` blocked the other.
    async fn apart(&self, a: i64, b: i64) -> Result<bool>;
    /// Whom `user` blocked.
    async fn blocked_by(&self, user: i64) -> Result<Vec<i64>>;
    /// Who blocked `user`.
    async fn blockers_of(&self, user: i64) -> Result<Vec<i64>>;
}
