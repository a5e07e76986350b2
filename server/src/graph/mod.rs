//! The social graph: who follows whom, and friends (mutual follows).
//!
//! * `routes`: `/v1/me/following/{username}`, `/v1/me/{following,followers,friends}`.
//! * `service`: follow and unfollow, keeping the follower's feed cache consistent.
//! * the SQL lives in `crate::storage` (one interface per feature, one file per engine).

pub mod routes;
pub mod service;
