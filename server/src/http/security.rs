//! Security headers on every response, with a fresh CSP nonce per request.
//!
//! The nonce is put in the request's extensions ([`CspNonce`]) before the handler runs
//! ([`SecurityHeaders::prepare`]); the Leptos renderer reads it from there so the scripts
//! it emits carry the same nonce the header allows.

use crate::state::AppState;
use axum::{extract::Request, http::HeaderValue, response::Response};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use leptos::config::Env;
use rand::RngCore as _;

/// The CSP nonce of this request.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

/// The security headers step of the HTTP edge (`super::edge`): [`SecurityHeaders::prepare`]
/// before the handler, [`SecurityHeaders::apply`] to its response.
pub struct SecurityHeaders {
    nonce: String,
    https: bool,
}

impl SecurityHeaders {
    /// Draws the request's nonce and hands it to the renderer as a [`CspNonce`].
    pub fn prepare(state: &AppState, req: &mut Request) -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let nonce = URL_SAFE_NO_PAD.encode(bytes);
        let https = super::cookies::is_https(req.headers(), state.config.trust_proxy);
        req.extensions_mut().insert(CspNonce(nonce.clone()));
        Self { nonce, https }
    }

    /// Sets the headers on the response.
    pub fn apply(self, state: &AppState, response: &mut Response) {
        let Self { nonce, https } = self;
        // In development cargo-leptos' live reload talks to its own port.
        let reload = if state.leptos.env == Env::DEV {
            format!(
                " ws://127.0.0.1:{0} ws://localhost:{0}",
                state.leptos.reload_port
            )
        } else {
            String::new()
        };
        // The chat servers discovery lists: the live client connects to them directly.
        let nodes = state.cluster.connect_sources();
        let csp = format!(
            "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic' 'wasm-unsafe-eval'; \
             style-src 'self'; img-src 'self' data:; connect-src 'self'{nodes}{reload}; object-src 'none'; \
             base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        );
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert("content-security-policy", v);
        }
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            "referrer-policy",
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        );
        h.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin"),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        if https {
            h.insert(
                "strict-transport-security",
                HeaderValue::from_static("max-age=63072000; includeSubDomains"),
            );
        }
    }
}
