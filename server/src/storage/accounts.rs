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
    pub created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: Id(r.id),
            username: r.username,
            display_name: r.display_name,
            created_at: to_datetime(r.created_at),
        }
    }
}

/// Users, their password hashes and their sessions (tokens stored as hashes only).
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync {
    /// Adds a user; a taken username (compared without case) is a unique violation.
    async fn insert_user(
        &self,
        id: i64,
        username: &str,
        display_name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<()>;
    /// The user and their password hash, for login.
    async fn credentials(&self, username: &str) -> Result<Option<(UserRow, String)>>;
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>>;
    /// The users among `ids` (in no particular order; unknown ids are left out).
    async fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<UserRow>>;
    async fn insert_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<()>;
    /// The user owning an unexpired session, and when the session expires.
    async fn session_user(&self, token_hash: &[u8], now: i64) -> Result<Option<(UserRow, i64)>>;
    async fn delete_session(&self, token_hash: &[u8]) -> Result<()>;
    /// Removes expired sessions; returns how many.
    async fn delete_expired_sessions(&self, now: i64) -> Result<u64>;
}
