//! `AppState`: everything a request handler may touch, built once by `startup`.

use crate::{backend::Backends, config::Config, id::IdGenerator, telemetry::Metrics};
use leptos::config::LeptosOptions;
use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};
use tokio::sync::Semaphore;

/// A source of wall-clock time in Unix milliseconds, replaceable in tests so time-based
/// rules (rate limits, expiry) can be checked without waiting.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::storage::now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self(AtomicI64::new(start_ms))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Shared application state: one allocation behind one `Arc`, so the several clones axum
/// makes per request (one per extractor that takes the state) cost one reference count
/// each, and a WebSocket connection holding it costs a pointer.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }

    /// Takes one unit of `quota` under `key` from the shared rate limiter, at this node's
    /// clock; 429 (with its `Retry-After`) when the quota is spent.
    pub async fn take_quota(
        &self,
        key: &str,
        quota: crate::backend::Quota,
    ) -> Result<(), crate::error::AppError> {
        use crate::backend::Decision;
        match self
            .backends
            .limiter
            .acquire(key, quota, self.clock.now_ms())
            .await?
        {
            Decision::Allowed => Ok(()),
            Decision::Denied { retry_after } => {
                Err(crate::error::AppError::rate_limited(retry_after))
            }
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppStateInner {
    pub config: Arc<Config>,
    /// The durable store (SQLite or PostgreSQL), one handle per feature.
    pub store: crate::storage::Storage,
    pub backends: Backends,
    pub ids: Arc<IdGenerator>,
    /// This node's place in the cluster (its advertised URL, its node-id lease).
    pub cluster: crate::cluster::Membership,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Bounds concurrent Argon2 hashes (19 MiB and ~tens of ms of CPU each), so a burst of
    /// logins queues instead of exhausting memory or the blocking pool.
    pub hashing: Arc<Semaphore>,
    /// Bounds images decoded and encoded at once (`KITH_MEDIA_WORKERS`): each may hold a
    /// few hundred MiB and a core.
    pub media_work: Arc<Semaphore>,
    /// Bounds the uploads a node holds at once, bodies included
    /// (`media::service::UPLOADS_PER_WORKER` per worker).
    pub media_uploads: Arc<Semaphore>,
    /// A hash of a random password, verified against when a login names an unknown user.
    pub dummy_hash: Arc<str>,
    /// Leptos' site options (output name, site root, reload port).
    pub leptos: LeptosOptions,
    /// Flips to `true` when the node shuts down; long-lived connections close on it.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// This node's batched presence activity.
    pub presence: Arc<crate::presence::Tracker>,
    /// This node's message writer (group commit of chat sends).
    pub messages: crate::chat::writer::Writer,
    /// Answered long polls' subscriptions, waiting for the poll that continues them.
    pub longpolls: Arc<crate::chat::longpoll::Parked>,
    /// What each user and client address holds open on this node (WebSockets, long polls).
    pub slots: crate::http::slots::OpenSlots,
}

impl axum::extract::FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
