//! Accounts and sessions (API.md "Accounts").
//!
//! * `routes`: the HTTP handlers of `/v1/auth/*`.
//! * `service`: registration, login, logout and token checks, shared with the UI.
//! * `extract`: the [`AuthUser`] extractor every authenticated route uses.
//! * `password`, `token`: Argon2id hashing and session tokens.
//! * the SQL lives in `crate::storage` (one interface per feature, one file per engine).

pub mod extract;
pub mod password;
pub mod routes;
pub mod service;
pub mod token;

pub use extract::AuthUser;
