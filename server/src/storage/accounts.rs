//! Accounts and sessions.

use super::{to_datetime, Result};
use app::model::{Id, User};
use sqlx::FromRow;

/// A `users` row.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: Id(r.id),
            username: r.username,
            display_name: r.display_name,
            bio: r.bio,
            created_at: to_datetime(r.created_at),
        }
    }
}

/// When a session expires and when it was last used (its opening, if not since).
#[derive(Debug, Clone, Copy)]
pub struct SessionTimes {
    pub expires_at: i64,
    pub last_used_at: i64,
}

/// A `sessions` row as its owner sees it.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub token_hash: Vec<u8>,
    pub device: String,
    pub client_address: Option<String>,
    pub created_at: i64,
    /// `created_at` when it was not used since.
    pub last_used_at: i64,
}

/// What deleting an account removed, for the caches to forget.
#[derive(Debug, Default)]
pub struct DeletedAccount {
    /// Token hashes of its sessions.
    pub sessions: Vec<Vec<u8>>,
    /// Its posts.
    pub posts: Vec<i64>,
    /// Posts of others it liked.
    pub liked: Vec<i64>,
    /// Whom it followed.
    pub followees: Vec<i64>,
}

/// The display name a deleted account's messages show.
pub const DELETED_USER: &str = "Deleted user";

/// Users, their password hashes and their sessions (tokens stored as hashes only).
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync {
    /// Adds a user; a taken username (compared without case) is a unique violation. False
    /// (nothing added) when the username is held at `now` for a deleted account.
    async fn insert_user(
        &self,
        id: i64,
        username: &str,
        display_name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool>;
    /// The user and their password hash, for login (deleted accounts are not found).
    async fn credentials(&self, username: &str) -> Result<Option<(UserRow, String)>>;
    /// A user by name (deleted accounts are not found).
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>>;
    /// The users among `ids` (in no particular order; unknown ids are left out; deleted
    /// accounts are there, as "Deleted user").
    async fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<UserRow>>;
    /// Opens a session; `device` and `client_address` say where from.
    async fn insert_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        now: i64,
        expires_at: i64,
        device: &str,
        client_address: Option<&str>,
    ) -> Result<()>;
    /// The user owning an unexpired session, when the session expires and when it was last
    /// used.
    async fn session_user(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<(UserRow, SessionTimes)>>;
    /// Records that a session was used at `now`.
    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<()>;
    /// A user's unexpired sessions, most recently used first.
    async fn sessions_of(&self, user_id: i64, now: i64) -> Result<Vec<SessionRow>>;
    async fn delete_session(&self, token_hash: &[u8]) -> Result<()>;
    /// A user's password hash, by id.
    async fn password_hash(&self, user_id: i64) -> Result<Option<String>>;
    /// Replaces a user's password hash and ends every session of theirs but `keep`, in one
    /// transaction; returns the ended sessions' token hashes.
    async fn change_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep: &[u8],
    ) -> Result<Vec<Vec<u8>>>;
    /// Sets a user's display name and bio (each left as it is when `None`); the user as
    /// now stored, or `None` if there is no such user.
    async fn update_profile(
        &self,
        user_id: i64,
        display_name: Option<&str>,
        bio: Option<&str>,
    ) -> Result<Option<UserRow>>;
    /// Deletes an account in one transaction: its sessions, posts (their likes and
    /// notifications with them), likes, follows both ways, group memberships,
    /// notifications and read marks go; the row stays for the messages it sent, renamed
    /// `deleted_{id}` with the display name "Deleted user", no bio and no usable password;
    /// its username is held from new accounts until `hold_until`. `None` if there is no
    /// such (undeleted) account.
    async fn delete_account(
        &self,
        user_id: i64,
        now: i64,
        hold_until: i64,
    ) -> Result<Option<DeletedAccount>>;
    /// Removes expired sessions; returns how many.
    async fn delete_expired_sessions(&self, now: i64) -> Result<u64>;
}
