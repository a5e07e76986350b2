//! The chat hub: `GET /v1/chat/ws`, one task per connection.
//!
//! A connection authenticates (header, cookie, or an `auth` frame within 10 s), subscribes
//! to its user's wake-up topic and then multiplexes three things: frames from the client
//! (`send`, `sync`, `heartbeat`, `typing`, `read`), wake-ups from pub/sub (forwarded as they
//! are: each message is serialized once per fanout, not once per connection), and the
//! node's shutdown signal (close 1012 so clients reconnect elsewhere).
//!
//! Outbound frames go through a bounded queue drained by a writer task. A client that does
//! not read fast enough fills it and is closed with 1013 ("try again later"); it recovers
//! everything by `sync` from its last message id when it reconnects, and meanwhile it costs
//! the node nothing. Buffers are small so an idle connection stays cheap.

use super::{service, user_topic};
use crate::{
    auth::{extract::token_from_headers, service as auth},
    backend::{gcra, Decision, Quota},
    error::AppError,
    http::cookies,
    state::AppState,
};
use app::model::{Id, User};
use axum::{
    extract::{
        ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade},
        State,
    },
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::{sync::atomic::Ordering, time::Duration};
use tokio::sync::{broadcast::error::RecvError, mpsc, oneshot};

/// Largest frame and message a client may send (SECURITY.md).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Frames waiting for a slow client before it is dropped.
const OUTBOUND_QUEUE: usize = 256;
/// An unauthenticated socket is closed after this long.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// A socket that sends nothing (not even a heartbeat or pong) for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// A send the client does not take within this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server pings, so proxies keep the connection and dead peers are found.
const PING_EVERY: Duration = Duration::from_secs(30);
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
    pub const TOO_BIG: u16 = 1009;
    pub const RESTARTING: u16 = 1012;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The session was revoked (logout).
    pub const REVOKED: u16 = 4001;
}

/// Wake-up payloads on a user's topic. Frames are forwarded to clients untouched.
pub mod wake {
    use bytes::{BufMut, Bytes, BytesMut};

    /// A frame for the user's connections except `origin` (0: none): `F{origin}|{id}|{json}`,
    /// where `id` is the message id it carries (0 if none), for the connection's cursor.
    pub fn frame(origin: u64, message_id: i64, json: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(json.len() + 32);
        b.put_slice(format!("F{origin}|{message_id}|").as_bytes());
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
            message_id: i64,
            json: Bytes,
        },
        Revoke(String),
    }

    pub fn parse(payload: &Bytes) -> Option<Wake> {
        match payload.first()? {
            b'F' => {
                let rest = &payload[1..];
                let a = rest.iter().position(|c| *c == b'|')?;
                let origin = std::str::from_utf8(&rest[..a]).ok()?.parse().ok()?;
                let rest2 = &rest[a + 1..];
                let b = rest2.iter().position(|c| *c == b'|')?;
                let message_id = std::str::from_utf8(&rest2[..b]).ok()?.parse().ok()?;
                let start = 1 + a + 1 + b + 1;
                Some(Wake::Frame {
                    origin,
                    message_id,
                    json: payload.slice(start..),
                })
            }
            b'R' => Some(Wake::Revoke(
                std::str::from_utf8(&payload[1..]).ok()?.to_string(),
            )),
            _ => None,
        }
    }
}

/// Frames a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Auth {
        token: String,
    },
    Send {
        channel_id: Id,
        client_msg_id: String,
        content: String,
    },
    Sync {
        since: Id,
    },
    Heartbeat,
    Typing {
        channel_id: Id,
    },
    Read {
        channel_id: Id,
        message_id: Id,
    },
}

/// GET /v1/chat/ws
pub async fn upgrade(
    State(state): State<AppState>,
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
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| run(state, socket, user))
}

fn close_frame(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

fn error_frame(code: &str, message: &str, client_msg_id: Option<&str>) -> WsMessage {
    let mut frame = serde_json::json!({"type": "error", "code": code, "message": message});
    if let Some(id) = client_msg_id {
        frame["client_msg_id"] = id.into();
    }
    WsMessage::Text(frame.to_string().into())
}

/// Keeps the open-socket gauge right however the connection ends.
struct OpenGauge(AppState);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0
            .metrics
            .websockets_open
            .fetch_sub(1, Ordering::Relaxed);
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
    token_hash: String,
    /// Identifies this connection in wake-ups it caused itself.
    id: u64,
    out: mpsc::Sender<WsMessage>,
    /// The largest message id this connection has handed the client.
    cursor: i64,
    /// GCRA state of the per-connection frame limit.
    tat: Option<i64>,
}

async fn run(state: AppState, socket: WebSocket, user: Option<(User, String)>) {
    state
        .metrics
        .websockets_open
        .fetch_add(1, Ordering::Relaxed);
    let _gauge = OpenGauge(state.clone());
    let (mut sink, mut stream) = socket.split();

    let (user, token) = match user {
        Some(u) => u,
        None => {
            match tokio::time::timeout(AUTH_TIMEOUT, first_frame_auth(&state, &mut stream)).await {
                Ok(Some(u)) => u,
                _ => {
                    let _ = sink
                        .send(close_frame(close::POLICY, "authentication required"))
                        .await;
                    return;
                }
            }
        }
    };

    let (out, mut outbox) = mpsc::channel::<WsMessage>(OUTBOUND_QUEUE);
    // The writer drains the queue; a close request jumps ahead of queued frames (a slow
    // consumer's queue is full), and a client that stops reading altogether is dropped
    // after WRITE_TIMEOUT instead of holding the task forever.
    let (closer, mut close_request) = oneshot::channel::<(u16, &'static str)>();
    let writer = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                biased;
                request = &mut close_request => match request {
                    Ok((code, reason)) => close_frame(code, reason),
                    Err(_) => break,
                },
                frame = outbox.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
            };
            let closing = matches!(frame, WsMessage::Close(_));
            match tokio::time::timeout(WRITE_TIMEOUT, sink.send(frame)).await {
                Ok(Ok(())) if !closing => {}
                _ => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    });

    let mut wake = match state
        .backends
        .pubsub
        .subscribe(&user_topic(user.id.0))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe a connection");
            let _ = out
                .send(close_frame(close::TRY_AGAIN_LATER, "try again later"))
                .await;
            drop(out);
            let _ = writer.await;
            return;
        }
    };
    crate::presence::activity(&state, user.id.0).await;
    let mut conn = Conn {
        token_hash: token_hash_b64(&token),
        state: state.clone(),
        user,
        id: rand::random::<u64>() | 1,
        out,
        cursor: 0,
        tat: None,
    };
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();

    let end = loop {
        tokio::select! {
            _ = shutdown.changed() => break End::Close(close::RESTARTING, "server restarting; reconnect"),
            frame = stream.next() => {
                last_heard = tokio::time::Instant::now();
                match frame {
                    None | Some(Ok(WsMessage::Close(_))) => break End::Gone,
                    Some(Err(e)) => {
                        let text = e.to_string();
                        break if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
                            End::Close(close::TOO_BIG, "message too big (64 KiB at most)")
                        } else {
                            End::Gone
                        };
                    }
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Err(end) = conn.client_frame(text.as_str()).await {
                            break end;
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        if conn.push(error_frame("invalid_request", "binary frames are not supported; send JSON text", None)).is_err() {
                            break End::Close(close::TRY_AGAIN_LATER, "too slow; reconnect and sync");
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
            woke = wake.recv() => {
                let result = match woke {
                    Ok(payload) => conn.wake(payload),
                    // Dropped wake-ups: catch up from the database.
                    Err(RecvError::Lagged(_)) => conn.catch_up().await,
                    Err(RecvError::Closed) => Err(End::Close(close::RESTARTING, "reconnect")),
                };
                if let Err(end) = result {
                    break end;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break End::Close(close::GOING_AWAY, "idle");
                }
                if conn.push(WsMessage::Ping(Bytes::new())).is_err() {
                    break End::Close(close::TRY_AGAIN_LATER, "too slow; reconnect and sync");
                }
            }
        }
    };
    match end {
        End::Close(code, reason) => {
            if code == close::TRY_AGAIN_LATER {
                state.metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
            }
            let _ = closer.send((code, reason));
        }
        End::Gone => drop(closer),
    }
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

fn token_hash_b64(token: &str) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    URL_SAFE_NO_PAD.encode(crate::auth::token::hash(token))
}

/// Waits for an `auth` frame and checks its token.
async fn first_frame_auth(
    state: &AppState,
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> Option<(User, String)> {
    while let Some(Ok(frame)) = stream.next().await {
        match frame {
            WsMessage::Text(text) => {
                let Ok(ClientFrame::Auth { token }) =
                    serde_json::from_str::<ClientFrame>(text.as_str())
                else {
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
    /// Queues a frame; a full queue means the client is not keeping up.
    fn push(&self, frame: WsMessage) -> Result<(), End> {
        self.out
            .try_send(frame)
            .map_err(|_| End::Close(close::TRY_AGAIN_LATER, "too slow; reconnect and sync"))
    }

    fn error(&self, e: &AppError, client_msg_id: Option<&str>) -> Result<(), End> {
        let (code, message) = match e {
            AppError::Client { code, message } => (code.as_str(), message.clone()),
            AppError::RateLimited { .. } => ("rate_limited", "slow down".to_string()),
            AppError::Internal(cause) => {
                tracing::error!(cause = %cause, "chat frame failed");
                ("internal", "internal error".to_string())
            }
        };
        self.push(error_frame(code, &message, client_msg_id))
    }

    fn wake(&mut self, payload: Bytes) -> Result<(), End> {
        match wake::parse(&payload) {
            Some(wake::Wake::Frame {
                origin,
                message_id,
                json,
            }) => {
                if origin == self.id {
                    return Ok(());
                }
                let Ok(text) = Utf8Bytes::try_from(json) else {
                    return Ok(());
                };
                self.cursor = self.cursor.max(message_id);
                self.push(WsMessage::Text(text))?;
                if message_id > 0 {
                    self.state
                        .metrics
                        .messages_delivered
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Some(wake::Wake::Revoke(hash)) if hash == self.token_hash => {
                Err(End::Close(close::REVOKED, "signed out"))
            }
            _ => Ok(()),
        }
    }

    /// Sends everything after the cursor (after lost wake-ups).
    async fn catch_up(&mut self) -> Result<(), End> {
        let since = self.cursor;
        self.sync(since).await
    }

    async fn sync(&mut self, since: i64) -> Result<(), End> {
        let mut since = since;
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
                let frame = serde_json::json!({"type": "message", "message": message}).to_string();
                // The client asked for this: wait for room (it is reading) rather than
                // treating a catch-up larger than the queue as a slow consumer.
                match tokio::time::timeout(
                    WRITE_TIMEOUT,
                    self.out.send(WsMessage::Text(frame.into())),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    _ => {
                        return Err(End::Close(
                            close::TRY_AGAIN_LATER,
                            "too slow; reconnect and sync",
                        ))
                    }
                }
            }
            self.cursor = self.cursor.max(since);
            if batch.len() < 200 {
                return Ok(());
            }
        }
    }

    async fn client_frame(&mut self, text: &str) -> Result<(), End> {
        let now = self.state.clock.now_ms();
        let (decision, tat) = gcra(self.tat, FRAME_QUOTA, now, true);
        if let Decision::Denied { .. } = decision {
            return self.push(error_frame(
                "rate_limited",
                "too many frames; slow down",
                None,
            ));
        }
        self.tat = tat;
        crate::presence::activity(&self.state, self.user.id.0).await;
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => f,
            Err(e) => {
                return self.push(error_frame(
                    "invalid_request",
                    &format!("bad frame: {e}"),
                    None,
                ))
            }
        };
        match frame {
            ClientFrame::Auth { .. } => self.push(error_frame(
                "invalid_request",
                "already authenticated",
                None,
            )),
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
                        let frame = serde_json::json!({"type": "ack", "client_msg_id": client_msg_id, "message": message});
                        self.push(WsMessage::Text(frame.to_string().into()))
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
        let p = wake::frame(42, 7, br#"{"type":"message"}"#);
        match wake::parse(&p) {
            Some(wake::Wake::Frame {
                origin,
                message_id,
                json,
            }) => {
                assert_eq!((origin, message_id), (42, 7));
                assert_eq!(&json[..], br#"{"type":"message"}"#);
            }
            _ => panic!("not a frame"),
        }
        assert!(
            matches!(wake::parse(&wake::revoke("abc")), Some(wake::Wake::Revoke(h)) if h == "abc")
        );
        assert!(wake::parse(&bytes::Bytes::from_static(b"Fx|1|{}")).is_none());
    }
}
