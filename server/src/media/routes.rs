//! HTTP handlers of media: the upload (`POST /v1/media`) and the files
//! (`GET /media/{file}`).

use super::{image, service};
use crate::{
    auth::AuthUser,
    error::{AppError, Json as JsonBody, Query},
    state::AppState,
};
use app::model::Media;
use axum::{
    body::Body,
    extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, patch, post},
    Json, Router,
};
use bytes::Bytes;
use serde::Deserialize;

/// The largest upload request: the image and, for a form, its parts' headers and the alt
/// text.
pub const MAX_UPLOAD_REQUEST_BYTES: usize = image::MAX_UPLOAD_BYTES + 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/media",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_REQUEST_BYTES)),
        )
        .route("/v1/media/{id}", patch(describe))
        .route("/media/{file}", get(file))
}

/// Body of `PATCH /v1/media/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaUpdate {
    /// The image's description (its accessible name), at most 1500 characters.
    pub alt: String,
}

/// PATCH /v1/media/{id} — describes one of your uploads before it is attached (a post or
/// message keeps the description its images had when sent).
#[utoipa::path(patch, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = MediaUpdate,
    responses((status = 200, body = Media), (status = 422, body = app::model::ErrorBody)))]
pub async fn describe(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MediaUpdate>,
) -> Result<Json<Media>, AppError> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::not_found("media"))?;
    Ok(Json(
        service::describe(&state, auth.user.id.0, id, &body.alt).await?,
    ))
}

/// Query of `POST /v1/media` with the image as the body.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The image's description (its accessible name), at most 1500 characters.
    pub alt: Option<String>,
}

/// POST /v1/media — uploads an image: the body is the image (any `Content-Type`; the
/// format is decided by the bytes), or a `multipart/form-data` form with the image in
/// `file` (or any part that carries a file) and an optional `alt`. JPEG, PNG, WebP and GIF (its first frame) up to 10 MiB
/// and 40 megapixels; re-encoded without metadata, at most 2048 px on its longest side,
/// with a 400 px thumbnail. Attach it within a day (`media` of a post or message), or it
/// is deleted.
#[utoipa::path(post, path = "/v1/media", tag = "media", security(("bearer" = [])),
    params(UploadQuery),
    request_body(description = "the image, or a form with `file` and `alt`", content(
        (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"), (Vec<u8> = "image/webp"),
        (Vec<u8> = "image/gif"), (UploadForm = "multipart/form-data"))),
    responses((status = 201, body = Media), (status = 413, body = app::model::ErrorBody),
        (status = 422, description = "`unsupported_media`: not an image Kith takes, or too many pixels; `validation_failed`: the alt text", body = app::model::ErrorBody),
        (status = 429, body = app::model::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<Media>), AppError> {
    let admitted = service::admit(&state, &auth.user).await?;
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (data, alt) = if is_form {
        let form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| AppError::invalid_request(e.body_text()))?;
        read_form(form, query.alt).await?
    } else {
        let data = Bytes::from_request(request, &state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => service::too_large(),
                _ => AppError::invalid_request(e.body_text()),
            })?;
        (data, query.alt.unwrap_or_default())
    };
    let media = service::upload(&state, &auth.user, data, &alt, admitted).await?;
    Ok((StatusCode::CREATED, Json(media)))
}

/// The form of `POST /v1/media`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The image.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Its description, at most 1500 characters.
    alt: Option<String>,
}

/// The image and alt text of an upload form (`alt` in the query counts if the form has
/// none).
async fn read_form(mut form: Multipart, alt: Option<String>) -> Result<(Bytes, String), AppError> {
    let mut file = None;
    let mut alt = alt;
    let read_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            service::too_large()
        } else {
            AppError::invalid_request(format!("malformed form: {}", e.body_text()))
        }
    };
    while let Some(field) = form.next_field().await.map_err(read_error)? {
        // The image is the part named `file`, or any part that carries a file (a file name
        // or a content type), whatever its name; the description is `alt` (or
        // `description`). Other fields (a browser's submit button, say) are read past.
        let carries_file = field.file_name().is_some() || field.content_type().is_some();
        if !carries_file && matches!(field.name(), Some("alt" | "description")) {
            alt = Some(field.text().await.map_err(read_error)?);
        } else if carries_file || field.name() == Some("file") {
            if file.is_some() {
                return Err(AppError::validation("file", "one image per upload"));
            }
            file = Some(field.bytes().await.map_err(read_error)?);
        }
    }
    let file = file.ok_or_else(|| AppError::validation("file", "the form has no file field"))?;
    Ok((file, alt.unwrap_or_default()))
}

/// GET /media/{file} — an uploaded image or thumbnail. Names are the SHA-256 of the bytes,
/// so the answer never changes: cached for a year as immutable. Single byte ranges are
/// served (206).
#[utoipa::path(get, path = "/media/{file}", tag = "media",
    params(("file" = String, Path, description = "`{sha256}.{jpg|png}`, from a `Media`'s `url` or `thumbnail_url`")),
    responses((status = 200, description = "the image", content_type = "image/*"),
        (status = 206, description = "the requested byte range", content_type = "image/*"),
        (status = 304, description = "the cached copy is current"),
        (status = 404, body = app::model::ErrorBody),
        (status = 416, description = "the range lies outside the file")))]
pub async fn file(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let not_found = || AppError::not_found("media file");
    let (digest, extension) = name.split_once('.').ok_or_else(not_found)?;
    let content_type = image::content_type_of(extension).ok_or_else(not_found)?;
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(not_found());
    }
    let etag = format!("\"{digest}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        })
    {
        return Ok(with_file_headers(
            StatusCode::NOT_MODIFIED.into_response(),
            content_type,
            &etag,
        ));
    }
    let data = state.store.blobs.get(&name).await?.ok_or_else(not_found)?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, data.len() as u64));
    let response = match range {
        // No Range header, or one this server does not serve (several ranges, other
        // units): the whole file, as RFC 9110 allows.
        None | Some(Range::Ignored) => (StatusCode::OK, Body::from(data)).into_response(),
        Some(Range::Bytes(start, end)) => {
            let total = data.len();
            let part = data.slice(start as usize..=end as usize);
            let mut response = (StatusCode::PARTIAL_CONTENT, Body::from(part)).into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        Some(Range::Unsatisfiable) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", data.len())) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    Ok(with_file_headers(response, content_type, &etag))
}

fn with_file_headers(mut response: Response, content_type: &'static str, etag: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Bytes `start..=end`.
    Bytes(u64, u64),
    /// No byte of the file.
    Unsatisfiable,
    /// Not a single byte range: answered with the whole file.
    Ignored,
}

fn byte_range(header: &str, len: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), parse(first), parse(last)) {
        // `bytes=-N`: the last N bytes.
        (true, _, Some(suffix)) if suffix > 0 && len > 0 => {
            Range::Bytes(len.saturating_sub(suffix), len - 1)
        }
        (true, _, _) => Range::Unsatisfiable,
        (false, Some(start), end) if start < len => match (end, last.trim().is_empty()) {
            (Some(end), _) if end >= start => Range::Bytes(start, end.min(len - 1)),
            (None, true) => Range::Bytes(start, len - 1),
            _ => Range::Ignored,
        },
        (false, Some(_), _) => Range::Unsatisfiable,
        (false, None, _) => Range::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::{byte_range, Range};

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Range::Bytes(0, 9));
        assert_eq!(byte_range("bytes=90-", 100), Range::Bytes(90, 99));
        assert_eq!(byte_range("bytes=90-200", 100), Range::Bytes(90, 99));
        assert_eq!(byte_range("bytes=-10", 100), Range::Bytes(90, 99));
        assert_eq!(byte_range("bytes=-500", 100), Range::Bytes(0, 99));
        assert_eq!(byte_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=5-1", 100), Range::Ignored);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Range::Ignored);
        assert_eq!(byte_range("items=0-1", 100), Range::Ignored);
    }
}
