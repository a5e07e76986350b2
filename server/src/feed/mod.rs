//! The news feed (the book's chapter 11): post service, fanout service and workers, news
//! feed service, and the caches they share.
//!
//! * `routes`: `/v1/me/feed`, `/v1/posts/*`, `/v1/users/{username}/posts`.
//! * `posts`: the post service (publish, delete, likes).
//! * `fanout`: fanout-on-write through the outbox, queue and workers.
//! * `timeline`: the news feed service (cache, SQLite and celebrity merge) and hydration.
//! * `caches`: post, user and like-count caches.
//! * `json`: posts and pages written as API JSON from the caches' rendered pieces.
//! * the SQL lives in `crate::storage` (one interface per feature, one file per engine).

pub mod caches;
pub mod fanout;
pub mod json;
pub mod posts;
pub mod routes;
pub mod timeline;
