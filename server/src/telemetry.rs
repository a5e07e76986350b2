//! Logs and metrics: the tracing subscriber, the per-request metrics ([`RequestTimer`], a
//! step of the HTTP edge) and the Prometheus text rendering behind `/metrics`.
//!
//! Metrics live in [`Metrics`], owned by `AppState` (no global registry), so every server a
//! test starts has its own counts.

use crate::{error::LoggedCause, state::AppState};
use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    response::Response,
};
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Mutex,
    },
    time::Instant,
};

/// Installs the global tracing subscriber (`RUST_LOG` overrides the default filter).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Histogram bucket bounds in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram, as Prometheus expects it (cumulative at render time).
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// The node's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Method → route template → requests by status and their latency. Route templates,
    /// not raw paths, keep the label set bounded whatever URLs clients send.
    requests: Mutex<BTreeMap<String, BTreeMap<String, RouteStats>>>,
    /// Open WebSocket connections.
    pub websockets_open: AtomicI64,
    /// Long-poll requests currently waiting.
    pub longpoll_waiters: AtomicI64,
    /// Chat messages handed to a connection.
    pub messages_delivered: AtomicU64,
    /// WebSockets closed with 1013 because the client did not keep up.
    pub slow_consumers: AtomicU64,
    /// Users currently online on this node's view.
    pub presence_online: AtomicI64,
    /// Post stored → last follower's feed written.
    pub fanout_lag: Histogram,
    /// A chat send handed to the message writer → its transaction committed, or failed
    /// (what an `ack` or a 201 waits for, before the socket).
    pub message_store: Histogram,
}

/// The requests of one method and route template.
#[derive(Debug, Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    latency: Histogram,
}

/// Runs `f` on `map`'s entry for `key`, inserting a default one first if there is none; the
/// key is copied only then, so a known key costs no allocation.
fn with_entry<V: Default>(map: &mut BTreeMap<String, V>, key: &str, f: impl FnOnce(&mut V)) {
    match map.get_mut(key) {
        Some(value) => f(value),
        None => f(map.entry(key.to_owned()).or_default()),
    }
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        with_entry(&mut requests, method, |routes| {
            with_entry(routes, route, |stats| {
                *stats.by_status.entry(status).or_default() += 1;
                stats.latency.observe(seconds);
            })
        });
    }

    /// Renders every metric in the Prometheus text format; the queue depths are read from
    /// the queues by the caller.
    pub fn render(&self, fanout_queue_depth: u64, notification_queue_depth: u64) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP kith_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE kith_http_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let routes = || {
            requests.iter().flat_map(|(method, routes)| {
                routes.iter().map(move |(route, s)| (method, route, s))
            })
        };
        for (method, route, stats) in routes() {
            for (status, count) in &stats.by_status {
                let _ = writeln!(
                    out,
                    "kith_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP kith_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE kith_http_request_duration_seconds histogram\n");
        for (method, route, stats) in routes() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            stats
                .latency
                .render(&mut out, "kith_http_request_duration_seconds", &labels);
        }
        drop(requests);
        let gauges = [
            (
                "kith_websockets_open",
                "Open WebSocket connections.",
                self.websockets_open.load(Ordering::Relaxed),
            ),
            (
                "kith_longpoll_waiters",
                "Long-poll requests waiting.",
                self.longpoll_waiters.load(Ordering::Relaxed),
            ),
            (
                "kith_presence_online",
                "Users online.",
                self.presence_online.load(Ordering::Relaxed),
            ),
            (
                "kith_fanout_queue_depth",
                "Fanout jobs waiting.",
                fanout_queue_depth as i64,
            ),
            (
                "kith_notification_queue_depth",
                "Post notification jobs waiting.",
                notification_queue_depth as i64,
            ),
            (
                "kith_runtime_tasks_alive",
                "Tasks alive on the node's async runtime (a leak shows as growth).",
                tokio::runtime::Handle::try_current()
                    .map_or(0, |h| h.metrics().num_alive_tasks() as i64),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let delivered = self.messages_delivered.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP kith_messages_delivered_total Chat messages delivered to connections.\n# TYPE kith_messages_delivered_total counter\nkith_messages_delivered_total {delivered}"
        );
        let slow = self.slow_consumers.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP kith_ws_slow_consumers_total WebSockets closed (1013) for not keeping up.\n# TYPE kith_ws_slow_consumers_total counter\nkith_ws_slow_consumers_total {slow}"
        );
        out.push_str("# HELP kith_fanout_lag_seconds Post stored to last follower feed written.\n");
        out.push_str("# TYPE kith_fanout_lag_seconds histogram\n");
        self.fanout_lag
            .render(&mut out, "kith_fanout_lag_seconds", "");
        out.push_str("# HELP kith_message_store_seconds Chat send queued for the message writer to its commit.\n");
        out.push_str("# TYPE kith_message_store_seconds histogram\n");
        self.message_store
            .render(&mut out, "kith_message_store_seconds", "");
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// HTTP's own methods by name, any other as `other`: a route answers every method (405
/// for those it lacks), and a label per made-up method would let clients add series
/// without end.
fn method_label(method: &Method) -> &str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if KNOWN.contains(method) {
        method.as_str()
    } else {
        "other"
    }
}

/// The metrics step of the HTTP edge (`crate::http::edge`): started when a request
/// arrives, finished with its response, which counts and times it by method and route
/// template and logs the cause of a 500 once, inside the request's span.
pub struct RequestTimer {
    started: Instant,
    method: Method,
    /// The route template, when a route matched.
    route: Option<MatchedPath>,
    /// An unmatched path under `/pkg/` (the UI's static files).
    pkg: bool,
}

impl RequestTimer {
    pub fn start(req: &Request) -> Self {
        Self {
            started: Instant::now(),
            method: req.method().clone(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            pkg: req.uri().path().starts_with("/pkg/"),
        }
    }

    pub fn finish(self, state: &AppState, response: &Response) {
        let method = method_label(&self.method);
        // Unmatched paths are pages or static files; one label for each keeps the series
        // count bounded.
        let route = match &self.route {
            Some(path) => path.as_str(),
            None if self.pkg => "/pkg/*",
            None => "page",
        };
        let status = response.status().as_u16();
        if let Some(LoggedCause(cause)) = response.extensions().get::<LoggedCause>() {
            tracing::error!(%method, %route, %status, cause = %cause, "request failed");
        }
        state
            .metrics
            .record(method, route, status, self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_and_timed_by_method_route_and_status() {
        let metrics = Metrics::default();
        metrics.record("POST", "/v1/a", 201, 0.001);
        metrics.record("POST", "/v1/a", 201, 0.002);
        metrics.record("POST", "/v1/a", 400, 0.3);
        metrics.record("GET", "/v1/a", 200, 0.001);
        let out = metrics.render(0, 0);
        for line in [
            r#"kith_http_requests_total{method="GET",route="/v1/a",status="200"} 1"#,
            r#"kith_http_requests_total{method="POST",route="/v1/a",status="201"} 2"#,
            r#"kith_http_requests_total{method="POST",route="/v1/a",status="400"} 1"#,
            r#"kith_http_request_duration_seconds_count{method="GET",route="/v1/a"} 1"#,
            r#"kith_http_request_duration_seconds_count{method="POST",route="/v1/a"} 3"#,
            r#"kith_http_request_duration_seconds_bucket{method="POST",route="/v1/a",le="0.0025"} 2"#,
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
    }

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["FROB", "GETX", "get"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
    }
}
