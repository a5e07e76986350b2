//! Accounts and sessions: the rules of API.md "Accounts" and SECURITY.md, independent of
//! HTTP so the JSON API and the UI's server functions share them.

use super::{device, password, token};
use crate::{
    backend::{Decision, Quota},
    error::AppError,
    http::client::ClientInfo,
    state::AppState,
    storage::is_unique_violation,
};
use app::model::{rules, AuthResponse, ErrorCode, Id, SessionInfo, User};
use std::time::Duration;

/// Failed logins allowed per account before it is throttled (per 15 minutes, as a burst).
const LOGIN_FAILURES_PER_ACCOUNT: u32 = 10;
/// Failed logins allowed per client address (per 15 minutes, as a burst).
const LOGIN_FAILURES_PER_CLIENT: u32 = 30;

fn login_quota(limit: u32) -> Quota {
    Quota {
        limit,
        period: Duration::from_secs(15 * 60),
        burst: limit,
    }
}

/// Registers a user and opens their first session. Each client address may create
/// `KITH_SIGNUP_RATE_PER_HOUR` accounts an hour (429 past it; loopback clients only when
/// that limit is set explicitly, see [`crate::config::Limits`]).
pub async fn register(
    state: &AppState,
    username: &str,
    password_text: String,
    display_name: Option<String>,
    client: &ClientInfo,
) -> Result<AuthResponse, AppError> {
    rules::check_new_username(username).map_err(|p| AppError::validation("username", p))?;
    rules::check_password(&password_text).map_err(|p| AppError::validation("password", p))?;
    let display_name = match display_name.map(|d| d.trim().to_string()) {
        Some(d) if !d.is_empty() => {
            rules::check_display_name(&d).map_err(|p| AppError::validation("display_name", p))?;
            d
        }
        _ => username.to_string(),
    };
    // Cheap pre-check so a taken name does not cost a hash; the UNIQUE index decides races.
    if state
        .store
        .accounts
        .user_by_username(username)
        .await?
        .is_some()
    {
        return Err(username_taken());
    }
    // Counted once the request is one that would create an account, before the hash (the
    // expensive part): mistakes in a form do not use up an address's sign-ups.
    let limits = &state.config.limits;
    if let Some(ip) = client
        .ip
        .filter(|ip| limits.signup_limit_loopback || !ip.to_canonical().is_loopback())
    {
        let per_hour = limits.signup_rate_per_hour;
        let quota = Quota {
            limit: per_hour,
            period: Duration::from_secs(3600),
            burst: per_hour,
        };
        state.take_quota(&format!("signup:ip:{ip}"), quota).await?;
    }
    let hash = password::hash(state, password_text).await?;
    let id = state.ids.next_id()?;
    let now = state.clock.now_ms();
    match state
        .store
        .accounts
        .insert_user(id, username, &display_name, &hash, now)
        .await
    {
        Ok(true) => {}
        // Held for a deleted account, or taken since the pre-check.
        Ok(false) => return Err(username_taken()),
        Err(e) if is_unique_violation(&e) => return Err(username_taken()),
        Err(e) => return Err(e.into()),
    }
    let user = User::from(crate::storage::UserRow {
        id,
        username: username.to_string(),
        display_name,
        bio: String::new(),
        created_at: now,
    });
    let token = open_session(state, id, client).await?;
    Ok(AuthResponse { user, token })
}

fn username_taken() -> AppError {
    AppError::new(ErrorCode::UsernameTaken, "username: already taken")
}

/// Checks credentials and opens a session. Unknown users and wrong passwords take the same
/// path (a full Argon2 verification) and get the same answer.
pub async fn login(
    state: &AppState,
    username: &str,
    password_text: String,
    client: &ClientInfo,
) -> Result<AuthResponse, AppError> {
    let now = state.clock.now_ms();
    let account_key = format!("login:user:{}", username.to_lowercase());
    let client_key = client.ip.map(|ip| format!("login:ip:{ip}"));
    let limiter = &state.backends.limiter;
    let mut checks = vec![(account_key, login_quota(LOGIN_FAILURES_PER_ACCOUNT))];
    if let Some(key) = client_key {
        checks.push((key, login_quota(LOGIN_FAILURES_PER_CLIENT)));
    }
    for (key, quota) in &checks {
        if let Decision::Denied { retry_after } = limiter.peek(key, *quota, now).await? {
            return Err(AppError::rate_limited(retry_after));
        }
    }

    // Over-long input cannot match any stored password; still verify (against the dummy
    // hash) so the timing does not reveal anything.
    let row = if username.len() <= 64 {
        state.store.accounts.credentials(username).await?
    } else {
        None
    };
    let (user, phc) = match row {
        Some((user, phc)) => (Some(user), Some(phc)),
        None => (None, None),
    };
    let verified = password::verify(state, password_text, phc).await?;
    match (verified, user) {
        (true, Some(user)) => {
            let token = open_session(state, user.id, client).await?;
            Ok(AuthResponse {
                user: user.into(),
                token,
            })
        }
        _ => {
            for (key, quota) in &checks {
                limiter.acquire(key, *quota, now).await?;
            }
            Err(AppError::new(
                ErrorCode::InvalidCredentials,
                "wrong username or password",
            ))
        }
    }
}

async fn open_session(
    state: &AppState,
    user_id: i64,
    client: &ClientInfo,
) -> Result<String, AppError> {
    let token = token::generate();
    let now = state.clock.now_ms();
    let expires = now + state.config.session_ttl.as_millis() as i64;
    let address = client.ip.map(|ip| ip.to_canonical().to_string());
    state
        .store
        .accounts
        .insert_session(
            &token::hash(&token),
            user_id,
            now,
            expires,
            &device::label(client.user_agent.as_deref()),
            address.as_deref(),
        )
        .await?;
    Ok(token)
}

/// How long a checked session is remembered in the cache (never past its expiry).
const SESSION_CACHE_TTL_MS: i64 = 60_000;
/// How stale a session's "last used" may get before a check records a new one.
const TOUCH_EVERY_MS: i64 = 5 * 60_000;

/// A session as remembered in the cache.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedSession {
    user: User,
    expires_at: i64,
}

fn session_key(hash: &[u8; 32]) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    format!("session:{}", URL_SAFE_NO_PAD.encode(hash))
}

/// The user a token belongs to, if it is well formed, known and unexpired.
///
/// Every authenticated request asks this, so a checked session is kept in the shared
/// cache for up to a minute; logout deletes that entry together with the row, so a revoked
/// token stops working at once on every node that shares the cache.
pub async fn authenticate(state: &AppState, token_text: &str) -> Result<Option<User>, AppError> {
    if !token::looks_valid(token_text) {
        return Ok(None);
    }
    let hash = token::hash(token_text);
    let key = session_key(&hash);
    let now = state.clock.now_ms();
    let cache = &state.backends.cache;
    if let Some(bytes) = cache.get(&key).await? {
        if let Ok(cached) = serde_json::from_slice::<CachedSession>(&bytes) {
            if cached.expires_at > now {
                return Ok(Some(cached.user));
            }
        }
    }
    let Some((row, times)) = state.store.accounts.session_user(&hash, now).await? else {
        return Ok(None);
    };
    let expires_at = times.expires_at;
    // "Last used" is kept to within TOUCH_EVERY, so a busy session writes rarely; a failed
    // write only makes it look older.
    if now - times.last_used_at >= TOUCH_EVERY_MS {
        if let Err(e) = state.store.accounts.touch_session(&hash, now).await {
            tracing::warn!(error = %e, "could not record a session's use");
        }
    }
    let user = User::from(row);
    let ttl = (expires_at - now).clamp(1, SESSION_CACHE_TTL_MS);
    if let Ok(bytes) = serde_json::to_vec(&CachedSession {
        user: user.clone(),
        expires_at,
    }) {
        let ttl = std::time::Duration::from_millis(ttl as u64);
        cache.set(&key, bytes.into(), Some(ttl)).await?;
    }
    Ok(Some(user))
}

/// Drops the cached sessions of `user`, so the next request of each reads the user as now
/// stored (after a profile edit). The sessions themselves stay.
pub async fn refresh_sessions(state: &AppState, user: i64) -> Result<(), AppError> {
    let now = state.clock.now_ms();
    for session in state.store.accounts.sessions_of(user, now).await? {
        if let Ok(hash) = <[u8; 32]>::try_from(session.token_hash.as_slice()) {
            state.backends.cache.delete(&session_key(&hash)).await?;
        }
    }
    Ok(())
}

/// Revokes `user`'s token: its row goes, so does its cache entry, and the user's
/// WebSockets opened with it are told to close.
pub async fn logout(state: &AppState, user: i64, token_text: &str) -> Result<(), AppError> {
    revoke(state, user, &token::hash(token_text)).await
}

/// Changes `user`'s password: `current` must be right (wrong guesses are throttled as
/// failed logins of the account are), `new` must pass the password rules. Every other
/// session of theirs ends at once, on every node: rows, cache entries and open sockets;
/// the session `token_text` the request came with stays.
pub async fn change_password(
    state: &AppState,
    user: &User,
    token_text: &str,
    current: String,
    new: String,
) -> Result<(), AppError> {
    rules::check_password(&new).map_err(|p| AppError::validation("new_password", p))?;
    confirm_password(state, user, current, "the current password is wrong").await?;
    let hash = password::hash(state, new).await?;
    let keep = token::hash(token_text);
    let ended = state
        .store
        .accounts
        .change_password(user.id.0, &hash, &keep)
        .await?;
    for token_hash in ended {
        if let Ok(token_hash) = <[u8; 32]>::try_from(token_hash.as_slice()) {
            forget(state, user.id.0, &token_hash).await?;
        }
    }
    Ok(())
}

/// Checks that `password` is `user`'s, for an action that asks for it again: a wrong one
/// is 401 `invalid_credentials` with `wrong`, and counts as a failed login of the account
/// (429 once those are used up).
pub async fn confirm_password(
    state: &AppState,
    user: &User,
    password: String,
    wrong: &str,
) -> Result<(), AppError> {
    let now = state.clock.now_ms();
    let key = format!("login:user:{}", user.username.to_lowercase());
    let quota = login_quota(LOGIN_FAILURES_PER_ACCOUNT);
    let limiter = &state.backends.limiter;
    if let Decision::Denied { retry_after } = limiter.peek(&key, quota, now).await? {
        return Err(AppError::rate_limited(retry_after));
    }
    let phc = state.store.accounts.password_hash(user.id.0).await?;
    if !password::verify(state, password, phc).await? {
        limiter.acquire(&key, quota, now).await?;
        return Err(AppError::new(ErrorCode::InvalidCredentials, wrong));
    }
    Ok(())
}

/// `user`'s sessions, most recently used first; `current` is the token of the request.
pub async fn sessions(
    state: &AppState,
    user: &User,
    current: &str,
) -> Result<Vec<SessionInfo>, AppError> {
    let current = token::hash(current);
    let rows = state
        .store
        .accounts
        .sessions_of(user.id.0, state.clock.now_ms())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| SessionInfo {
            id: Id(token::session_id(&r.token_hash)),
            current: r.token_hash == current,
            device: r.device,
            client_address: r.client_address,
            created_at: crate::storage::to_datetime(r.created_at),
            last_used_at: crate::storage::to_datetime(r.last_used_at),
        })
        .collect())
}

/// Ends `user`'s session `id` (404 unless it is one of theirs): as a logout of it would,
/// on every node.
pub async fn end_session(state: &AppState, user: &User, id: i64) -> Result<(), AppError> {
    let rows = state
        .store
        .accounts
        .sessions_of(user.id.0, state.clock.now_ms())
        .await?;
    let hash = rows
        .into_iter()
        .map(|r| r.token_hash)
        .find(|h| token::session_id(h) == id)
        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .ok_or_else(|| AppError::not_found("session"))?;
    revoke(state, user.id.0, &hash).await
}

/// Ends one session: its row, its cache entry, and its open sockets.
async fn revoke(state: &AppState, user: i64, hash: &[u8; 32]) -> Result<(), AppError> {
    state.store.accounts.delete_session(hash).await?;
    forget(state, user, hash).await
}

/// What follows a session's row going: its cache entry goes, its sockets close.
pub async fn forget(state: &AppState, user: i64, hash: &[u8; 32]) -> Result<(), AppError> {
    state.backends.cache.delete(&session_key(hash)).await?;
    crate::live::revoke_session(state, user, hash).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::model::Id;

    #[test]
    fn cached_sessions_round_trip() {
        let user = User {
            id: Id(42),
            username: "amy".into(),
            display_name: "Amy".into(),
            bio: "Paints.".into(),
            created_at: crate::storage::to_datetime(1_700_000_000_123),
        };
        let bytes = serde_json::to_vec(&CachedSession {
            user: user.clone(),
            expires_at: 7,
        })
        .unwrap_or_default();
        let back: Result<CachedSession, _> = serde_json::from_slice(&bytes);
        assert!(
            back.is_ok(),
            "{:?} from {}",
            back.err(),
            String::from_utf8_lossy(&bytes)
        );
    }
}
