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

use super::{delivered::Delivered, service, user_topic};
use crate::{
    auth::{extract::token_from_headers, service as auth},
    backend::{gcra, Decision, Quota, GAP},
    error::AppError,
    http::{client::ClientIp, cookies, slots::Slot},
    state::AppState,
    telemetry::Metrics,
};
use app::{
    model::{ErrorCode, User},
    protocol::{parse_client_frame, ClientFrame, ServerFrame},
};
use axum::{
    extract::{
        ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade},
        State,
    },
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::{Sink, SinkExt, StreamExt};
use std::{
    collections::VecDeque,
    net::IpAddr,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    sync::broadcast::error::RecvError,
    time::{timeout, Instant},
};

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

/// Wake-up payloads on a user's topic. Frames are forwarded to clients untouched.
pub mod wake {
    use bytes::{BufMut, Bytes, BytesMut};

    /// Where a message frame's message sits: for the connection's record of what it sent,
    /// and of each channel's order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Placed {
        pub id: i64,
        pub channel: i64,
        pub seq: i64,
    }

    /// A frame for the user's connections except `origin` (0: none):
    /// `F{origin}|{id}|{channel}|{seq}|{json}`, the message's place, or zeros for an event
    /// that carries no message.
    pub fn frame(origin: u64, message: Option<Placed>, json: &[u8]) -> Bytes {
        let Placed { id, channel, seq } = message.unwrap_or(Placed {
            id: 0,
            channel: 0,
            seq: 0,
        });
        let mut b = BytesMut::with_capacity(json.len() + 64);
        b.put_slice(format!("F{origin}|{id}|{channel}|{seq}|").as_bytes());
        b.put_slice(json);
        b.freeze()
    }

    /// The session with this token hash (base64url) was revoked: `R{hash}`.
    pub fn revoke(token_hash: &str) -> Bytes {
        Bytes::from(format!("R{token_hash}"))
    }

    /// A decoded wake-up.
    pub enum Wake {
        Frame {
            origin: u64,
            message: Option<Placed>,
            json: Bytes,
        },
        Revoke(String),
    }

    /// The number before the next `|` of `rest`, and what follows that `|`.
    fn field<T: std::str::FromStr>(rest: &[u8]) -> Option<(T, &[u8])> {
        let end = rest.iter().position(|c| *c == b'|')?;
        let value = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        Some((value, &rest[end + 1..]))
    }

    pub fn parse(payload: &Bytes) -> Option<Wake> {
        match payload.first()? {
            b'F' => {
                let (origin, rest) = field(&payload[1..])?;
                let (id, rest) = field(rest)?;
                let (channel, rest) = field(rest)?;
                let (seq, rest) = field(rest)?;
                let message = (id > 0).then_some(Placed { id, channel, seq });
                Some(Wake::Frame {
                    origin,
                    message,
                    json: payload.slice(payload.len() - rest.len()..),
                })
            }
            b'R' => Some(Wake::Revoke(
                std::str::from_utf8(&payload[1..]).ok()?.to_string(),
            )),
            _ => None,
        }
    }
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

fn close_frame(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// A server frame as a WebSocket text message.
fn frame_text(frame: &ServerFrame) -> WsMessage {
    WsMessage::Text(frame.to_json().into())
}

/// How a connection whose read failed ends: a message over the size limit, and text that
/// is not UTF-8, get the close code that says so; anything else means the peer is gone.
fn read_failed(e: axum::Error) -> End {
    match e.into_inner().downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            End::Close(close::TOO_BIG, "message too big (64 KiB at most)")
        }
        Some(tungstenite::Error::Utf8(_)) => {
            End::Close(close::INVALID_DATA, "text frames must be UTF-8")
        }
        _ => End::Gone,
    }
}

/// Keeps the open-socket gauge right however the connection ends. It holds the metrics
/// alone: a connection keeps one copy of the (large) `AppState`, in its `Conn`.
struct OpenGauge(Arc<Metrics>);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.websockets_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection ends.
enum End {
    Close(u16, &'static str),
    Gone,
}

/// One connection's state.
struct Conn {
    state: AppState,
    user: User,
    /// The session's token hash, to recognise its revocation (kept raw: 32 bytes in place
    /// rather than a heap string per connection).
    token_hash: [u8; 32],
    /// Identifies this connection in wake-ups it caused itself.
    id: u64,
    /// The socket, read and written by this task alone (no split halves and their lock).
    socket: WebSocket,
    /// Frames waiting for the socket (at most `OUTBOUND_QUEUE`).
    outbound: VecDeque<WsMessage>,
    /// Since when queued frames have been waiting for the socket to take them.
    blocked_since: Option<Instant>,
    /// The messages handed to the client: where a catch-up resumes, and the recent ids
    /// not to send twice (a wake-up that a sync or catch-up overtook, or one that arrives
    /// again after a catch-up).
    delivered: Delivered,
    /// Whether the client has sent a `sync` on this connection (see [`Conn::sync`]).
    synced: bool,
    /// Live messages held back until the client's first `sync` (or [`FIRST_SYNC_WAIT`]);
    /// `None` once released.
    held: Option<Box<Held>>,
    /// GCRA state of the per-connection frame limit.
    tat: Option<i64>,
}

/// Live messages a new connection holds back for its first `sync`.
struct Held {
    until: Instant,
    wakes: Vec<Bytes>,
    /// Wake-ups were lost meanwhile (a gap, a lagged inbox).
    lost: bool,
}

/// What the socket had for the connection loop.
enum Io {
    /// A frame from the client, the end of its stream, or a read error.
    Frame(Option<Result<WsMessage, axum::Error>>),
    /// Writing failed: the peer is gone.
    WriteFailed,
}

async fn run(
    state: AppState,
    mut socket: WebSocket,
    user: Option<(User, String)>,
    mut slots: ConnectionSlots,
) {
    state
        .metrics
        .websockets_open
        .fetch_add(1, Ordering::Relaxed);
    let _gauge = OpenGauge(state.metrics.clone());

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

    let mut wake = match Box::pin(state.backends.pubsub.subscribe(&user_topic(user.id.0))).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe a connection");
            let _ = timeout(
                WRITE_TIMEOUT,
                socket.send(close_frame(close::TRY_AGAIN_LATER, "try again later")),
            )
            .await;
            return;
        }
    };
    // Subscribed: every message committed from now on reaches this connection live (or as
    // a lost wake-up that a catch-up reads from here on).
    let delivered = Delivered::opened_at(crate::storage::now_ms());
    Box::pin(crate::presence::activity(&state, user.id.0)).await;
    let mut conn = Conn {
        token_hash: crate::auth::token::hash(&token),
        state,
        user,
        id: rand::random::<u64>() | 1,
        socket,
        outbound: VecDeque::new(),
        blocked_since: None,
        delivered,
        synced: false,
        held: Some(Box::new(Held {
            until: Instant::now() + FIRST_SYNC_WAIT,
            wakes: Vec::new(),
            lost: false,
        })),
        tat: None,
    };
    drop(token);
    // The futures that wait across many wake-ups live outside the loop: re-creating them on
    // every frame would unlink and relink this connection in lists shared with the other
    // connections (the shutdown signal's waiters), which is most of an idle wake-up's cost.
    let mut shutdown = conn.state.shutdown.clone();
    let shutdown = async move {
        let _ = shutdown.changed().await;
    };
    tokio::pin!(shutdown);
    let ping = tokio::time::sleep(PING_EVERY);
    tokio::pin!(ping);
    let mut last_heard = Instant::now();

    let end = loop {
        // What the last turn queued usually goes out right here, so the write deadline
        // below is armed only for frames the socket could not take.
        if let Err(end) = conn.flush_now() {
            break end;
        }
        // Unflushed frames count as queued too: the socket has not taken them yet.
        let write_deadline = conn.blocked_since.map(|since| since + WRITE_TIMEOUT);
        let hold_deadline = conn.held.as_ref().map(|held| held.until);
        tokio::select! {
            biased;
            () = &mut shutdown => break End::Close(close::RESTARTING, "server restarting; reconnect"),
            io = futures::future::poll_fn(|cx| conn.poll_io(cx)) => {
                last_heard = Instant::now();
                match io {
                    Io::WriteFailed | Io::Frame(None) | Io::Frame(Some(Ok(WsMessage::Close(_)))) => break End::Gone,
                    Io::Frame(Some(Err(e))) => break read_failed(e),
                    Io::Frame(Some(Ok(WsMessage::Text(text)))) => {
                        let result = if text.as_str() == HEARTBEAT {
                            conn.heartbeat().await
                        } else {
                            // Boxed, like every large await below: a future is as big as
                            // its largest state, and an idle connection should not carry
                            // the room a send needs while it waits for the next frame.
                            Box::pin(conn.client_frame(text.as_str())).await
                        };
                        if let Err(end) = result {
                            break end;
                        }
                    }
                    Io::Frame(Some(Ok(WsMessage::Binary(_)))) => {
                        if let Err(end) = conn.push(frame_text(&ServerFrame::error(ErrorCode::InvalidRequest, "binary frames are not supported; send JSON text", None))) {
                            break end;
                        }
                    }
                    Io::Frame(Some(Ok(_))) => {}
                }
            }
            // Armed only while frames wait for the socket: the client stopped reading.
            () = async { tokio::time::sleep_until(write_deadline.unwrap_or_else(Instant::now)).await }, if write_deadline.is_some() => {
                // The deadline was computed before this select; the socket may have taken
                // frames since.
                if conn.blocked_since.is_some_and(|since| since.elapsed() >= WRITE_TIMEOUT) {
                    break End::Close(close::TRY_AGAIN_LATER, "too slow; reconnect and sync");
                }
            }
            // The client did not sync in time: what was held back goes out now.
            () = async { tokio::time::sleep_until(hold_deadline.unwrap_or_else(Instant::now)).await }, if hold_deadline.is_some() => {
                let result = match conn.release_held(false) {
                    Ok(true) => Box::pin(conn.catch_up()).await,
                    Ok(false) => Ok(()),
                    Err(end) => Err(end),
                };
                if let Err(end) = result {
                    break end;
                }
            }
            woke = wake.recv() => {
                // Whether wake-ups were dropped, before this one or among those behind it.
                let lagged = match woke {
                    Ok(payload) => conn.wake_buffered(payload, &mut wake),
                    Err(RecvError::Lagged(_)) => Ok(true),
                    Err(RecvError::Closed) => Err(End::Close(close::RESTARTING, "reconnect")),
                };
                let result = match lagged {
                    Ok(false) => Ok(()),
                    // Before the first sync, which reads from the client's cursor: it
                    // covers what was lost, and a catch-up now would read from a guess.
                    Ok(true) if conn.defer_catch_up() => Ok(()),
                    // Dropped wake-ups: catch up from the database.
                    Ok(true) => match conn.skip_buffered(&mut wake) {
                        Ok(()) => Box::pin(conn.catch_up()).await,
                        Err(end) => Err(end),
                    },
                    Err(end) => Err(end),
                };
                if let Err(end) = result {
                    break end;
                }
            }
            () = &mut ping => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break End::Close(close::GOING_AWAY, "idle");
                }
                ping.as_mut().reset(Instant::now() + PING_EVERY);
                if let Err(end) = conn.push(WsMessage::Ping(Bytes::new())) {
                    break end;
                }
            }
        }
    };
    if let End::Close(code, reason) = end {
        if code == close::TRY_AGAIN_LATER {
            conn.state
                .metrics
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
        }
        // The close jumps ahead of queued frames (a slow consumer's queue is full).
        conn.outbound.clear();
        let _ = timeout(
            Duration::from_secs(1),
            conn.socket.send(close_frame(code, reason)),
        )
        .await;
    }
    let _ = timeout(Duration::from_secs(1), conn.socket.close()).await;
}

fn token_hash_b64(hash: &[u8; 32]) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    URL_SAFE_NO_PAD.encode(hash)
}

/// Waits for an `auth` frame and checks its token.
async fn first_frame_auth(state: &AppState, stream: &mut WebSocket) -> Option<(User, String)> {
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

impl Conn {
    /// Hands queued frames to the socket as far as it takes them, then flushes. A frame
    /// leaves the queue only together with its hand-over, so dropping this poll loses
    /// nothing. `blocked_since` restarts whenever the socket takes a frame, and clears once
    /// all is out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        while !self.outbound.is_empty() {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if let Some(frame) = self.outbound.pop_front() {
                Pin::new(&mut self.socket).start_send(frame)?;
                self.blocked_since = Some(Instant::now());
            }
        }
        if self.outbound.capacity() > OUTBOUND_KEPT {
            self.outbound.shrink_to(OUTBOUND_KEPT);
        }
        let flushed = Pin::new(&mut self.socket).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.blocked_since = None;
        }
        flushed
    }

    /// Writes what is queued (when anything is) and reads the next frame: one poll for both
    /// directions of the one socket.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Io> {
        if self.blocked_since.is_some() {
            if let Poll::Ready(Err(_)) = self.poll_write(cx) {
                return Poll::Ready(Io::WriteFailed);
            }
        }
        self.socket.poll_next_unpin(cx).map(Io::Frame)
    }

    /// Hands queued frames to the socket if it takes them without waiting. (Polled with a
    /// no-op waker: if the socket is full, the loop's next poll registers the real one.)
    fn flush_now(&mut self) -> Result<(), End> {
        if self.blocked_since.is_none() {
            return Ok(());
        }
        let attempt = futures::future::poll_fn(|cx| self.poll_write(cx));
        match futures::FutureExt::now_or_never(attempt) {
            Some(Err(_)) => Err(End::Gone),
            Some(Ok(())) | None => Ok(()),
        }
    }

    /// Queues a frame; a full queue means the client is not keeping up.
    fn push(&mut self, frame: WsMessage) -> Result<(), End> {
        if self.outbound.len() >= OUTBOUND_QUEUE {
            return Err(End::Close(
                close::TRY_AGAIN_LATER,
                "too slow; reconnect and sync",
            ));
        }
        if self.blocked_since.is_none() {
            self.blocked_since = Some(Instant::now());
        }
        self.outbound.push_back(frame);
        Ok(())
    }

    /// Writes out every queued frame (the client asked for them and is reading: waiting
    /// for room is right, not treating a large catch-up as a slow consumer).
    async fn drain(&mut self) -> Result<(), End> {
        match timeout(
            WRITE_TIMEOUT,
            futures::future::poll_fn(|cx| self.poll_write(cx)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Close(
                close::TRY_AGAIN_LATER,
                "too slow; reconnect and sync",
            )),
        }
    }

    fn error(&mut self, e: &AppError, client_msg_id: Option<&str>) -> Result<(), End> {
        let (code, message) = match e {
            AppError::Client { code, message } => (*code, message.clone()),
            AppError::RateLimited { .. } => (ErrorCode::RateLimited, "slow down".to_string()),
            AppError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "chat frame: database unavailable");
                (
                    ErrorCode::Unavailable,
                    "briefly unavailable, retry".to_string(),
                )
            }
            AppError::Internal(cause) => {
                tracing::error!(cause = %cause, "chat frame failed");
                (ErrorCode::Internal, "internal error".to_string())
            }
        };
        self.push(frame_text(&ServerFrame::error(
            code,
            message,
            client_msg_id,
        )))
    }

    /// Hands one wake-up to the client; `true` when it was a message that would open a hole
    /// in its channel's `seq`s and was held back: the caller catches up from the database,
    /// which sends the missing one and this one in order.
    fn wake(&mut self, payload: Bytes) -> Result<bool, End> {
        match wake::parse(&payload) {
            Some(wake::Wake::Frame {
                origin,
                message,
                json,
            }) => {
                if origin == self.id {
                    // The sender's own connection has its `ack`.
                    return Ok(false);
                }
                let Ok(text) = Utf8Bytes::try_from(json) else {
                    return Ok(false);
                };
                let Some(placed) = message else {
                    self.push(WsMessage::Text(text))?;
                    return Ok(false);
                };
                if let Some(held) = self.held.as_mut().filter(|h| h.wakes.len() < HOLD_MAX) {
                    held.wakes.push(payload);
                    return Ok(false);
                }
                if self.delivered.has(placed.channel, placed.seq, placed.id) {
                    return Ok(false);
                }
                if !self.delivered.in_order(placed.channel, placed.seq) {
                    return Ok(true);
                }
                // A message a sync or catch-up already sent is not sent again.
                if !self.delivered.record(placed.id) {
                    return Ok(false);
                }
                self.delivered.placed(placed.channel, placed.seq);
                self.push(WsMessage::Text(text))?;
                self.state
                    .metrics
                    .messages_delivered
                    .fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
            Some(wake::Wake::Revoke(hash)) if hash == token_hash_b64(&self.token_hash) => {
                Err(End::Close(close::REVOKED, "signed out"))
            }
            _ => Ok(false),
        }
    }

    /// Handles `first`, then the wake-ups already waiting behind it (up to [`WAKE_BATCH`]),
    /// so that the loop's next flush writes them all at once. `true` means some were lost
    /// on the way (the subscription lagged, or a [`GAP`]): the caller catches up from the
    /// database.
    fn wake_buffered(
        &mut self,
        first: Bytes,
        wake: &mut crate::backend::Subscription,
    ) -> Result<bool, End> {
        use tokio::sync::broadcast::error::TryRecvError;
        if first == GAP || self.wake(first)? {
            return Ok(true);
        }
        for _ in 1..WAKE_BATCH {
            match wake.try_recv() {
                Ok(payload) if payload == GAP => return Ok(true),
                Ok(payload) => {
                    if self.wake(payload)? {
                        return Ok(true);
                    }
                }
                Err(TryRecvError::Lagged(_)) => return Ok(true),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        Ok(false)
    }

    /// After lost wake-ups, empties the subscription before the catch-up reads the
    /// database: the messages still buffered are committed, so the catch-up sends them (in
    /// id order, which the buffer's may not be). Other events (presence, typing, a revoked
    /// session) are not in the database and are handled now.
    fn skip_buffered(&mut self, wake: &mut crate::backend::Subscription) -> Result<(), End> {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match wake.try_recv() {
                Ok(payload) => {
                    let message = matches!(
                        wake::parse(&payload),
                        Some(wake::Wake::Frame {
                            message: Some(_),
                            ..
                        })
                    );
                    if !message {
                        self.wake(payload)?;
                    }
                }
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return Ok(()),
            }
        }
    }

    /// After lost wake-ups: sends what the connection may have missed, from a little before
    /// the newest message it sent (wake-ups arrive out of order) and skipping what it sent.
    async fn catch_up(&mut self) -> Result<(), End> {
        let since = self.delivered.resume_after();
        self.send_stored(since, false).await
    }

    /// A client's `sync`: every message after `since`. The connection's first sync skips
    /// what the connection already sent live: a client subscribes and then syncs from its
    /// cursor, so a message committed in between reaches it once, by whichever path came
    /// first. A later sync is a client asking again, and is answered in full.
    async fn sync(&mut self, since: i64) -> Result<(), End> {
        let again = std::mem::replace(&mut self.synced, true);
        self.delivered.synced_from(since);
        self.send_stored(since, again).await?;
        if self.release_held(true)? {
            self.catch_up().await?;
        }
        Ok(())
    }

    /// Hands over the live messages held back for the first `sync` (those it sent are
    /// skipped); `true` if the caller must catch up: one would have opened a hole, or
    /// wake-ups were lost while holding and no sync (`synced`) read them since.
    fn release_held(&mut self, synced: bool) -> Result<bool, End> {
        let Some(held) = self.held.take() else {
            return Ok(false);
        };
        let mut catch_up = held.lost && !synced;
        for payload in held.wakes {
            catch_up |= self.wake(payload)?;
        }
        Ok(catch_up)
    }

    /// Notes lost wake-ups for after the first `sync`, if the connection still waits for
    /// it; `false` if it does not (catch up now).
    fn defer_catch_up(&mut self) -> bool {
        self.held.as_mut().map(|held| held.lost = true).is_some()
    }

    async fn send_stored(&mut self, mut since: i64, again: bool) -> Result<(), End> {
        loop {
            let batch = match service::since(&self.state, self.user.id.0, since, 200).await {
                Ok(b) => b,
                Err(e) => return self.error(&e, None),
            };
            let Some(last) = batch.last() else {
                return Ok(());
            };
            since = last.id.0;
            for message in &batch {
                self.delivered.placed(message.channel_id.0, message.seq);
                if !self.delivered.record(message.id.0) && !again {
                    continue;
                }
                let frame = ServerFrame::Message {
                    message: message.clone(),
                }
                .to_json();
                if self.outbound.len() >= OUTBOUND_QUEUE {
                    self.drain().await?;
                }
                self.push(WsMessage::Text(frame.into()))?;
            }
            if batch.len() < 200 {
                return Ok(());
            }
        }
    }

    /// Applies the per-connection frame limit: the time of a frame within it, `None` for
    /// a frame over it (the client has been told, with the `client_msg_id` of a refused
    /// send, read from `text`, so it can mark that message failed).
    fn admit(&mut self, text: Option<&str>) -> Result<Option<i64>, End> {
        let now = self.state.clock.now_ms();
        let (decision, tat) = gcra(self.tat, FRAME_QUOTA, now, true);
        if let Decision::Denied { .. } = decision {
            let client_msg_id = text.and_then(app::protocol::echoed_client_msg_id);
            self.push(frame_text(&ServerFrame::error(
                ErrorCode::RateLimited,
                "too many frames; slow down",
                client_msg_id.as_deref(),
            )))?;
            return Ok(None);
        }
        self.tat = tat;
        Ok(Some(now))
    }

    /// A bare `{"type":"heartbeat"}`: activity, usually batched in memory; only a write
    /// through to the presence store needs the (boxed) async path.
    async fn heartbeat(&mut self) -> Result<(), End> {
        let Some(now) = self.admit(None)? else {
            return Ok(());
        };
        if !crate::presence::batched(&self.state, self.user.id.0, now) {
            Box::pin(crate::presence::activity(&self.state, self.user.id.0)).await;
        }
        Ok(())
    }

    async fn client_frame(&mut self, text: &str) -> Result<(), End> {
        // Limited before it is parsed: a flood costs no more than counting it.
        if self.admit(Some(text))?.is_none() {
            return Ok(());
        }
        crate::presence::activity(&self.state, self.user.id.0).await;
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err(e) => return self.push(frame_text(&e.to_frame())),
        };
        match frame {
            ClientFrame::Auth { .. } => self.push(frame_text(&ServerFrame::error(
                ErrorCode::InvalidRequest,
                "already authenticated",
                None,
            ))),
            ClientFrame::Heartbeat => Ok(()),
            ClientFrame::Sync { since } => self.sync(since.0).await,
            ClientFrame::Send {
                channel_id,
                client_msg_id,
                content,
            } => {
                match service::send(
                    &self.state,
                    &self.user,
                    channel_id.0,
                    &content,
                    &client_msg_id,
                    self.id,
                )
                .await
                {
                    Ok(message) => {
                        self.delivered.record(message.id.0);
                        self.delivered.placed(message.channel_id.0, message.seq);
                        self.push(frame_text(&ServerFrame::Ack {
                            client_msg_id,
                            message,
                        }))
                    }
                    Err(e) => self.error(&e, Some(&client_msg_id)),
                }
            }
            ClientFrame::Typing { channel_id } => {
                let result = service::typing(&self.state, &self.user, channel_id.0).await;
                match result {
                    Ok(()) => Ok(()),
                    Err(e) => self.error(&e, None),
                }
            }
            ClientFrame::Read {
                channel_id,
                message_id,
            } => match service::read(&self.state, &self.user, channel_id.0, message_id.0, self.id)
                .await
            {
                Ok(()) => Ok(()),
                Err(e) => self.error(&e, None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wake;

    #[test]
    fn wake_payloads_round_trip() {
        let placed = wake::Placed {
            id: 7,
            channel: 9,
            seq: 3,
        };
        let p = wake::frame(42, Some(placed), br#"{"type":"message","x":"a|b"}"#);
        match wake::parse(&p) {
            Some(wake::Wake::Frame {
                origin,
                message,
                json,
            }) => {
                assert_eq!((origin, message), (42, Some(placed)));
                assert_eq!(&json[..], br#"{"type":"message","x":"a|b"}"#);
            }
            _ => panic!("not a frame"),
        }
        let event = wake::frame(0, None, b"{}");
        assert!(matches!(
            wake::parse(&event),
            Some(wake::Wake::Frame { message: None, .. })
        ));
        assert!(
            matches!(wake::parse(&wake::revoke("abc")), Some(wake::Wake::Revoke(h)) if h == "abc")
        );
        assert!(wake::parse(&bytes::Bytes::from_static(b"Fx|1|{}")).is_none());
    }
}
