//! Argon2id password hashing (the `argon2` crate's defaults: m=19456 KiB, t=2, p=1),
//! always off the async runtime and bounded by `AppState::hashing`.

use crate::{error::AppError, state::AppState};
use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

/// Hashes `password` into a PHC string.
pub async fn hash(state: &AppState, password: String) -> Result<String, AppError> {
    let _permit = state
        .hashing
        .acquire()
        .await
        .map_err(|_| AppError::internal("hashing semaphore closed"))?;
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| AppError::internal(format!("hash task: {e}")))?
}

/// Hashes on the current thread; for start-up and blocking contexts only.
pub fn hash_blocking(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("argon2: {e}")))
}

/// Checks `password` against `phc`. With `None` (unknown user) it checks against
/// `AppState::dummy_hash` instead, so an unknown user costs the same time as a wrong
/// password and the two cannot be told apart.
pub async fn verify(
    state: &AppState,
    password: String,
    phc: Option<String>,
) -> Result<bool, AppError> {
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| state.dummy_hash.to_string());
    let _permit = state
        .hashing
        .acquire()
        .await
        .map_err(|_| AppError::internal("hashing semaphore closed"))?;
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| AppError::internal(format!("verify task: {e}")))?;
    Ok(known && ok)
}
