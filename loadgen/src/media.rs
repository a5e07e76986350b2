//! `media`: image uploads per second on the server's one core. A closed loop of
//! `--concurrency` clients (default 2) posts 2 MiB JPEG photographs to `POST /v1/media`
//! for `--duration-secs`; each upload is decoded, turned upright, scaled to 2048 px with a
//! 400 px thumbnail, re-encoded and stored (the blob store of the server's database: a
//! directory on SQLite, the database on PostgreSQL).

use crate::{
    error::Error,
    feed::{measured, Setup},
    load::Stop,
    options::Backend,
    report::Phase,
    server::UnderTest,
};
use image::{codecs::jpeg::JpegEncoder, ImageBuffer, Rgb};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use reqwest::Client;
use std::{sync::Arc, time::Duration};

/// The size of each photograph, in bytes (within a few percent).
const PHOTO_BYTES: usize = 2 * 1024 * 1024;
/// Different photographs the clients take turns with (the server stores each file once).
const PHOTOS: usize = 4;
/// Uploads before the measurement.
const WARMUP: u64 = 2;

/// What one backend measured.
pub struct Report {
    backend: Backend,
    engine: &'static str,
    /// Width × height and size of the photographs sent.
    photo: (u32, u32, usize),
    phase: Phase,
}

impl Report {
    pub fn markdown(&self) -> String {
        let s = &self.phase.summary;
        let per_upload = self.phase.server_cpu.filter(|_| s.ok() > 0).map_or_else(
            || "n/a".into(),
            |cpu| format!("{:.0} ms", cpu * 1000.0 / s.ok() as f64),
        );
        format!(
            "### Backend: {}, database: {}\n\n\
             | photo | clients | uploads/s | p50 | p99 | server CPU per upload | failures |\n\
             |---|---|---|---|---|---|---|\n\
             | {}×{} JPEG, {:.2} MiB | {} | {:.2} | {:.0} ms | {:.0} ms | {} | {} |\n",
            self.backend.name(),
            self.engine,
            self.photo.0,
            self.photo.1,
            self.photo.2 as f64 / (1024.0 * 1024.0),
            self.phase.concurrency,
            s.rps(),
            s.percentile(50.0).as_secs_f64() * 1000.0,
            s.percentile(99.0).as_secs_f64() * 1000.0,
            per_upload,
            s.failures_text(),
        )
    }

    /// Whether every upload was stored.
    pub fn valid(&self) -> bool {
        self.phase.summary.failed() == 0 && self.phase.summary.ok() > 0
    }
}

/// Starts the server for `backend`, signs a user up and measures the uploads.
pub async fn run(setup: &Setup, backend: Backend) -> Result<Report, Error> {
    let env = [
        ("KITH_MEDIA_UPLOADS_PER_DAY", "1000000"),
        ("KITH_RUNTIME", "current_thread"),
    ];
    let mut run = UnderTest::start(
        &setup.server_bin,
        setup.server_cpu,
        backend,
        &setup.opts.redis_url,
        &setup.opts.database,
        &env,
        None,
    )
    .await?;
    let outcome = measure(setup, backend, &mut run).await;
    run.finish(backend.name()).await;
    outcome
}

async fn measure(setup: &Setup, backend: Backend, run: &mut UnderTest) -> Result<Report, Error> {
    let http = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?;
    run.server
        .wait_ready(&http, Duration::from_secs(60))
        .await?;
    let base = run.server.base_url.clone();
    let answer: serde_json::Value = http
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({
            "username": format!("uploader_{:08x}", rand::random::<u32>()),
            "password": "a password for uploads",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = answer["token"]
        .as_str()
        .ok_or_else(|| Error::Run(format!("sign-up answered {answer}")))?
        .to_string();

    eprintln!("[{}] making {PHOTOS} photographs of ~2 MiB", backend.name());
    let photos: Vec<(u32, u32, Vec<u8>)> = (0..PHOTOS).map(|i| photograph(i as u64)).collect();
    let photo = photos
        .first()
        .map(|(w, h, bytes)| (*w, *h, bytes.len()))
        .unwrap_or_default();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(photos.into_iter().map(|(_, _, b)| b).collect());
    let url = format!("{base}/v1/media");
    let upload = move |c: &Client, _: &mut StdRng, seq: u64| {
        c.post(&url)
            .bearer_auth(&token)
            .header("content-type", "image/jpeg")
            .body(bodies[seq as usize % bodies.len()].clone())
    };
    crate::load::run(&http, 1, Stop::Count(WARMUP), upload.clone()).await;
    let d = setup.opts.duration;
    let n = setup.opts.concurrency;
    eprintln!("[{}] uploading for {d:?}, {n} at a time", backend.name());
    let phase = measured(setup, &run.server, &http, n, Stop::After(d), upload).await;
    run.server.check_alive()?;
    Ok(Report {
        backend,
        engine: setup.opts.database.engine.name(),
        photo,
        phase,
    })
}

/// A photograph-like JPEG (smooth light, fine grain) of about [`PHOTO_BYTES`]: grain is
/// what makes real photographs large; a plain gradient would compress to almost nothing.
fn photograph(seed: u64) -> (u32, u32, Vec<u8>) {
    let encode = |width: u32, height: u32| {
        let mut rng = StdRng::seed_from_u64(seed);
        let picture = ImageBuffer::from_fn(width, height, |x, y| {
            let light = |v: u32, span: u32| (v * 200 / span.max(1)) as i32;
            let grain = rng.gen_range(-18..=18);
            let channel = |base: i32| (base + grain).clamp(0, 255) as u8;
            Rgb([
                channel(light(x, width) + 30),
                channel(light(y, height) + 20),
                channel(160 - light(x + y, width + height) / 2),
            ])
        });
        let mut out = Vec::new();
        let written = JpegEncoder::new_with_quality(&mut out, 90).encode_image(&picture);
        (written.is_ok(), out)
    };
    // The size grows with the pixel count: two corrections land within a few percent.
    let (mut width, mut height) = (2400u32, 1600u32);
    let mut bytes = Vec::new();
    for _ in 0..3 {
        let (ok, out) = encode(width, height);
        if !ok || out.is_empty() {
            break;
        }
        let scale = (PHOTO_BYTES as f64 / out.len() as f64).sqrt();
        bytes = out;
        if (0.97..=1.03).contains(&scale) {
            break;
        }
        width = (f64::from(width) * scale) as u32;
        height = width * 2 / 3;
    }
    (width, height, bytes)
}
