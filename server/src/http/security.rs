//! Security headers on every response, with a fresh CSP nonce per request.
//!
//! The nonce is put in the request's extensions ([`CspNonce`]) before the handler runs
//! ([`SecurityHeaders::prepare`]); the Leptos renderer reads it from there so the scripts
//! it emits carry the same nonce the header allows.

use crate::state::AppState;
use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue},
    response::Response,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use leptos::config::Env;
use rand::RngCore as _;

/// Not among `http`'s named headers. A name as a constant is not parsed per response.
const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
/// Room for the policy's fixed text, so that it is built without growing.
const CSP_LEN: usize = 320;

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
        // The chat servers discovery lists: the live client connects to them directly.
        let nodes = state.cluster.connect_sources();
        let mut csp = String::with_capacity(CSP_LEN + nonce.len() + nodes.len());
        csp.push_str("default-src 'self'; script-src 'nonce-");
        csp.push_str(&nonce);
        csp.push_str(
            "' 'strict-dynamic' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'",
        );
        csp.push_str(&nodes);
        // In development cargo-leptos' live reload talks to its own port.
        if state.leptos.env == Env::DEV {
            let port = state.leptos.reload_port;
            csp.push_str(&format!(" ws://127.0.0.1:{port} ws://localhost:{port}"));
        }
        csp.push_str(
            "; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        );
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        );
        h.insert(
            CROSS_ORIGIN_OPENER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if https {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=63072000; includeSubDomains"),
            );
        }
    }
}
