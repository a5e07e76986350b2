//! Users and sessions on PostgreSQL.

use super::PgStore;
use crate::storage::{
    accounts::{AccountStore, DeletedAccount, SessionRow, SessionTimes, UserRow, DELETED_USER},
    Result,
};
use sqlx::FromRow;

#[async_trait::async_trait]
impl AccountStore for PgStore {
    async fn insert_user(
        &self,
        id: i64,
        username: &str,
        display_name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool> {
        // A taken name violates `users_username` (on `lower(username)`); the caller maps
        // that to 409. No transaction is open, so letting the error surface is fine. A
        // held name inserts nothing.
        let added = sqlx::query(
            "INSERT INTO users (id, username, display_name, password_hash, created_at)
             SELECT $1, $2, $3, $4, $5
             WHERE NOT EXISTS (
                 SELECT 1 FROM username_holds WHERE username = lower($2) AND until > $5)",
        )
        .bind(id)
        .bind(username)
        .bind(display_name)
        .bind(password_hash)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(added > 0)
    }

    async fn credentials(&self, username: &str) -> Result<Option<(UserRow, String)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            password_hash: String,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, username, display_name, bio, created_at, password_hash
             FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.user, r.password_hash)))
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        sqlx::query_as(
            "SELECT id, username, display_name, bio, created_at
             FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
    }

    async fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<UserRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(
            "SELECT id, username, display_name, bio, created_at FROM users WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }

    async fn insert_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        now: i64,
        expires_at: i64,
        device: &str,
        client_address: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, device, client_address)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .bind(device)
        .bind(client_address)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_user(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<(UserRow, SessionTimes)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            expires_at: i64,
            last_used_at: i64,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT u.id, u.username, u.display_name, u.bio, u.created_at, s.expires_at,
                    COALESCE(s.last_used_at, s.created_at) AS last_used_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            (
                r.user,
                SessionTimes {
                    expires_at: r.expires_at,
                    last_used_at: r.last_used_at,
                },
            )
        }))
    }

    async fn touch_session(&self, token_hash: &[u8], now: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sessions_of(&self, user_id: i64, now: i64) -> Result<Vec<SessionRow>> {
        sqlx::query_as(
            "SELECT token_hash, device, client_address, created_at,
                    COALESCE(last_used_at, created_at) AS last_used_at
             FROM sessions WHERE user_id = $1 AND expires_at > $2
             ORDER BY COALESCE(last_used_at, created_at) DESC, created_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
    }

    async fn delete_session(&self, token_hash: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn password_hash(&self, user_id: i64) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
    }

    async fn update_profile(
        &self,
        user_id: i64,
        display_name: Option<&str>,
        bio: Option<&str>,
    ) -> Result<Option<UserRow>> {
        sqlx::query_as(
            "UPDATE users SET display_name = coalesce($1, display_name), bio = coalesce($2, bio)
             WHERE id = $3 RETURNING id, username, display_name, bio, created_at",
        )
        .bind(display_name)
        .bind(bio)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
    }

    async fn delete_account(
        &self,
        user_id: i64,
        now: i64,
        hold_until: i64,
    ) -> Result<Option<DeletedAccount>> {
        let mut tx = self.pool.begin().await?;
        let username: Option<String> = sqlx::query_scalar(
            "SELECT username FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(username) = username else {
            return Ok(None);
        };
        let sessions =
            sqlx::query_scalar("DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        // Their likes and pulled-post notification marks cascade.
        let posts = sqlx::query_scalar("DELETE FROM posts WHERE author_id = $1 RETURNING id")
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
        let liked = sqlx::query_scalar("DELETE FROM likes WHERE user_id = $1 RETURNING post_id")
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
        let followees =
            sqlx::query_scalar("DELETE FROM follows WHERE follower_id = $1 RETURNING followee_id")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        for statement in [
            "DELETE FROM follows WHERE followee_id = $1",
            "DELETE FROM notifications WHERE user_id = $1 OR actor_id = $1",
            "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
            "DELETE FROM notification_reads WHERE user_id = $1",
            // Groups lose the member; a 1:1 conversation keeps them, as "Deleted user".
            "DELETE FROM channel_members WHERE user_id = $1
               AND channel_id IN (SELECT id FROM channels WHERE kind = 'group')",
        ] {
            sqlx::query(statement)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE users SET username = 'deleted_' || id, display_name = $1, bio = '',
                    password_hash = '', deleted_at = $2
             WHERE id = $3",
        )
        .bind(DELETED_USER)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO username_holds (username, until) VALUES (lower($1), $2)
             ON CONFLICT (username) DO UPDATE SET until = excluded.until",
        )
        .bind(&username)
        .bind(hold_until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(DeletedAccount {
            sessions,
            posts,
            liked,
            followees,
        }))
    }

    async fn change_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep: &[u8],
    ) -> Result<Vec<Vec<u8>>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let ended: Vec<Vec<u8>> = sqlx::query_scalar(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING token_hash",
        )
        .bind(user_id)
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn delete_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
