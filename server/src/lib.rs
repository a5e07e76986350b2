//! The Kith server: a news feed and chat over one HTTP API, with the Leptos UI rendered
//! and hydrated on top of it.
//!
//! # Layout
//! * `startup`: builds a node ([`startup::Application`]) and its router.
//! * `config`, `state`, `error`, `telemetry`: cross-cutting pieces.
//! * `http`: cookies, CSRF defence, security headers, client address.
//! * `auth`: accounts and sessions; `users`: profiles.
//! * `feed`: the news feed (post service, fanout, news feed service, caches).
//! * `graph`: the social graph (follows, friends, user search).
//! * `chat`: channels, the message store, the WebSocket hub, sync and long-poll.
//! * `live`: live events, what reaches users' open connections on whichever node.
//! * `cluster`: several nodes as one service: leased node ids, discovery.
//! * `presence`: the presence servers (who is online, told to friends and small groups).
//! * `notifications`: the notification service (offline chat recipients, new posts).
//! * `outbox`: durable background jobs (feed fanout, then post notifications).
//! * `backend`: caches, queues, pub/sub and rate limits, in-process or on Redis.
//! * `storage`: the durable store behind one interface per feature: SQLite (one machine)
//!   or PostgreSQL (a cluster), with their migrations (`server/migrations/{sqlite,postgres}/`).
//! * `id`: the Snowflake ID generator.
//! * `ui`: the server's side of the Leptos UI.
//! * `ops`, `openapi`: health, readiness, metrics and the API document.

// Leptos' typed views nest deeply; the default limit is too small for the page types.
#![recursion_limit = "256"]

pub mod auth;
pub mod backend;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod error;
pub mod feed;
pub mod graph;
pub mod http;
pub mod id;
pub mod live;
pub mod media;
pub mod notifications;
pub mod openapi;
pub mod ops;
pub mod outbox;
pub mod pagination;
pub mod presence;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod ui;
pub mod users;
