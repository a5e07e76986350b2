//! Media: images attached to posts and chat messages.
//!
//! # Layout
//! * `routes`: `POST /v1/media` (the upload) and `GET /media/{file}` (the files).
//! * `service`: uploads, the images a new post or message may carry, releasing and
//!   collecting files.
//! * `image`: decoding, checking, scaling and re-encoding (blocking; run off the runtime).
//!
//! The rows are in `storage::media`, the files in a `storage::blobs::BlobStore`.

pub mod image;
pub mod routes;
pub mod service;
