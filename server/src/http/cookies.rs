//! Reading and writing the two cookies Kith uses.
//!
//! * `kith_session`: the session token for the browser UI. HttpOnly (scripts never see
//!   it), SameSite=Lax (not sent on cross-site subrequests), Secure over HTTPS.
//! * `kith_csrf`: a random value the server also renders into its forms; a state change
//!   must present both (double submit), which a cross-site page cannot do.

use axum::http::{header, HeaderMap};

pub const SESSION_COOKIE: &str = "kith_session";
pub const CSRF_COOKIE: &str = "kith_csrf";

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value for the session; `None` clears it.
pub fn session(token: Option<&str>, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(t) => format!(
            "{SESSION_COOKIE}={t}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

/// A `Set-Cookie` value for the CSRF token.
pub fn csrf(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// Whether the client reached us over HTTPS (only a trusted proxy can tell us so).
pub fn is_https(headers: &HeaderMap, trust_proxy: bool) -> bool {
    trust_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_cookies_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; kith_session=abc; b=2"),
        );
        assert_eq!(get(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "kith"), None);
    }
}
