//! Media (`POST /v1/media`, `GET /media/{file}`, `media` on posts and messages): each
//! accepted format, each refusal, metadata gone, orientation applied, thumbnails, caching
//! and range headers, attaching (own, unused, at most 4, once), delivery over every path,
//! deletion and the collector, on both backends (and, with `KITH_TEST_DATABASE_URL`, with
//! the files in PostgreSQL).

use crate::common;

use anyhow::{ensure, Context as _, Result};
use common::{
    assert_error, live::Socket, spawn_app, spawn_with, Backend, Options, TestApp, TestUser,
};
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb, Rgba};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::io::Cursor;

/// Text that stands for a GPS position in the EXIF block of [`photo_with_exif`].
const GPS_MARKER: &[u8] = b"GPSLatitude 52.520008 N GPSLongitude 13.404954 E";

fn encoded(picture: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format)?;
    Ok(out.into_inner())
}

fn gradient(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| {
        Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    }))
}

/// A `width`×`height` JPEG whose EXIF block says "rotate 90° clockwise to show" and holds
/// a GPS position.
fn photo_with_exif(width: u32, height: u32) -> Result<Vec<u8>> {
    let jpeg = encoded(&gradient(width, height), ImageFormat::Jpeg)?;
    // TIFF, little-endian: IFD0 at 8 with one entry, Orientation (0x0112) = 6.
    let mut tiff = b"II*\x00\x08\x00\x00\x00\x01\x00".to_vec();
    tiff.extend_from_slice(b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00");
    tiff.extend_from_slice(b"\x00\x00\x00\x00");
    tiff.extend_from_slice(GPS_MARKER);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let length = u16::try_from(app1.len() + 2)?;
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    Ok(out)
}

/// CRC-32 (ISO-HDLC) of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small PNG whose header claims `width`×`height` pixels.
fn png_claiming(width: u32, height: u32) -> Result<Vec<u8>> {
    let mut png = encoded(&gradient(4, 4), ImageFormat::Png)?;
    // Signature (8), IHDR length (4), "IHDR" at 12, width at 16, height at 20, CRC at 29.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    Ok(png)
}

async fn upload(
    app: &TestApp,
    user: &TestUser,
    body: Vec<u8>,
    content_type: &str,
) -> Result<reqwest::Response> {
    Ok(app
        .client
        .post(app.url("/v1/media"))
        .bearer_auth(&user.token)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await?)
}

async fn uploaded(app: &TestApp, user: &TestUser, body: Vec<u8>) -> Result<Value> {
    let resp = upload(app, user, body, "application/octet-stream").await?;
    ensure!(
        resp.status() == 201,
        "upload: {} {}",
        resp.status(),
        resp.text().await?
    );
    Ok(resp.json().await?)
}

async fn fetch(app: &TestApp, url: &Value) -> Result<reqwest::Response> {
    let path = url.as_str().context("a url")?;
    Ok(app.client.get(app.url(path)).send().await?)
}

async fn fetch_image(app: &TestApp, url: &Value) -> Result<(Vec<u8>, DynamicImage)> {
    let resp = fetch(app, url).await?;
    ensure!(resp.status() == 200, "GET {url}: {}", resp.status());
    let bytes = resp.bytes().await?.to_vec();
    let picture = image::load_from_memory(&bytes)?;
    Ok((bytes, picture))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn uploads_are_reencoded_and_served_in(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ana = app.register("ana_m").await?;

    // A JPEG photo: turned upright, scaled to 2048 px, EXIF (and its GPS) gone.
    let media = uploaded(&app, &ana, photo_with_exif(3000, 2000)?).await?;
    assert_eq!(media["content_type"], "image/jpeg", "{media}");
    assert_eq!(
        (&media["width"], &media["height"]),
        (&json!(1365), &json!(2048)),
        "{media}"
    );
    assert_eq!(media["alt"], "");
    let url = media["url"].as_str().context("url")?;
    ensure!(
        url.starts_with("/media/") && url.ends_with(".jpg") && url.len() == 7 + 64 + 4,
        "{url}"
    );
    let resp = fetch(&app, &media["url"]).await?;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let bytes = resp.bytes().await?;
    assert_eq!(media["bytes"], json!(bytes.len()));
    ensure!(
        !contains(&bytes, b"Exif") && !contains(&bytes, GPS_MARKER),
        "metadata kept"
    );
    let (_, picture) = fetch_image(&app, &media["url"]).await?;
    assert_eq!((picture.width(), picture.height()), (1365, 2048));
    let (thumb_bytes, thumb) = fetch_image(&app, &media["thumbnail_url"]).await?;
    assert_eq!((thumb.width(), thumb.height()), (267, 400));
    ensure!(
        !contains(&thumb_bytes, GPS_MARKER),
        "metadata kept in the thumbnail"
    );

    // Caching and ranges.
    let etag = headers[header::ETAG].clone();
    let cached = app
        .client
        .get(app.url(url))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await?;
    assert_eq!(cached.status(), 304);
    let part = app
        .client
        .get(app.url(url))
        .header(header::RANGE, "bytes=0-9")
        .send()
        .await?;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()[header::CONTENT_RANGE],
        format!("bytes 0-9/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await?.as_ref(), &bytes[..10]);
    let beyond = app
        .client
        .get(app.url(url))
        .header(header::RANGE, format!("bytes={}-", bytes.len()))
        .send()
        .await?;
    assert_eq!(beyond.status(), 416);

    // PNG with transparency stays PNG; WebP and GIF are read; a GIF gives its first frame.
    let clear = DynamicImage::ImageRgba8(ImageBuffer::from_fn(300, 200, |x, _| {
        Rgba([200, 10, 10, if x < 150 { 0 } else { 255 }])
    }));
    let png = uploaded(&app, &ana, encoded(&clear, ImageFormat::Png)?).await?;
    assert_eq!(png["content_type"], "image/png", "{png}");
    let (_, back) = fetch_image(&app, &png["url"]).await?;
    assert_eq!(back.to_rgba8().get_pixel(10, 10)[3], 0, "transparency kept");
    let webp = uploaded(&app, &ana, encoded(&gradient(120, 80), ImageFormat::WebP)?).await?;
    assert_eq!(
        (&webp["width"], &webp["height"]),
        (&json!(120), &json!(80)),
        "{webp}"
    );
    let mut gif = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
        for colour in [[0, 200, 0, 255], [0, 0, 200, 255]] {
            let frame = ImageBuffer::from_pixel(30, 20, Rgba(colour));
            encoder.encode_frame(image::Frame::new(frame))?;
        }
    }
    let first = uploaded(&app, &ana, gif).await?;
    assert_eq!(first["content_type"], "image/png", "{first}");
    let (_, frame) = fetch_image(&app, &first["url"]).await?;
    let pixel = frame.to_rgb8().get_pixel(5, 5).0;
    ensure!(
        pixel[1] > 150 && pixel[2] < 50,
        "not the first frame: {pixel:?}"
    );

    // A form, with the alt text; the same picture again shares its files.
    let jpeg = encoded(&gradient(64, 48), ImageFormat::Jpeg)?;
    let boundary = "kith-test-boundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"alt\"\r\n\r\nA gradient, \"blue\"\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.svg\"\r\n\
         Content-Type: image/svg+xml\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&jpeg);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = upload(
        &app,
        &ana,
        form,
        &format!("multipart/form-data; boundary={boundary}"),
    )
    .await?;
    assert_eq!(resp.status(), 201);
    let described: Value = resp.json().await?;
    assert_eq!(described["alt"], "A gradient, \"blue\"");
    assert_eq!(
        described["content_type"], "image/jpeg",
        "decided by the bytes, not the name"
    );
    let again = uploaded(&app, &ana, jpeg).await?;
    assert_eq!(again["url"], described["url"]);
    assert_ne!(again["id"], described["id"]);

    // A form whose image part has another name, and a form with two images.
    let part = |name: &str, file: &str, bytes: &[u8]| {
        let mut part = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        part.extend_from_slice(bytes);
        part.extend_from_slice(b"\r\n");
        part
    };
    let png = encoded(&gradient(20, 10), ImageFormat::Png)?;
    let mut form = part("image", "a.png", &png);
    form.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let resp = upload(&app, &ana, form, &content_type).await?;
    assert_eq!(resp.status(), 201, "a part named image");
    let mut form = part("file", "a.png", &png);
    form.extend_from_slice(&part("file", "b.png", &png));
    form.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    assert_error(
        upload(&app, &ana, form, &content_type).await?,
        422,
        "validation_failed",
    )
    .await?;

    // Refusals.
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg' width='9' height='9'/>".to_vec();
    assert_error(
        upload(&app, &ana, svg, "image/svg+xml").await?,
        422,
        "unsupported_media",
    )
    .await?;
    assert_error(
        upload(&app, &ana, b"hello".to_vec(), "image/png").await?,
        422,
        "unsupported_media",
    )
    .await?;
    assert_error(
        upload(&app, &ana, Vec::new(), "image/png").await?,
        422,
        "unsupported_media",
    )
    .await?;
    let mut truncated = encoded(&gradient(64, 64), ImageFormat::Png)?;
    truncated.truncate(80);
    assert_error(
        upload(&app, &ana, truncated, "image/png").await?,
        422,
        "unsupported_media",
    )
    .await?;
    let huge = assert_error(
        upload(&app, &ana, png_claiming(10_000, 5_000)?, "image/png").await?,
        422,
        "unsupported_media",
    )
    .await?;
    ensure!(huge.contains("megapixels"), "{huge}");
    let big = vec![0xFFu8; 10 * 1024 * 1024 + 1];
    assert_error(
        upload(&app, &ana, big, "image/jpeg").await?,
        413,
        "payload_too_large",
    )
    .await?;
    let long_alt = app
        .client
        .post(app.url(&format!("/v1/media?alt={}", "a".repeat(1501))))
        .bearer_auth(&ana.token)
        .body(encoded(&gradient(8, 8), ImageFormat::Png)?)
        .send()
        .await?;
    assert_error(long_alt, 422, "validation_failed").await?;
    let anonymous = app
        .client
        .post(app.url("/v1/media"))
        .body(b"x".to_vec())
        .send()
        .await?;
    assert_error(anonymous, 401, "unauthorized").await?;
    for name in [
        "nope.jpg",
        &format!("{}.gif", "a".repeat(64)),
        &format!("{}.jpg", "0".repeat(64)),
    ] {
        let resp = app
            .client
            .get(app.url(&format!("/media/{name}")))
            .send()
            .await?;
        assert_eq!(resp.status(), 404, "{name}");
    }
    Ok(())
}

fn ids(media: &[&Value]) -> Vec<Value> {
    media.iter().map(|m| m["id"].clone()).collect()
}

async fn images_travel_with_posts_and_messages_in(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ana = app.register("ana_a").await?;
    let ben = app.register("ben_a").await?;
    app.follow(&ben, "ana_a").await?;
    let mut uploads = Vec::new();
    for i in 0..7 {
        uploads.push(
            uploaded(
                &app,
                &ana,
                encoded(&gradient(50 + i, 40), ImageFormat::Png)?,
            )
            .await?,
        );
    }
    let bens = uploaded(&app, &ben, encoded(&gradient(10, 10), ImageFormat::Png)?).await?;

    // A post with two images and no text; the order is kept.
    let resp = app
        .post_json(
            "/v1/me/feed",
            &json!({"content": "", "media": ids(&[&uploads[1], &uploads[0]])}),
            Some(&ana.token),
        )
        .await?;
    assert_eq!(resp.status(), 201);
    let post: Value = resp.json().await?;
    assert_eq!(post["media"], json!([uploads[1], uploads[0]]), "{post}");
    app.settle().await?;
    let feed = app
        .get("/v1/me/feed", Some(&ben.token))
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(feed["items"][0]["media"], post["media"], "{feed}");
    let one = app
        .get(
            &format!("/v1/posts/{}", post["id"].as_str().context("id")?),
            Some(&ben.token),
        )
        .await?;
    assert_eq!(one.json::<Value>().await?["media"], post["media"]);
    let plain = app.post_as(&ana, "no pictures").await?;
    assert_eq!(plain["media"], json!([]));

    // Described before use; a post keeps the description it was sent with.
    let described: Value = app
        .json_request(
            reqwest::Method::PATCH,
            &format!("/v1/media/{}", uploads[4]["id"].as_str().context("id")?),
            &json!({"alt": "  A red door  "}),
            Some(&ana.token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(described["alt"], "A red door", "{described}");
    let someone_elses = app
        .json_request(
            reqwest::Method::PATCH,
            &format!("/v1/media/{}", uploads[4]["id"].as_str().context("id")?),
            &json!({"alt": "mine now"}),
            Some(&ben.token),
        )
        .await?;
    assert_error(someone_elses, 404, "not_found").await?;
    let attached = app
        .json_request(
            reqwest::Method::PATCH,
            &format!("/v1/media/{}", uploads[0]["id"].as_str().context("id")?),
            &json!({"alt": "too late"}),
            Some(&ana.token),
        )
        .await?;
    assert_error(attached, 422, "validation_failed").await?;

    // Refused: used already, someone else's, unknown, five, twice, nothing at all.
    let refuse = |media: Vec<Value>| {
        let body = json!({"content": "x", "media": media});
        let app = &app;
        let token = ana.token.clone();
        async move { app.post_json("/v1/me/feed", &body, Some(&token)).await }
    };
    assert_error(refuse(ids(&[&uploads[0]])).await?, 422, "validation_failed").await?;
    assert_error(refuse(ids(&[&bens])).await?, 422, "validation_failed").await?;
    assert_error(
        refuse(vec![json!("12345")]).await?,
        422,
        "validation_failed",
    )
    .await?;
    let five = ids(&[
        &uploads[2],
        &uploads[3],
        &uploads[4],
        &uploads[5],
        &uploads[6],
    ]);
    assert_error(refuse(five).await?, 422, "validation_failed").await?;
    assert_error(
        refuse(ids(&[&uploads[2], &uploads[2]])).await?,
        422,
        "validation_failed",
    )
    .await?;
    let empty = app
        .post_json("/v1/me/feed", &json!({"content": " "}), Some(&ana.token))
        .await?;
    assert_error(empty, 422, "validation_failed").await?;

    // A message over HTTP: the other member's socket, history and sync carry it; a retry
    // answers with the same message and images.
    let dm = app.dm(&ana, &ben).await?;
    let mut socket = Socket::open(&app, &ben).await?;
    let send = json!({"content": "", "client_msg_id": "pic-1", "media": ids(&[&uploads[2]])});
    let path = format!("/v1/chat/channels/{dm}/messages");
    let resp = app.post_json(&path, &send, Some(&ana.token)).await?;
    assert_eq!(resp.status(), 201);
    let message: Value = resp.json().await?;
    assert_eq!(message["media"], json!([uploads[2]]), "{message}");
    let retry: Value = app
        .post_json(&path, &send, Some(&ana.token))
        .await?
        .json()
        .await?;
    assert_eq!(
        (&retry["id"], &retry["media"]),
        (&message["id"], &message["media"])
    );
    let live = socket
        .next_where("the message", |f| {
            f["type"] == "message" && f["message"]["id"] == message["id"]
        })
        .await?;
    assert_eq!(live["message"]["media"], message["media"]);
    let history: Value = app.get(&path, Some(&ben.token)).await?.json().await?;
    assert_eq!(history["items"][0]["media"], message["media"], "{history}");
    let sync: Value = app
        .get("/v1/chat/sync?since=0&timeout=0", Some(&ben.token))
        .await?
        .json()
        .await?;
    assert_eq!(sync["messages"][0]["media"], message["media"], "{sync}");
    let reuse = json!({"content": "again", "client_msg_id": "pic-2", "media": ids(&[&uploads[2]])});
    assert_error(
        app.post_json(&path, &reuse, Some(&ana.token)).await?,
        422,
        "validation_failed",
    )
    .await?;

    // Over a WebSocket: the ack carries the images; a refusal names the send.
    let mut ana_socket = Socket::open(&app, &ana).await?;
    ana_socket
        .send(json!({"type": "send", "channel_id": dm, "client_msg_id": "pic-3", "content": "look", "media": ids(&[&uploads[3]])}))
        .await?;
    let ack = ana_socket
        .next_where("the ack", |f| f["type"] == "ack")
        .await?;
    assert_eq!(ack["message"]["media"], json!([uploads[3]]), "{ack}");
    // Its text may be edited away: the image stays.
    let edited: Value = app
        .json_request(
            reqwest::Method::PATCH,
            &format!("{path}/{}", ack["message"]["id"].as_str().context("id")?),
            &json!({"content": ""}),
            Some(&ana.token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(
        (&edited["content"], &edited["media"]),
        (&json!(""), &json!([uploads[3]])),
        "{edited}"
    );
    ana_socket
        .send(json!({"type": "send", "channel_id": dm, "client_msg_id": "pic-4", "content": "x", "media": ids(&[&bens])}))
        .await?;
    let error = ana_socket
        .next_where("the refusal", |f| f["type"] == "error")
        .await?;
    assert_eq!(
        (&error["code"], &error["client_msg_id"]),
        (&json!("validation_failed"), &json!("pic-4"))
    );

    // A send refused after its images were claimed (not a member) gives them back.
    let cy = app.register("cy_a").await?;
    let theirs = app.dm(&ben, &cy).await?;
    let refused = app
        .post_json(
            &format!("/v1/chat/channels/{theirs}/messages"),
            &json!({"content": "", "client_msg_id": "pic-5", "media": ids(&[&uploads[5]])}),
            Some(&ana.token),
        )
        .await?;
    assert_error(refused, 403, "forbidden").await?;
    let reused = app
        .post_json(
            &path,
            &json!({"content": "", "client_msg_id": "pic-6", "media": ids(&[&uploads[5]])}),
            Some(&ana.token),
        )
        .await?;
    assert_eq!(reused.status(), 201);
    // A retry of a deleted message with images answers with the message as stored.
    let gone: Value = app
        .post_json(
            &path,
            &json!({"content": "", "client_msg_id": "pic-7", "media": ids(&[&uploads[6]])}),
            Some(&ana.token),
        )
        .await?
        .json()
        .await?;
    let gone_id = gone["id"].as_str().context("id")?;
    assert_eq!(
        app.delete_as(&ana, &format!("{path}/{gone_id}"))
            .await?
            .status(),
        204
    );
    let retry = app
        .post_json(
            &path,
            &json!({"content": "", "client_msg_id": "pic-7", "media": ids(&[&uploads[6]])}),
            Some(&ana.token),
        )
        .await?;
    assert!(retry.status().is_success(), "{}", retry.status());
    let retry: Value = retry.json().await?;
    assert_eq!(
        (&retry["id"], &retry["media"]),
        (&gone["id"], &json!([])),
        "{retry}"
    );

    // Deleting the post and the message deletes their files.
    let post_id = post["id"].as_str().context("post id")?;
    assert_eq!(
        app.delete_as(&ana, &format!("/v1/posts/{post_id}"))
            .await?
            .status(),
        204
    );
    for media in [&uploads[0], &uploads[1]] {
        for url in [&media["url"], &media["thumbnail_url"]] {
            assert_eq!(fetch(&app, url).await?.status(), 404, "{url}");
        }
    }
    let message_id = message["id"].as_str().context("message id")?;
    assert_eq!(
        app.delete_as(&ana, &format!("{path}/{message_id}"))
            .await?
            .status(),
        204
    );
    assert_eq!(fetch(&app, &uploads[2]["url"]).await?.status(), 404);
    let history: Value = app.get(&path, Some(&ben.token)).await?.json().await?;
    assert_eq!(history["items"][0]["media"], json!([]), "{history}");
    // The others are still there.
    assert_eq!(fetch(&app, &uploads[3]["url"]).await?.status(), 200);
    Ok(())
}

both_backends!(
    uploads_are_reencoded_and_served_in,
    images_travel_with_posts_and_messages_in,
);

#[tokio::test]
async fn unused_uploads_are_collected_after_a_day() -> Result<()> {
    let app = spawn_with(
        Backend::Memory,
        Options {
            manual_clock: true,
            ..Default::default()
        },
    )
    .await?;
    let clock = app.clock.clone().context("a manual clock")?;
    let ana = app.register("ana_c").await?;
    let unused = uploaded(&app, &ana, encoded(&gradient(500, 300), ImageFormat::Png)?).await?;
    let used = uploaded(&app, &ana, encoded(&gradient(31, 30), ImageFormat::Png)?).await?;
    let resp = app
        .post_json(
            "/v1/me/feed",
            &json!({"content": "kept", "media": [used["id"]]}),
            Some(&ana.token),
        )
        .await?;
    assert_eq!(resp.status(), 201);

    assert_eq!(
        kith::media::service::collect(&app.state).await?,
        0,
        "nothing is a day old"
    );
    clock.advance(kith::media::service::UNATTACHED_TTL_MS + 1);
    assert_eq!(
        kith::media::service::collect(&app.state).await?,
        2,
        "the unused one's two files"
    );
    assert_eq!(fetch(&app, &unused["url"]).await?.status(), 404);
    assert_eq!(fetch(&app, &used["url"]).await?.status(), 200);
    let late = app
        .post_json(
            "/v1/me/feed",
            &json!({"content": "too late", "media": [unused["id"]]}),
            Some(&ana.token),
        )
        .await?;
    assert_error(late, 422, "validation_failed").await?;
    Ok(())
}

#[tokio::test]
async fn uploads_per_day_are_limited() -> Result<()> {
    let options = Options {
        env: vec![("KITH_MEDIA_UPLOADS_PER_DAY", "2".into())],
        ..Default::default()
    };
    let app = spawn_with(Backend::Memory, options).await?;
    let ana = app.register("ana_l").await?;
    for _ in 0..2 {
        uploaded(&app, &ana, encoded(&gradient(8, 8), ImageFormat::Png)?).await?;
    }
    let refused = upload(
        &app,
        &ana,
        encoded(&gradient(8, 8), ImageFormat::Png)?,
        "image/png",
    )
    .await?;
    ensure!(
        refused.headers().contains_key(header::RETRY_AFTER),
        "no Retry-After"
    );
    assert_error(refused, 429, "rate_limited").await?;
    // Another user has their own allowance.
    let ben = app.register("ben_l").await?;
    assert_eq!(
        upload(
            &app,
            &ben,
            encoded(&gradient(8, 8), ImageFormat::Png)?,
            "image/png"
        )
        .await?
        .status(),
        StatusCode::CREATED
    );
    Ok(())
}

#[tokio::test]
async fn every_node_of_a_cluster_serves_and_attaches_every_image() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let cluster = common::Cluster::new().await?;
    // On PostgreSQL the files are in the shared database; nodes sharing a SQLite file
    // share a directory as well.
    let shared = tempfile::tempdir()?;
    let node = || {
        let mut options = cluster.node(1);
        if common::postgres_url().is_none() {
            options
                .env
                .push(("KITH_MEDIA_DIR", shared.path().display().to_string()));
        }
        options
    };
    let a = spawn_with(Backend::Redis, node()).await?;
    let b = spawn_with(Backend::Redis, node()).await?;
    let ana = a.register("ana_n").await?;
    let media = uploaded(&a, &ana, encoded(&gradient(640, 480), ImageFormat::Jpeg)?).await?;
    let (_, picture) = fetch_image(&b, &media["url"]).await?;
    assert_eq!((picture.width(), picture.height()), (640, 480));

    // Attached through the other node, and deleted through the first.
    let resp = b
        .post_json(
            "/v1/me/feed",
            &json!({"content": "from b", "media": [media["id"]]}),
            Some(&ana.token),
        )
        .await?;
    assert_eq!(resp.status(), 201);
    let post: Value = resp.json().await?;
    assert_eq!(post["media"], json!([media]));
    let again = a
        .post_json(
            "/v1/me/feed",
            &json!({"content": "twice", "media": [media["id"]]}),
            Some(&ana.token),
        )
        .await?;
    assert_error(again, 422, "validation_failed").await?;
    let id = post["id"].as_str().context("post id")?;
    assert_eq!(
        a.delete_as(&ana, &format!("/v1/posts/{id}"))
            .await?
            .status(),
        204
    );
    assert_eq!(fetch(&b, &media["url"]).await?.status(), 404);
    Ok(())
}

#[tokio::test]
async fn a_deleted_account_takes_its_post_images_and_leaves_its_message_images() -> Result<()> {
    let app = spawn_app(Backend::Memory).await?;
    let ana = app.register("ana_d").await?;
    let ben = app.register("ben_d").await?;
    let picture = |w| encoded(&gradient(w, 500), ImageFormat::Png);
    let (posted, sent, unused) = (
        uploaded(&app, &ana, picture(500)?).await?,
        uploaded(&app, &ana, picture(510)?).await?,
        uploaded(&app, &ana, picture(520)?).await?,
    );
    let resp = app
        .post_json(
            "/v1/me/feed",
            &json!({"content": "mine", "media": [posted["id"]]}),
            Some(&ana.token),
        )
        .await?;
    assert_eq!(resp.status(), 201);
    let dm = app.dm(&ana, &ben).await?;
    let send = json!({"content": "", "client_msg_id": "d-1", "media": [sent["id"]]});
    let resp = app
        .post_json(
            &format!("/v1/chat/channels/{dm}/messages"),
            &send,
            Some(&ana.token),
        )
        .await?;
    assert_eq!(resp.status(), 201);

    let resp = app
        .json_request(
            reqwest::Method::DELETE,
            "/v1/me",
            &json!({"password": ana.password}),
            Some(&ana.token),
        )
        .await?;
    assert_eq!(resp.status(), 204);
    for gone in [&posted, &unused] {
        assert_eq!(fetch(&app, &gone["url"]).await?.status(), 404, "{gone}");
    }
    let (_, kept) = fetch_image(&app, &sent["url"]).await?;
    assert_eq!(
        kept.width(),
        510,
        "the message's image stays with the message"
    );
    let history: Value = app
        .get(
            &format!("/v1/chat/channels/{dm}/messages"),
            Some(&ben.token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(history["items"][0]["media"], json!([sent]), "{history}");
    Ok(())
}
