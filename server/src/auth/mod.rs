//! Accounts and sessions (API.md "Accounts").
//!
//! * `routes`: the HTTP handlers of `/v1/auth/*`, the password and the session list.
//! * `service`: registration, login, logout, token checks, password changes and sessions,
//!   shared with the UI.
//! * `device`: a session's device label, from its User-Agent.
//! * `extract`: the [`AuthUser`] extractor every authenticated route uses.
//! * `password`, `token`: Argon2id hashing and session tokens.
//! * the SQL lives in `crate::storage` (one interface per feature, one file per engine).

pub mod device;
pub mod extract;
pub mod password;
pub mod routes;
pub mod service;
pub mod token;

pub use extract::AuthUser;
