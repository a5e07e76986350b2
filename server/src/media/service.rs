//! The media service: uploads (checked, processed off the runtime a bounded number at a
//! time, stored), the images a new post or message may carry, releasing the files of
//! deleted ones, and the collector of uploads never used.

use super::image::{self, Processed, Refusal, MAX_UPLOAD_BYTES};
use crate::{
    backend::Quota,
    error::AppError,
    state::AppState,
    storage::{
        blobs::BlobError,
        media::{media_json, MediaRow},
    },
};
use app::model::{rules, ErrorCode, Id, Media, User};
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// How long an upload may wait to be attached before the collector deletes it.
pub const UNATTACHED_TTL_MS: i64 = 24 * 3600 * 1000;
/// How often the collector runs.
const COLLECT_EVERY: Duration = Duration::from_secs(3600);

impl From<BlobError> for AppError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Database(e) => e.into(),
            BlobError::Io(e) => AppError::internal(format!("media file: {e}")),
        }
    }
}

/// Uploads a node holds at once (body read, waiting, or being processed) per media
/// worker: each may hold 10 MiB of body, so a burst is refused instead of buffered.
pub const UPLOADS_PER_WORKER: usize = 4;

/// Admits an upload by `owner` before its body is read: within their daily quota
/// (`KITH_MEDIA_UPLOADS_PER_DAY`; every attempt counts) and the node's room for uploads in
/// progress, else 429. The permit is held until the upload is stored.
pub async fn admit(state: &AppState, owner: &User) -> Result<OwnedSemaphorePermit, AppError> {
    let per_day = state.config.media_uploads_per_day;
    let quota = Quota {
        limit: per_day,
        period: Duration::from_secs(24 * 3600),
        burst: per_day,
    };
    state
        .take_quota(&crate::backend::id_key("media:", owner.id.0), quota)
        .await?;
    state
        .media_uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            AppError::too_many(
                "image uploads in progress on this server",
                state.config.media_workers * UPLOADS_PER_WORKER,
                Duration::from_secs(1),
            )
        })
}

/// Stores an image `owner` uploaded, described by `alt`: 201's `Media`. `_admitted`:
/// see [`admit`].
pub async fn upload(
    state: &AppState,
    owner: &User,
    data: Bytes,
    alt: &str,
    _admitted: OwnedSemaphorePermit,
) -> Result<Media, AppError> {
    rules::check_alt(alt).map_err(|p| AppError::validation("alt", p))?;
    if data.len() > MAX_UPLOAD_BYTES {
        return Err(too_large());
    }
    if data.is_empty() {
        return Err(AppError::new(
            ErrorCode::UnsupportedMedia,
            "the body is empty: send the image's bytes",
        ));
    }
    let processed = process(state, data).await?;
    let size = processed.image.data.len() as i64;
    // The files first: a row never names a file that is not there.
    let blobs = &state.store.blobs;
    blobs
        .put(&processed.image.name, Bytes::from(processed.image.data))
        .await?;
    blobs
        .put(
            &processed.thumbnail.name,
            Bytes::from(processed.thumbnail.data),
        )
        .await?;
    let row = MediaRow {
        id: state.ids.next_id()?,
        owner_id: owner.id.0,
        file: processed.image.name,
        thumbnail: processed.thumbnail.name,
        content_type: processed.content_type.to_string(),
        width: processed.image.width.into(),
        height: processed.image.height.into(),
        bytes: size,
        alt: alt.trim().to_string(),
        created_at: state.clock.now_ms(),
    };
    state.store.media.insert_media(&row).await?;
    Ok(row.to_media())
}

/// Describes one of `owner`'s uploads (its `alt`) before it is attached: 404 for anything
/// not theirs, 422 once attached (the post or message keeps the description it had).
pub async fn describe(state: &AppState, owner: i64, id: i64, alt: &str) -> Result<Media, AppError> {
    rules::check_alt(alt).map_err(|p| AppError::validation("alt", p))?;
    if let Some(row) = state.store.media.set_alt(owner, id, alt.trim()).await? {
        return Ok(row.to_media());
    }
    if !state.store.media.is_owner(owner, id).await? {
        return Err(AppError::not_found("media"));
    }
    Err(AppError::validation(
        "alt",
        "the image is attached already; its description is part of the post or message",
    ))
}

/// 413 for an upload past [`MAX_UPLOAD_BYTES`].
pub fn too_large() -> AppError {
    AppError::new(ErrorCode::PayloadTooLarge, "an image may be at most 10 MiB")
}

/// Decodes and re-encodes on the blocking pool, at most `KITH_MEDIA_WORKERS` at a time
/// (each may hold a few hundred MiB); later uploads wait their turn.
async fn process(state: &AppState, data: Bytes) -> Result<Processed, AppError> {
    let _permit = state
        .media_work
        .acquire()
        .await
        .map_err(|_| AppError::internal("media workers closed"))?;
    tokio::task::spawn_blocking(move || image::process(&data))
        .await
        .map_err(|e| AppError::internal(format!("media task: {e}")))?
        .map_err(|refusal: Refusal| AppError::new(ErrorCode::UnsupportedMedia, refusal.to_string()))
}

/// The images `owner` asks to attach, in the order given: at most 4, none twice, each one
/// of `owner`'s uploads not attached yet (or, for `message_key`, a retry of the same send).
pub async fn attachable(
    state: &AppState,
    owner: i64,
    ids: &[Id],
    message_key: Option<&str>,
) -> Result<Vec<MediaRow>, AppError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    rules::check_attached(ids).map_err(|p| AppError::validation("media", p))?;
    let raw: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let mut found = state
        .store
        .media
        .attachable(owner, &raw, message_key)
        .await?;
    let mut ordered = Vec::with_capacity(ids.len());
    for id in &raw {
        let at = found
            .iter()
            .position(|row| row.id == *id)
            .ok_or_else(|| not_attachable(*id))?;
        ordered.push(found.swap_remove(at));
    }
    Ok(ordered)
}

/// Claims the images `ids` for `owner`'s chat message `message_key` before its group
/// commit; the `media` column the message is stored with (`None` for none). See
/// [`unclaim`] for a send that then stores nothing.
pub async fn claim_for_message(
    state: &AppState,
    owner: i64,
    ids: &[Id],
    message_key: &str,
) -> Result<Option<String>, AppError> {
    if ids.is_empty() {
        return Ok(None);
    }
    let images = attachable(state, owner, ids, Some(message_key)).await?;
    let raw: Vec<i64> = images.iter().map(|m| m.id).collect();
    if !state
        .store
        .media
        .claim_for_message(owner, &raw, message_key)
        .await?
    {
        return Err(taken());
    }
    Ok(media_json(&images))
}

/// Gives back the images claimed for a send that stored no message (refused, or failed),
/// so they can be attached to another. A failure here is logged: the images stay tied to
/// that `client_msg_id` (a retry of the send can still use them) until the collector.
pub async fn unclaim(state: &AppState, owner: i64, message_key: &str) {
    if let Err(e) = state.store.media.unclaim(owner, message_key).await {
        tracing::warn!(error = %e, "images of a refused send not given back");
    }
}

/// 422 when an image was attached by a concurrent request after it was checked.
pub fn taken() -> AppError {
    AppError::validation("media", "an image was attached elsewhere meanwhile")
}

/// Deletes the files a release left unnamed (`released`: the rows of a deleted post,
/// message or account). Should the release fail, it is logged: the collector finds the
/// rows of posts and messages that are gone.
pub async fn release(state: &AppState, released: Result<Vec<String>, sqlx::Error>) {
    match released {
        Ok(files) => delete_files(state, files).await,
        Err(e) => tracing::warn!(error = %e, "images of a deleted post or message not released"),
    }
}

/// 422 for an id that is not one of the sender's unused uploads.
pub fn not_attachable(id: i64) -> AppError {
    AppError::validation(
        "media",
        &format!("{id} is not an upload of yours that is still unused"),
    )
}

/// Deletes files no row names any more (after their rows went). A failure leaves a file
/// behind, which costs disk, not correctness: it is logged.
pub async fn delete_files(state: &AppState, files: Vec<String>) {
    for file in files {
        if let Err(e) = state.store.blobs.delete(&file).await {
            tracing::warn!(error = %e, file, "media file not deleted");
        }
    }
}

/// Collects uploads never attached within [`UNATTACHED_TTL_MS`], and the images of posts
/// and messages that are gone; returns how many files it deleted.
pub async fn collect(state: &AppState) -> Result<usize, AppError> {
    let files = state
        .store
        .media
        .collect(state.clock.now_ms() - UNATTACHED_TTL_MS)
        .await?;
    let n = files.len();
    delete_files(state, files).await;
    Ok(n)
}

/// Runs [`collect`] once an hour.
pub fn spawn_collector(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(COLLECT_EVERY);
        loop {
            tick.tick().await;
            match collect(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "unused media collected"),
                Err(e) => tracing::warn!(error = %e, "media collection failed"),
            }
        }
    });
}
