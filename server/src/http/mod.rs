//! Cross-cutting HTTP concerns: cookies, CSRF defence, security headers, client address,
//! caps on open connections, the server's read timeouts.

pub mod client;
pub mod cookies;
pub mod csrf;
pub mod edge;
pub mod security;
pub mod serve;
pub mod slots;
