//! User profiles: `GET /v1/me` and `GET /v1/users/{username}`.

pub mod routes;
