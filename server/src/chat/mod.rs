//! Chat (the book's chapter 12): channels, the message store and sync.
//!
//! * `routes`: the REST endpoints and the long-poll `GET /v1/chat/sync`.
//! * `ws`: the chat hub, `GET /v1/chat/ws`; `delivered`: what one connection has sent (where
//!   it resumes after lost wake-ups, what not to send twice).
//! * `service`: channels and membership, sending (durable first, then a pub/sub wake-up),
//!   history and sync.
//! * the SQL lives in `crate::storage::chat` and its engines; messages are keyed by
//!   `(channel_id, message_id)`.
//! * `writer`: the one task per node that stores messages, committing them in groups.
//!
//! The database is the source of truth: pub/sub (`user:{id}` topics, all of a message's
//! members in one publish) only wakes waiting connections up, and anything a wake-up
//! missed is recovered by the next `sync`.

mod delivered;
pub mod routes;
pub mod service;
pub mod writer;
pub mod ws;

/// The pub/sub topic that wakes a user's connections.
pub fn user_topic(user_id: i64) -> String {
    crate::backend::id_key("user:", user_id)
}
