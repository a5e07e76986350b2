//! The authenticated-user extractor.

use super::service;
use crate::{error::AppError, http::cookies, state::AppState};
use app::model::User;
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap},
};

/// The user making the request, from `Authorization: Bearer <token>` or, for the browser,
/// the `kith_session` cookie (the CSRF middleware has already vetted cookie-authenticated
/// state changes). Rejects with 401 `unauthorized`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    /// The token that authenticated this request (logout revokes exactly this one).
    pub token: String,
}

/// The token a request presents, if any.
pub fn request_token(parts: &Parts) -> Result<Option<String>, AppError> {
    token_from_headers(&parts.headers)
}

/// The token in `Authorization: Bearer` or, failing that, the session cookie.
pub fn token_from_headers(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AppError::unauthorized())?;
        return match value.strip_prefix("Bearer ") {
            Some(token) => Ok(Some(token.trim().to_string())),
            None => Err(AppError::unauthorized()),
        };
    }
    Ok(cookies::get(headers, cookies::SESSION_COOKIE).map(str::to_string))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = request_token(parts)?.ok_or_else(AppError::unauthorized)?;
        match service::authenticate(state, &token).await? {
            Some(user) => Ok(Self { user, token }),
            None => Err(AppError::unauthorized()),
        }
    }
}

/// Like [`AuthUser`], but anonymous requests pass as `None` (a bad token is still a 401).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<User>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match request_token(parts)? {
            None => Ok(Self(None)),
            Some(token) => match service::authenticate(state, &token).await? {
                Some(user) => Ok(Self(Some(user))),
                None => Err(AppError::unauthorized()),
            },
        }
    }
}
