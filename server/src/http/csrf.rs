//! CSRF defence for cookie-authenticated state changes.
//!
//! Requests that carry `Authorization: Bearer` are not ambient (a browser never adds that
//! header by itself) and pass. Every other POST/PUT/PATCH/DELETE that carries the session
//! cookie, and every server-function call (`/api/...`), must:
//! 1. come from an allowed origin (`Origin`, or `Sec-Fetch-Site: same-origin` when a
//!    browser omits `Origin`), and
//! 2. present the `kith_csrf` cookie's value: in `X-CSRF-Token` for the JSON API, or as
//!    the `csrf` argument of a server function (checked by [`verify_token`]).
//!
//! The check ([`check`], a step of the HTTP edge) also makes sure every browser has a
//! `kith_csrf` cookie, and hands its value to the page renderer as a [`CsrfToken`]
//! extension so forms can embed it. A request with `Authorization: Bearer` comes from a
//! program, not a browser: it gets no cookie (nor a token drawn from the OS for one).

use super::cookies;
use crate::{error::AppError, state::AppState};
use axum::{
    extract::Request,
    http::{header, HeaderMap, HeaderValue, Method},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::{rngs::OsRng, RngCore as _};
use subtle::ConstantTimeEq;

/// This request's CSRF token (from the cookie, or freshly minted).
#[derive(Clone, Debug)]
pub struct CsrfToken(pub String);

/// Compares a submitted token with the request's cookie in constant time.
pub fn verify_token(headers: &HeaderMap, submitted: &str) -> Result<(), AppError> {
    match cookies::get(headers, cookies::CSRF_COOKIE) {
        Some(expected)
            if !expected.is_empty()
                && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(AppError::forbidden(
            "missing or invalid CSRF token; reload the page",
        )),
    }
}

fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => allowed.iter().any(|a| a == origin),
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "same-origin"),
    }
}

fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "))
}

/// The CSRF step of the HTTP edge (`super::edge`), before the handler: refuses an ambient
/// cross-origin or tokenless state change (`Err`, the error to answer with), else hands the
/// request's token to the renderer as a [`CsrfToken`] and returns the `Set-Cookie` value
/// to add to the response when the browser had no token yet (never for a bearer client).
pub fn check(state: &AppState, req: &mut Request) -> Result<Option<HeaderValue>, AppError> {
    let headers = req.headers();
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let server_fn = req.uri().path().starts_with("/api/");
    let bearer = has_bearer(headers);
    let cookie_auth = cookies::get(headers, cookies::SESSION_COOKIE).is_some() && !bearer;

    if unsafe_method && (server_fn || cookie_auth) {
        if !origin_allowed(headers, &state.config.allowed_origins) {
            return Err(AppError::forbidden("cross-origin request refused"));
        }
        if cookie_auth && !server_fn {
            let submitted = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            verify_token(headers, submitted)?;
        }
    }

    let existing = cookies::get(req.headers(), cookies::CSRF_COOKIE)
        .filter(|v| v.len() >= 16)
        .map(str::to_string);
    if bearer && existing.is_none() {
        return Ok(None);
    }
    let minted = existing.is_none();
    let token = existing.unwrap_or_else(|| {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    });
    let cookie = if minted {
        let secure = cookies::is_https(req.headers(), state.config.trust_proxy);
        HeaderValue::from_str(&cookies::csrf(&token, secure)).ok()
    } else {
        None
    };
    req.extensions_mut().insert(CsrfToken(token));
    Ok(cookie)
}
