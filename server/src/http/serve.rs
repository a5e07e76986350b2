//! The HTTP/1.1 server loop: accepts connections, serves each with hyper on a task of its
//! own, and shuts down gracefully.
//!
//! It is axum's `serve` with one addition that `serve` does not offer: a deadline for a
//! request's headers (`KITH_HEADER_TIMEOUT_SECS`). Without one, a client that opens
//! connections and sends their headers a byte at a time holds each connection, its task
//! and a file descriptor for as long as it likes; with it, such a connection is closed
//! once its deadline passes, and clients that send whole requests are served meanwhile
//! as usual. WebSocket upgrades are supported; the body deadline is a layer of the router
//! (`crate::startup`).

use axum::{extract::connect_info::IntoMakeServiceWithConnectInfo, Router};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use std::{future::Future, net::SocketAddr, pin::pin, time::Duration};
use tokio::{net::TcpListener, sync::watch};
use tower::{Service, ServiceExt};

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, asks
/// every open connection to finish its request in flight and close, and returns once all
/// have. Upgraded connections (WebSockets) live on by themselves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut make: IntoMakeServiceWithConnectInfo<Router, SocketAddr> =
        router.into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // `true` asks the connections to close; each holds a `done` receiver, so the sender
    // sees every receiver gone once the last connection has closed.
    let (stop, stopping) = watch::channel(false);
    let (all_done, done) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Nagle's algorithm would hold small responses and frames back for up to 40 ms.
        let _ = tcp.set_nodelay(true);
        let service = match ServiceExt::<SocketAddr>::ready(&mut make).await {
            Ok(make) => match make.call(remote).await {
                Ok(service) => service,
                Err(never) => match never {},
            },
            Err(never) => match never {},
        };
        let connection = builder
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
            .with_upgrades();
        let mut stopping = stopping.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let stop = async {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let asked_to_stop = tokio::select! {
                _ = connection.as_mut() => false,
                () = stop => true,
            };
            if asked_to_stop {
                connection.as_mut().graceful_shutdown();
                let _ = connection.as_mut().await;
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(done);
    all_done.closed().await;
    Ok(())
}

/// After a failed `accept`: a connection that failed before it was taken concerns that
/// connection alone; anything else (out of file descriptors, say) is logged, and the loop
/// pauses so that it does not spin while the condition lasts.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
