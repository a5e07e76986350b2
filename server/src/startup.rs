//! Building and running a Kith node: state, router, listener, graceful shutdown.

use crate::{
    auth,
    backend::Backends,
    config::Config,
    error::AppError,
    http::edge,
    ops,
    state::{AppState, AppStateInner, Clock, SystemClock},
    storage::Storage,
    telemetry::Metrics,
    ui, users,
};
use app::model::ErrorCode;
use axum::{extract::DefaultBodyLimit, middleware::from_fn_with_state, Router};
use leptos::config::{get_configuration, LeptosOptions};
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes as _};
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::ServiceBuilder;
use tower_http::{timeout::RequestBodyTimeoutLayer, trace::TraceLayer};

/// Largest accepted request body (JSON API and server functions alike).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] crate::storage::ConnectError),
    #[error("redis: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("leptos configuration: {0}")]
    Leptos(String),
    #[error("{0}")]
    Other(String),
}

/// A built node, bound to its port but not yet serving.
pub struct Application {
    listener: TcpListener,
    /// Tells WebSockets to close (1012) when the node stops.
    shutdown: tokio::sync::watch::Sender<bool>,
    router: Router,
    state: AppState,
    port: u16,
}

impl Application {
    /// Builds a node with the system clock.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds a node whose time-based rules follow `clock` (tests use a manual clock).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let store = Storage::connect(config.database_url.expose(), &config.storage).await?;
        let backends = match &config.redis_url {
            Some(url) => {
                Backends::redis(
                    url.expose(),
                    &config.redis_namespace,
                    config.near_cache_bytes,
                )
                .await?
            }
            None => Backends::memory(),
        };
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: config.addr,
                source,
            })?
            .port();

        // cargo-leptos passes the site settings through LEPTOS_* variables (at build and
        // run time); a binary built by plain cargo (tests, the load tool) uses the defaults.
        let from_cargo_leptos = std::env::var_os("LEPTOS_OUTPUT_NAME").is_some()
            || option_env!("LEPTOS_OUTPUT_NAME").is_some();
        let mut leptos = if from_cargo_leptos {
            get_configuration(None)
                .map_err(|e| StartupError::Leptos(e.to_string()))?
                .leptos_options
        } else {
            LeptosOptions::builder()
                .output_name("kith")
                .site_root("target/site")
                .build()
        };
        leptos.site_addr = SocketAddr::new(config.addr.ip(), port);

        let dummy_hash =
            tokio::task::spawn_blocking(|| auth::password::hash_blocking(&auth::token::generate()))
                .await
                .map_err(|e| StartupError::Other(format!("hashing task: {e}")))?
                .map_err(|e| StartupError::Other(e.to_string()))?;

        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let (cluster, ids) = crate::cluster::Membership::join(
            &config,
            backends.redis.as_ref(),
            SocketAddr::new(config.addr.ip(), port),
        )
        .await?;
        let ids = Arc::new(ids);
        let metrics = Arc::new(Metrics::default());
        let messages = crate::chat::writer::Writer::spawn(
            store.chat.clone(),
            ids.clone(),
            metrics.clone(),
            backends.pubsub.clone(),
        );
        let config_media_workers = config.media_workers;
        let state = AppState::new(AppStateInner {
            shutdown: shutdown_rx,
            ids,
            cluster,
            slots: crate::http::slots::OpenSlots::new(&config.limits),
            config: Arc::new(config),
            store,
            backends,
            clock,
            metrics,
            // Two hashes at a time per core keeps a login burst from starving other work.
            hashing: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            )),
            media_work: Arc::new(Semaphore::new(config_media_workers)),
            media_uploads: Arc::new(Semaphore::new(
                config_media_workers * crate::media::service::UPLOADS_PER_WORKER,
            )),
            dummy_hash: dummy_hash.into(),
            leptos,
            presence: Arc::default(),
            messages,
            longpolls: Arc::default(),
        });
        spawn_session_sweeper(state.clone());
        crate::media::service::spawn_collector(&state);
        state.store.health.spawn_upkeep();
        // Each outbox's jobs belong to the feature that does them.
        crate::outbox::spawn(
            &state,
            &[
                (
                    crate::outbox::Outbox::Fanout,
                    Arc::new(crate::feed::fanout::FanoutJobs),
                ),
                (
                    crate::outbox::Outbox::Notify,
                    Arc::new(crate::notifications::posts::NotifyJobs),
                ),
            ],
        );
        crate::cluster::spawn(&state);
        crate::presence::spawn(&state);
        let router = router(state.clone());
        Ok(Self {
            listener,
            shutdown,
            router,
            state,
            port,
        })
    }

    /// The port the node listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's state (tests inspect it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let notify = self.shutdown;
        let signal = async move {
            shutdown.await;
            let _ = notify.send(true);
        };
        let header_timeout = self.state.config.limits.header_timeout;
        let served =
            crate::http::serve::serve(self.listener, self.router, header_timeout, signal).await;
        // Upgraded WebSockets are not tracked by the HTTP server's graceful shutdown: give
        // them a moment to send their close frames before the process goes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self
            .state
            .metrics
            .websockets_open
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The last sends' wake-ups may still be queued for the other nodes.
        match tokio::time::timeout(Duration::from_secs(2), self.state.backends.pubsub.flush()).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "wake-ups queued at shutdown were not all published")
            }
            Err(_) => {
                tracing::warn!("wake-ups queued at shutdown were still unpublished after 2 s")
            }
        }
        served
    }
}

/// The UI's route table, generated once per process.
///
/// Generating it renders the app with resource loading suppressed through a
/// process-wide flag; a resource first polled by a page render while another
/// node in the same process (tests run many) regenerated the table would never
/// resolve. The table depends on nothing but the app, so one copy serves all.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<AxumRouteListing>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

/// The whole HTTP surface of a node.
pub fn router(state: AppState) -> Router {
    let leptos = state.leptos.clone();
    let routes = route_list();
    let context = ui::context_provider(&state);
    let shell = move || app::shell(leptos.clone());
    Router::new()
        .merge(auth::routes::router())
        .merge(users::routes::router())
        .merge(crate::feed::routes::router())
        .merge(crate::graph::routes::router())
        .merge(crate::chat::routes::router())
        .merge(crate::cluster::routes::router())
        .merge(crate::presence::routes::router())
        .merge(crate::notifications::routes::router())
        .merge(crate::media::routes::router())
        .merge(ops::router())
        .route("/v1/{*rest}", axum::routing::any(no_such_endpoint))
        .leptos_routes_with_context(&state, routes, context.clone(), shell)
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, app::shell))
        // Each `layer` wraps every route once more, and each wrapping costs every request
        // a clone and a boxed future: so the edge's concerns are one middleware, and the
        // layers that need no state one stack.
        .layer(from_fn_with_state(state.clone(), edge::edge))
        .layer(
            ServiceBuilder::new()
                // A body must arrive within its deadline once the headers are in (the
                // headers' own deadline is the server loop's, `http::serve`).
                .layer(RequestBodyTimeoutLayer::new(
                    state.config.limits.body_timeout,
                ))
                .layer(TraceLayer::new_for_http())
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(state)
}

/// `/v1/…` paths that no route has: a JSON 404, without rendering the UI's not-found page.
async fn no_such_endpoint() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such endpoint")
}

/// Deletes expired sessions once an hour (lookups already ignore them; this bounds the table).
fn spawn_session_sweeper(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match state
                .store
                .accounts
                .delete_expired_sessions(state.clock.now_ms())
                .await
            {
                Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions swept"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "session sweep failed"),
            }
        }
    });
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}
