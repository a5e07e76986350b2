//! The chat hub: `GET /v1/chat/ws`, one task per connection.
//!
//! A connection authenticates (header, cookie, or an `auth` frame within 10 s), subscribes
//! to its user's wake-up topic and then multiplexes three things: frames from the client
//! (`send`, `sync`, `heartbeat`, `typing`, `read`), wake-ups from pub/sub (forwarded as they
//! are: each message is serialized once per fanout, not once per connection), and the
//! node's shutdown signal (close 1012 so clients reconnect elsewhere).
//!
//! The same task writes: outbound frames wait in a bounded queue that the loop hands to the
//! socket whenever the socket can take them, so a delivery is one task wake-up and one
//! write, with no hand-over to a second task. A client that does not read fast enough fills
//! the queue and is closed with 1013 ("try again later"); it recovers everything by `sync`
//! from its last message id when it reconnects, and meanwhile it costs the node nothing.
//! Buffers are small so an idle connection stays cheap.
//!
//! # Layout
//! * this module: the upgrade, authentication and admission, and the protocol's limits;
//! * `connection`: [`Conn`](connection::Conn) and the loop of an authenticated connection,
//!   generic over its [`Socket`] (axum's WebSocket, or the in-memory [`pipe`]);
//! * `frames`: what the loop does with a client frame, a wake-up, a `sync` or a catch-up;
//! * [`pipe`]: an in-memory connection, for tests and fuzzing;
//! * [`wake`]: the wake-up payloads on a user's pub/sub topic.

use crate::{
    auth::{extract::token_from_headers, service as auth},
    backend::Quota,
    error::AppError,
    http::{client::ClientIp, cookies, slots::Slot},
    state::AppState,
    telemetry::Metrics,
};
use app::{
    model::User,
    protocol::{parse_client_frame, ClientFrame, ServerFrame},
};
use axum::{
    extract::{
        ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocketUpgrade},
        State,
    },
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};
use std::{
    net::IpAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};
use tokio::time::timeout;

mod connection;
mod frames;
mod pipe;
pub mod wake;

pub use connection::{serve, Socket};
pub use pipe::{pipe, Pipe, PipeClient};

/// Largest frame and message a client may send (SECURITY.md).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Frames waiting for a slow client before it is dropped.
const OUTBOUND_QUEUE: usize = 256;
/// Initial read buffer of a connection (allocated up front by the WebSocket codec).
const READ_BUFFER: usize = 512;
/// Outbound bytes gathered before a write without waiting for the flush: frames queued
/// together (a group commit's messages, a sync page) go out a dozen or so per system call.
/// The buffer keeps the largest size it reached, so this is also what a connection that
/// once caught up holds from then on: small.
const WRITE_COALESCE: usize = 4 * 1024;
/// Queue slots an emptied queue keeps; a catch-up that grew it past this gives the rest
/// back, so an idle connection does not hold a burst's room.
const OUTBOUND_KEPT: usize = 16;
/// Wake-ups taken from the subscription in one turn of a connection's loop, so that those
/// that arrived together are written together.
const WAKE_BATCH: usize = 64;
/// The commonest frame by far; handled without parsing or boxing.
const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;
/// An unauthenticated socket is closed after this long.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// A socket that sends nothing (not even a heartbeat or pong) for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Frames the client has not taken for this long end the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server pings, so proxies keep the connection and dead peers are found.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long a new connection holds live messages back while it waits for the client's
/// first `sync` (clients send it as soon as the socket opens): the sync's answer comes
/// first, then the live messages, in order. A client that does not sync gets them then.
const FIRST_SYNC_WAIT: Duration = Duration::from_millis(500);
/// Most live messages held back for the first `sync`; past this they go out at once.
const HOLD_MAX: usize = 256;
/// Client frames allowed per connection: 20 a second, bursts of 50.
const FRAME_QUOTA: Quota = Quota {
    limit: 20,
    period: Duration::from_secs(1),
    burst: 50,
};

/// Close codes used by the hub.
mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const RESTARTING: u16 = 1012;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The session was revoked (logout).
    pub const REVOKED: u16 = 4001;
}

/// GET /v1/chat/ws
pub async fn upgrade(
    State(state): State<AppState>,
    ClientIp(address): ClientIp,
    ws: WebSocketUpgrade,
    headers: HeaderMap,
) -> Response {
    // Authenticate what the upgrade request carries; an anonymous upgrade must send an
    // `auth` frame first.
    let via_cookie = headers.get(header::AUTHORIZATION).is_none()
        && cookies::get(&headers, cookies::SESSION_COOKIE).is_some();
    if via_cookie {
        // Cookies ride along on cross-site requests; only our own pages may use them here.
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if !origin.is_some_and(|o| state.config.allowed_origins.iter().any(|a| a == o)) {
            return AppError::forbidden("cross-origin WebSocket refused").into_response();
        }
    }
    let user = match token_from_headers(&headers) {
        Err(e) => return e.into_response(),
        Ok(None) => None,
        Ok(Some(token)) => match auth::authenticate(&state, &token).await {
            Ok(Some(user)) => Some((user, token)),
            Ok(None) => return AppError::unauthorized().into_response(),
            Err(e) => return e.into_response(),
        },
    };
    // Held for the connection's life; refused (429) while the address holds its share.
    let address_slot = match address.map(|ip| state.slots.ws_per_address.take(ip)) {
        Some(Err(e)) => return e.into_response(),
        Some(Ok(slot)) => Some(slot),
        None => None,
    };
    let user_slot = match &user {
        Some((user, _)) => match admit_connection(&state, user.id.0).await {
            Ok(slot) => Some(slot),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let slots = (address_slot, user_slot);
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        // Chat frames are small; a larger frame grows the buffer while it is read.
        .read_buffer_size(READ_BUFFER)
        // Frames handed over together leave in one write at the flush that follows them
        // (the buffer starts empty and grows only as frames need it).
        .write_buffer_size(WRITE_COALESCE)
        .max_write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| run(state, socket, user, slots))
}

/// Takes one of the user's WebSocket openings (`KITH_WS_CONNECT_RATE_PER_MIN`, shared by
/// every node through the rate limiter) and one of their open-socket slots on this node
/// (`KITH_WS_PER_USER`): a client reconnecting in a tight loop, or many sockets opened with
/// one stolen token, is refused with 429 (or closed with 1013).
async fn admit_connection(state: &AppState, user: i64) -> Result<Slot<i64>, AppError> {
    let slot = state.slots.ws_per_user.take(user)?;
    let quota = Quota::per_minute(state.config.ws_connect_rate_per_min);
    state
        .take_quota(&crate::backend::id_key("ws-connect:", user), quota)
        .await?;
    Ok(slot)
}

/// The slots a connection holds (its client address's, its user's), given back when it
/// ends.
type ConnectionSlots = (Option<Slot<IpAddr>>, Option<Slot<i64>>);

pub(super) fn close_frame(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// A server frame as a WebSocket text message.
pub(super) fn frame_text(frame: &ServerFrame) -> WsMessage {
    WsMessage::Text(frame.to_json().into())
}

/// Keeps the open-socket gauge right however the connection ends. It holds the metrics
/// alone: a connection keeps one copy of the (large) `AppState`, in its `Conn`.
struct OpenGauge(Arc<Metrics>);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.websockets_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run<S: Socket>(
    state: AppState,
    mut socket: S,
    user: Option<(User, String)>,
    mut slots: ConnectionSlots,
) {
    state
        .metrics
        .websockets_open
        .fetch_add(1, Ordering::Relaxed);
    let gauge = OpenGauge(state.metrics.clone());

    let (user, token) = match user {
        Some(u) => u,
        None => match timeout(
            AUTH_TIMEOUT,
            Box::pin(first_frame_auth(&state, &mut socket)),
        )
        .await
        {
            Ok(Some(u)) => {
                let refused = match Box::pin(admit_connection(&state, u.0.id.0)).await {
                    Ok(slot) => {
                        slots.1 = Some(slot);
                        None
                    }
                    Err(AppError::RateLimited { .. }) => {
                        Some("too many connections; try again later")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check a connection's rate limit");
                        Some("try again later")
                    }
                };
                if let Some(reason) = refused {
                    let _ = timeout(
                        WRITE_TIMEOUT,
                        socket.send(close_frame(close::TRY_AGAIN_LATER, reason)),
                    )
                    .await;
                    return;
                }
                u
            }
            _ => {
                let _ = timeout(
                    WRITE_TIMEOUT,
                    socket.send(close_frame(close::POLICY, "authentication required")),
                )
                .await;
                return;
            }
        },
    };
    tokio::spawn(serve(state, socket, user, token, (gauge, slots)));
}

pub(super) fn token_hash_b64(hash: &[u8; 32]) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    URL_SAFE_NO_PAD.encode(hash)
}

/// Waits for an `auth` frame and checks its token.
async fn first_frame_auth<S: Socket>(state: &AppState, stream: &mut S) -> Option<(User, String)> {
    while let Some(Ok(frame)) = stream.next().await {
        match frame {
            WsMessage::Text(text) => {
                let Ok(ClientFrame::Auth { token }) = parse_client_frame(text.as_str()) else {
                    return None;
                };
                return match auth::authenticate(state, &token).await {
                    Ok(Some(user)) => Some((user, token)),
                    _ => None,
                };
            }
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            _ => return None,
        }
    }
    None
}
