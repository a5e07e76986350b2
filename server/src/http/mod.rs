//! Cross-cutting HTTP concerns: cookies, CSRF defence, security headers, client address.

pub mod client;
pub mod cookies;
pub mod csrf;
pub mod security;
