//! Chat (the book's chapter 12): channels, the message store and sync.
//!
//! * `routes`: the REST endpoints and the long-poll `GET /v1/chat/sync`.
//! * `ws`: the chat hub, `GET /v1/chat/ws`; `delivered`: what one connection has sent (where
//!   it resumes after lost wake-ups, what not to send twice).
//! * `service`: channels and membership, sending (durable first, then a pub/sub wake-up),
//!   history and sync.
//! * the SQL lives in `crate::storage::chat` and its engines; messages are keyed by
//!   `(channel_id, message_id)`.
//! * `writer`: the one task per node that stores messages, committing them in groups, and
//!   publishes their wake-ups in commit order.
//! * `longpoll`: answered long polls' subscriptions, parked for the poll that continues
//!   from their cursor.
//!
//! The database is the source of truth: a stored message goes to its members' connections
//! as a live event (`crate::live`, all of them in one publish), which only wakes them up;
//! anything a wake-up missed is recovered by the next `sync`.

mod delivered;
pub mod longpoll;
pub mod routes;
pub mod service;
pub mod writer;
pub mod ws;
