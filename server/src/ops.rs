//! Operational endpoints: liveness, readiness, metrics and the API description.

use crate::{openapi::ApiDoc, outbox::Outbox, state::AppState};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use utoipa::OpenApi as _;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
}

/// GET /healthz — the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "up")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// How long `/readyz` waits for each dependency to answer.
const READINESS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `ping`'s outcome, as a message when it failed or took longer than `wait`.
async fn within<E: std::fmt::Display>(
    wait: std::time::Duration,
    ping: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(wait, ping).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", wait.as_secs())),
    }
}

/// GET /readyz — the database and (when configured) Redis answer, and the node may write
/// (its node-id lease is live).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // Bounded: a balancer's health check must hear "not ready" from a node whose database
    // went away, not wait for the pool to give up.
    let (db, backend) = tokio::join!(
        within(READINESS_WAIT, state.store.health.ping()),
        within(READINESS_WAIT, state.backends.ping()),
    );
    let writable = state.ids.check_writable().is_ok();
    let body = serde_json::json!({
        "database": if db.is_ok() { "ok" } else { "unreachable" },
        "redis": match (&state.backends.redis, &backend) {
            (None, _) => "not configured",
            (Some(_), Ok(())) => "ok",
            (Some(_), Err(_)) => "unreachable",
        },
        "node_id": if writable { "ok" } else { "fenced: lease not renewed" },
    });
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: database");
    }
    if let Err(e) = &backend {
        tracing::warn!(error = %e, "readiness: redis");
    }
    let status = if db.is_ok() && backend.is_ok() && writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// GET /metrics — Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let queue = &state.backends.queue;
    let fanout = queue.len(Outbox::Fanout.queue()).await.unwrap_or(0);
    let notify = queue.len(Outbox::Notify.queue()).await.unwrap_or(0);
    let mut text = state.metrics.render(fanout, notify);
    if let Some(near) = state.backends.redis.as_ref().and_then(|r| r.near()) {
        near_cache_metrics(&mut text, near.stats());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The near cache's counters (Redis only).
fn near_cache_metrics(out: &mut String, stats: &crate::backend::near::Stats) {
    use std::{fmt::Write as _, sync::atomic::Ordering::Relaxed};
    for (name, help, value) in [
        (
            "hits",
            "Cache reads answered from the node's near cache.",
            &stats.hits,
        ),
        (
            "misses",
            "Cache reads the near cache sent to Redis.",
            &stats.misses,
        ),
        (
            "invalidations",
            "Keys Redis told the near cache to drop.",
            &stats.invalidations,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP kith_near_cache_{name}_total {help}\n# TYPE kith_near_cache_{name}_total counter\nkith_near_cache_{name}_total {}",
            value.load(Relaxed)
        );
    }
}

/// GET /v1/openapi.json
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
