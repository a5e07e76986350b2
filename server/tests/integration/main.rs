//! The server's integration tests, one binary: every suite starts real servers on port 0
//! with a real database (SQLite, or PostgreSQL when `KITH_TEST_DATABASE_URL` names one),
//! on the in-process backend and, when `KITH_TEST_REDIS_URL` answers, on Redis too. One binary links once, where nine linked the whole server nine times.

#[macro_use]
mod common;

mod account_deletion;
mod accounts;
mod authorization;
mod backend;
mod backup;
mod blocks;
mod chat;
mod chat_property;
mod cluster;
mod cluster_sync;
mod crash;
mod feed;
mod hosts;
mod limits;
mod media;
mod message_edits;
mod notifications;
mod outage;
mod presence;
mod storage;
mod web;
mod ws;
mod ws_loop;
