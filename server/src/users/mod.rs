//! User profiles: `GET`/`PATCH /v1/me` and `GET /v1/users/{username}`.

pub mod routes;
pub mod service;
