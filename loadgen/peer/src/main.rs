//! `socketio-peer`: the server `loadgen versus` measures Kith against. A Socket.IO (protocol
//! v5) rooms server on socketioxide, on a `current_thread` runtime, doing what Kith's chat
//! hub does for a send minus durability: relay it to the other members of a room, then
//! acknowledge it. It keeps nothing, so it delivers at most once, from memory.
//!
//! * Connecting to namespace `/` with auth `{"rooms": ["7", …]}` joins those rooms: the
//!   load tool names them after Kith's channel ids, so both servers see the same channels.
//! * Event `msg` `{"to": "7", "content": "…", …}` is emitted as `msg`, unchanged, to every
//!   other socket in room `to`; if the client asked for an ack, the ack is `"ok"`.
//! * The engine pings every 10 s (Kith's browser client heartbeats every 10 s) and gives a
//!   client 20 s to answer; everything else is socketioxide's default configuration.
//! * `GET /readyz` answers 200 once it listens; `GET /metrics` gives
//!   `socketio_sockets_open <n>`, which the load tool waits on as it does on Kith's
//!   `kith_websockets_open`.
//!
//! It listens on `LEPTOS_SITE_ADDR` (the variable the load tool sets for any server it
//! starts), `127.0.0.1:3100` by default, with `TCP_NODELAY` as Kith does.

use axum::{routing::get, serve::ListenerExt as _, Router};
use serde::Deserialize;
use socketioxide::{
    extract::{AckSender, Data, SocketRef},
    SocketIo,
};
use std::time::Duration;

/// The engine's ping interval: the heartbeat of every connected client.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Deserialize)]
struct Auth {
    #[serde(default)]
    rooms: Vec<String>,
}

#[derive(Deserialize)]
struct Addressed {
    to: String,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::var("LEPTOS_SITE_ADDR").unwrap_or_else(|_| "127.0.0.1:3100".into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr))
}

async fn serve(addr: String) -> std::io::Result<()> {
    let (layer, io) = SocketIo::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .build_layer();
    io.ns("/", on_connect);
    let app = Router::new()
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(move || {
                let io = io.clone();
                async move { format!("socketio_sockets_open {}\n", io.sockets().len()) }
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("socketio-peer listening on {addr}");
    axum::serve(listener, app).await
}

async fn on_connect(socket: SocketRef, Data(auth): Data<Auth>) {
    socket.join(auth.rooms);
    socket.on("msg", relay);
}

/// Relays a `msg` to the rest of its room, then acknowledges it.
async fn relay(socket: SocketRef, Data(msg): Data<serde_json::Value>, ack: AckSender) {
    let Ok(Addressed { to }) = Addressed::deserialize(&msg) else {
        let _ = ack.send("no room: a msg names its room in `to`");
        return;
    };
    // A member whose buffer is full misses the message, as a peer without storage does.
    let _ = socket.to(to).emit("msg", &msg).await;
    let _ = ack.send("ok");
}
